//! Reading what the user types or pipes in: secrets without echo, from files
//! or standard input (never from argv), plain prompts, and JSON/YAML files.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::error::usage;

/// Whether standard input is a terminal (prompts are possible).
pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Drops one trailing line break, as `echo secret | …` and editors add one.
fn chomp(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// A secret from a file, without its trailing line break.
pub(crate) fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(chomp(text))
}

/// A secret from all of standard input, without its trailing line break.
pub(crate) fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    Ok(chomp(text))
}

/// Prompts for a secret on the terminal without echoing it.
pub(crate) fn prompt_secret(label: &str) -> anyhow::Result<String> {
    if !stdin_is_terminal() {
        usage!(
            "cannot prompt for {label}: standard input is not a terminal; read it from a file or stdin instead"
        );
    }
    rpassword::prompt_password(format!("{label} (hidden): "))
        .with_context(|| format!("cannot read {label} from the terminal"))
}

/// Prompts for a line on the terminal; `None` when the answer is empty.
pub(crate) fn prompt_line(label: &str) -> anyhow::Result<Option<String>> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{label}: ")?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read {label}"))?;
    let answer = line.trim().to_owned();
    Ok((!answer.is_empty()).then_some(answer))
}

/// Reads a JSON or YAML document from a file, or from stdin for `-`.
pub(crate) fn read_document(path: &Path) -> anyhow::Result<Value> {
    let (text, label) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the document from standard input")?;
        (text, "standard input".to_owned())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (text, path.display().to_string())
    };
    let is_json = path
        .extension()
        .is_some_and(|extension| extension == "json")
        || text.trim_start().starts_with('{');
    let parsed: Result<Value, String> = if is_json {
        serde_json::from_str(&text).map_err(|err| err.to_string())
    } else {
        serde_yaml::from_str(&text).map_err(|err| err.to_string())
    };
    match parsed {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => usage!("{label}: the document must be a mapping of field names to values"),
        Err(why) => usage!("{label}: {why}"),
    }
}

/// Where a secret value comes from: `@FILE`, `-` (stdin) or a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    File(std::path::PathBuf),
    Stdin,
    Prompt,
}

impl SecretSource {
    /// Parses the part after `FIELD=` (or its absence) of `--set-secret`.
    pub(crate) fn parse(field: &str, spec: Option<&str>) -> anyhow::Result<Self> {
        match spec {
            None => Ok(Self::Prompt),
            Some("-") => Ok(Self::Stdin),
            Some(spec) => match spec.strip_prefix('@') {
                Some(path) if !path.is_empty() => Ok(Self::File(path.into())),
                _ => usage!(
                    "--set-secret {field}=…: secret values are never taken from the command line; \
                     use {field}=@FILE, {field}=- (standard input) or just {field} to be prompted"
                ),
            },
        }
    }

    /// Reads the secret.
    pub(crate) fn read(&self, field: &str) -> anyhow::Result<String> {
        match self {
            Self::File(path) => read_secret_file(path),
            Self::Stdin => read_stdin_secret(field),
            Self::Prompt => prompt_secret(field),
        }
    }
}

/// Refuses a command line on which two options both want standard input.
pub(crate) fn check_single_stdin_reader(readers: &[(&str, bool)]) -> anyhow::Result<()> {
    let wanting: Vec<&str> = readers
        .iter()
        .filter(|(_, wants)| *wants)
        .map(|(name, _)| *name)
        .collect();
    if wanting.len() > 1 {
        usage!(
            "only one input can come from standard input, but {} all read it",
            wanting.join(" and ")
        );
    }
    Ok(())
}

/// A random request id (idempotency key) of 128 bits in hex.
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .is_ok();
    if !filled {
        // Unique enough for idempotency: time and process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_sources_refuse_literal_values() {
        assert_eq!(
            SecretSource::parse("password", None).expect("prompt"),
            SecretSource::Prompt
        );
        assert_eq!(
            SecretSource::parse("password", Some("-")).expect("stdin"),
            SecretSource::Stdin
        );
        assert_eq!(
            SecretSource::parse("extra.private_key_content", Some("@key.p8")).expect("file"),
            SecretSource::File("key.p8".into())
        );
        let refused = SecretSource::parse("password", Some("hunter2")).expect_err("literal");
        assert!(
            refused
                .to_string()
                .contains("never taken from the command line")
        );
        assert!(!refused.to_string().contains("hunter2"));
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(chomp("s3cret\n".into()), "s3cret");
        assert_eq!(chomp("s3cret\r\n".into()), "s3cret");
        assert_eq!(chomp("a\nb\n\n".into()), "a\nb\n");
    }

    #[test]
    fn request_ids_are_random_hex() {
        let first = new_request_id();
        assert_eq!(first.len(), 32);
        assert_ne!(first, new_request_id());
    }
}
