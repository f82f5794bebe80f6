//! The post-suite secret scan. When `SWITCHBOARD_E2E_ARTIFACTS` names a
//! directory, every [`TestServer`](crate::TestServer) keeps its artifacts
//! under it instead of in temporary dirs that vanish:
//!
//! ```text
//! ARTIFACTS/markers              every marker and credential a test registered, one a line
//! ARTIFACTS/statuses             code, message and details of error statuses the tests received
//! ARTIFACTS/servers/<id>/server.log    the process's stdout and stderr
//! ARTIFACTS/servers/<id>/metrics.txt   its /metrics output just before SIGTERM
//! ARTIFACTS/servers/<id>/data/*.db*    its SQLite database (and WAL) after it exited
//! ```
//!
//! [`scan`] then looks for every registered marker in all of it: the text of
//! each file, the raw bytes of each database file and its `sqlite3 .dump`
//! (text columns appear verbatim, blobs as hex), and a `pg_dump` of the
//! PostgreSQL test database when one is given. Audit events are rows of those
//! databases. Encrypted columns hold AES-GCM ciphertext, in which a marker
//! can't appear; a marker found anywhere is a leak.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the artifacts directory of a test run.
pub const ARTIFACTS_ENV: &str = "SWITCHBOARD_E2E_ARTIFACTS";
/// File under the artifacts root listing the markers, one a line.
pub const MARKERS_FILE: &str = "markers";
/// File under the artifacts root with the error statuses tests received.
pub const STATUSES_FILE: &str = "statuses";
/// Directory under the artifacts root with one subdirectory per server.
pub const SERVERS_DIR: &str = "servers";

/// The artifacts root of this run, when `SWITCHBOARD_E2E_ARTIFACTS` is set.
pub fn artifacts_root() -> Option<PathBuf> {
    let root = std::env::var_os(ARTIFACTS_ENV).filter(|value| !value.is_empty())?;
    let root = PathBuf::from(root);
    Some(if root.is_relative() {
        crate::workspace_root().join(root)
    } else {
        root
    })
}

/// Appends `line` to `root/file`, creating both when absent. One `write`
/// call per line, so concurrent tests don't interleave within a line.
pub fn append_line(root: &Path, file: &str, line: &str) {
    fs::create_dir_all(root).expect("create the artifacts dir");
    let mut handle = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(file))
        .expect("open an artifacts file");
    let mut text = line.replace('\n', " ");
    text.push('\n');
    handle
        .write_all(text.as_bytes())
        .expect("write an artifacts file");
}

/// Records an error status a test received (code, message and details), so
/// that the post-suite scan covers the error messages callers see.
pub fn record_status(status: &tonic::Status) {
    if let Some(root) = artifacts_root() {
        let details = String::from_utf8_lossy(status.details());
        append_line(
            &root,
            STATUSES_FILE,
            &format!("{:?}\t{}\t{details}", status.code(), status.message()),
        );
    }
}

/// One marker found where it must not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The marker or credential.
    pub marker: String,
    /// Where: a file path, with `(sqlite3 .dump)` or `(pg_dump)` for dumps.
    pub place: String,
}

/// Scans everything under `root` (and the PostgreSQL database at
/// `database_url`, if given) for the markers in `root/markers`.
pub fn scan(root: &Path, database_url: Option<&str>) -> Vec<Leak> {
    let markers = read_markers(root);
    if markers.is_empty() {
        return Vec::new();
    }
    // Literal alternations, in chunks so that no compiled pattern grows
    // past the regex size limit however many tokens a run registers.
    let matchers: Vec<regex::bytes::Regex> = markers
        .chunks(200)
        .map(|chunk| {
            let pattern = chunk
                .iter()
                .map(|marker| regex::escape(marker))
                .collect::<Vec<_>>()
                .join("|");
            regex::bytes::RegexBuilder::new(&pattern)
                .size_limit(256 << 20)
                .dfa_size_limit(256 << 20)
                .build()
                .expect("markers form a valid pattern")
        })
        .collect();
    let mut leaks = Vec::new();
    let mut check = |bytes: &[u8], place: String| {
        for matcher in &matchers {
            for found in matcher.find_iter(bytes) {
                let marker = String::from_utf8_lossy(found.as_bytes()).into_owned();
                let leak = Leak {
                    marker,
                    place: place.clone(),
                };
                if !leaks.contains(&leak) {
                    leaks.push(leak);
                }
            }
        }
    };
    let statuses = root.join(STATUSES_FILE);
    if let Ok(bytes) = fs::read(&statuses) {
        check(&bytes, statuses.display().to_string());
    }
    for file in files_under(&root.join(SERVERS_DIR)) {
        let Ok(bytes) = fs::read(&file) else {
            continue;
        };
        check(&bytes, file.display().to_string());
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".db")
            && let Some(dump) = sqlite_dump(&file)
        {
            check(&dump, format!("{} (sqlite3 .dump)", file.display()));
        }
    }
    if let Some(url) = database_url {
        check(&pg_dump(url), format!("{url} (pg_dump)"));
    }
    leaks
}

/// The markers registered under `root`, deduplicated.
pub fn read_markers(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(MARKERS_FILE)).unwrap_or_default();
    let mut markers: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    markers.sort();
    markers.dedup();
    markers
}

/// Every regular file below `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// `sqlite3 FILE .dump`; `None` when the sqlite3 command is not installed
/// or can't read the copy (the raw bytes are scanned regardless).
fn sqlite_dump(file: &Path) -> Option<Vec<u8>> {
    let output = Command::new("sqlite3")
        .arg(file)
        .arg(".dump")
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "leak scan: sqlite3 .dump of {} failed ({}); scanning its raw bytes only",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    Some(output.stdout)
}

/// `pg_dump --data-only` of the database at `url`.
fn pg_dump(url: &str) -> Vec<u8> {
    let binary = ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"]
        .into_iter()
        .find(|candidate| !candidate.starts_with('/') || Path::new(candidate).exists())
        .unwrap_or("pg_dump");
    let output = Command::new(binary)
        .args(["--data-only", "--no-owner", "--dbname"])
        .arg(url)
        .output()
        .unwrap_or_else(|err| panic!("run pg_dump: {err}"));
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_long_markers_are_found_in_a_large_haystack_quickly() {
        let root = tempfile::tempdir().unwrap();
        // Thousands of JWT-sized credentials, as a full run registers.
        let markers: Vec<String> = (0..3000)
            .map(|index| format!("eyJ{index:05}{}", "x".repeat(300)))
            .collect();
        for marker in &markers {
            append_line(root.path(), MARKERS_FILE, marker);
        }
        let server = root.path().join(SERVERS_DIR).join("one");
        fs::create_dir_all(&server).unwrap();
        let mut log = "an ordinary line without secrets\n".repeat(300_000);
        log.push_str(&markers[2999]);
        log.push_str(&"more ordinary text\n".repeat(100_000));
        fs::write(server.join("server.log"), log).unwrap();
        let started = std::time::Instant::now();
        let found = scan(root.path(), None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].marker, markers[2999]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the scan took {:?}",
            started.elapsed()
        );
    }
}
