//! Output: aligned tables for people, JSON or YAML for scripts.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns (secrets never shown).
    Table,
    /// Pretty-printed JSON, field names as protobuf's JSON form spells them.
    Json,
    /// YAML, same fields as JSON.
    Yaml,
}

/// `--output`, global to the client commands that print resources.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server options")]
pub(crate) struct OutputOpt {
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, env = "SWITCHBOARD_OUTPUT",
          value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
}

impl OutputOpt {
    /// Prints `value` as JSON or YAML, or the table `table` builds.
    pub(crate) fn emit(&self, value: &Value, table: impl FnOnce() -> Table) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Table => table().print(),
            OutputFormat::Json => {
                print_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?))
            }
            OutputFormat::Yaml => print_stdout(&serde_yaml::to_string(value)?),
        }
    }

    /// Whether a table is printed (status lines then go to stderr).
    pub(crate) fn is_table(&self) -> bool {
        self.format == OutputFormat::Table
    }
}

/// Columns of text, printed with two spaces between them.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(headers: [&str; N]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// A two-column FIELD/VALUE table for one resource.
    pub(crate) fn key_value(rows: Vec<(&str, String)>) -> Self {
        let mut table = Self::new(["FIELD", "VALUE"]);
        for (key, value) in rows {
            table.row([key.to_owned(), value]);
        }
        table
    }

    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.headers.len(), "a row has one cell per column");
        self.rows
            .push(cells.into_iter().map(|cell| one_line(&cell)).collect());
    }

    /// The table as text, each line ending in a newline.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|header| header.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let last = line.len().saturating_sub(1);
            for (index, (cell, width)) in line.iter().zip(&widths).enumerate() {
                text.push_str(cell);
                if index < last {
                    let pad = width - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push('\n');
        }
        text
    }

    pub(crate) fn print(&self) -> anyhow::Result<()> {
        print_stdout(&self.render())
    }
}

/// Writes `text` to standard output. A closed pipe (`… | head`) is not an
/// error: the reader has all it wants.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(err).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

/// Keeps a cell on one line.
fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r', '\t']) {
        cell.replace(['\n', '\r', '\t'], " ")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut table = Table::new(["ID", "TYPE"]);
        table.row(["warehouse".into(), "snowflake".into()]);
        table.row(["pg".into(), "postgres\nx".into()]);
        assert_eq!(
            table.render(),
            "ID         TYPE\nwarehouse  snowflake\npg         postgres x\n"
        );
    }
}
