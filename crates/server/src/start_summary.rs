//! The few lines a server logs once it listens, for whoever just started it:
//! where its data dir is, whether development keys are in use, the command
//! that mints a user token for that data dir, and where its metrics are (or
//! that they are off). File names and addresses only: never a key, a token
//! or a database URL, which may carry a password.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::serve::DEV_JWT_KEY_FILE;

/// What a server started with, as far as its first lines tell.
#[derive(Debug)]
pub(crate) struct StartSummary<'a> {
    /// `--data-dir` as given.
    pub data_dir: &'a Path,
    /// The development JWT key did not exist before this start.
    pub first_start: bool,
    /// `--database-url`, only to tell whether its SQLite file is in the data dir.
    pub database_url: &'a str,
    /// Secrets are encrypted with the data dir's key (no Vault).
    pub embedded_secrets: bool,
    /// User tokens are verified with the data dir's HS256 key (no JWKS).
    pub development_tokens: bool,
    pub metrics: Option<SocketAddr>,
}

impl StartSummary<'_> {
    /// The lines, in the order they are logged.
    pub(crate) fn lines(&self) -> Vec<String> {
        let data_dir = absolute(self.data_dir);
        let mut held = Vec::new();
        if sqlite_file(self.database_url).is_some_and(|file| absolute(&file).starts_with(&data_dir))
        {
            held.push("SQLite database");
        }
        if self.development_tokens || self.embedded_secrets {
            held.push("development keys");
        }
        let mut lines = vec![format!(
            "data dir {}{}{}",
            data_dir.display(),
            if held.is_empty() {
                String::new()
            } else {
                format!(": {}", held.join(", "))
            },
            if self.first_start {
                " (first start: created its keys)"
            } else {
                ""
            },
        )];
        let mut uses = Vec::new();
        if self.development_tokens {
            uses.push(format!("{DEV_JWT_KEY_FILE} signs user tokens"));
        }
        if self.embedded_secrets {
            uses.push(format!(
                "{} encrypts secrets",
                crate::serve::SECRETS_KEY_FILE
            ));
        }
        if !uses.is_empty() {
            lines.push(format!(
                "development keys are in use ({}); production uses a JWKS (--jwks-url) and Vault (--vault-addr)",
                uses.join(", ")
            ));
        }
        if self.development_tokens {
            lines.push(format!(
                "mint a user token: switchboard token user --data-dir {} --subject you --role WORKSPACE=OPERATOR",
                shell_word(&data_dir.display().to_string())
            ));
        }
        lines.push(match self.metrics {
            Some(address) => format!("Prometheus metrics at http://{address}/metrics"),
            None => {
                "metrics are off (--metrics-listen HOST:PORT serves them at /metrics)".to_owned()
            }
        });
        lines
    }

    /// Logs [`lines`](Self::lines) at INFO. Each is one message rather than
    /// structured fields: they are read by a person, and the token command
    /// is meant to be pasted as it stands.
    pub(crate) fn log(&self) {
        for line in self.lines() {
            tracing::info!("{line}");
        }
    }
}

/// The path of a `sqlite:` URL's file, without its query.
fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// `path` made absolute against the working directory (symlinks kept), so
/// the printed command works from any directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `word` as one shell word: as it is when it holds only safe characters,
/// else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:=+,@%-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(data_dir: &Path) -> StartSummary<'_> {
        StartSummary {
            data_dir,
            first_start: true,
            database_url: "sqlite:///srv/sb/switchboard.db",
            embedded_secrets: true,
            development_tokens: true,
            metrics: None,
        }
    }

    #[test]
    fn dev_names_its_data_dir_keys_token_command_and_metrics() {
        let lines = dev(Path::new("/srv/sb")).lines();
        assert_eq!(
            lines,
            [
                "data dir /srv/sb: SQLite database, development keys (first start: created its keys)",
                "development keys are in use (jwt-hs256.key signs user tokens, secrets.key encrypts secrets); production uses a JWKS (--jwks-url) and Vault (--vault-addr)",
                "mint a user token: switchboard token user --data-dir /srv/sb --subject you --role WORKSPACE=OPERATOR",
                "metrics are off (--metrics-listen HOST:PORT serves them at /metrics)",
            ]
        );
    }

    #[test]
    fn production_backends_leave_out_the_development_hints() {
        let summary = StartSummary {
            first_start: false,
            database_url: "postgres://switchboard:sb-marker@db/switchboard",
            embedded_secrets: false,
            development_tokens: false,
            metrics: Some("127.0.0.1:9090".parse().unwrap()),
            ..dev(Path::new("/var/lib/switchboard"))
        };
        let lines = summary.lines();
        assert_eq!(
            lines,
            [
                "data dir /var/lib/switchboard",
                "Prometheus metrics at http://127.0.0.1:9090/metrics",
            ]
        );
        assert!(!lines.concat().contains("sb-marker"));
    }

    #[test]
    fn relative_and_unusual_data_dirs_print_as_one_absolute_shell_word() {
        let cwd = std::env::current_dir().unwrap();
        let summary = StartSummary {
            database_url: "sqlite://./.switchboard/switchboard.db",
            ..dev(Path::new("./.switchboard"))
        };
        let lines = summary.lines();
        let expected = cwd.join(".switchboard");
        assert!(
            lines[0].starts_with(&format!("data dir {}: SQLite database", expected.display())),
            "{lines:?}"
        );
        assert_eq!(shell_word("/tmp/it's here"), r"'/tmp/it'\''s here'");
        assert_eq!(shell_word("/tmp/plain-dir_1"), "/tmp/plain-dir_1");
    }
}
