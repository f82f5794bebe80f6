//! No secret leaks: the post-suite scan of every server's log, metrics
//! output, database (outside encrypted columns) and the error statuses the
//! tests received, for every marker the suite registered (see
//! `switchboard_tests::leaks`). `scripts/test.sh` runs the suite with
//! `SWITCHBOARD_E2E_ARTIFACTS` set and then the ignored
//! `post_suite_scan_finds_no_marker`. The other tests here prove the scan
//! would catch a leak, and that files holding secrets refuse to load when
//! group- or world-readable.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use switchboard_proto::v1::ListAuditEventsRequest;
use switchboard_tests::leaks::{self, Leak};
use switchboard_tests::{TestServer, WorkspaceRole, switchboard_binary};

use crate::support::{
    create_connection, create_deployment, ok, snowflake_connection, workspace_name,
};

const WORKSPACE: &str = "leakscan";

/// Fails on any marker found in the artifacts of this run. Ignored: it
/// belongs after the whole suite, which `scripts/test.sh` runs first.
#[test]
#[ignore = "run after the whole suite with SWITCHBOARD_E2E_ARTIFACTS set (scripts/test.sh)"]
fn post_suite_scan_finds_no_marker() {
    let root = leaks::artifacts_root()
        .expect("SWITCHBOARD_E2E_ARTIFACTS names the artifacts dir of the run to scan");
    let servers = std::fs::read_dir(root.join(leaks::SERVERS_DIR))
        .map(|entries| entries.count())
        .unwrap_or(0);
    let markers = leaks::read_markers(&root).len();
    assert!(
        servers > 0 && markers > 0,
        "{} holds no servers or markers: was the suite run with SWITCHBOARD_E2E_ARTIFACTS set?",
        root.display()
    );
    let database_url = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").ok();
    let leaks = leaks::scan(&root, database_url.as_deref());
    println!(
        "leak scan: {markers} markers over {servers} servers' logs, metrics and databases, \
         the statuses tests received{}: {} found",
        if database_url.is_some() {
            " and the PostgreSQL test database"
        } else {
            ""
        },
        leaks.len()
    );
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}

/// A marker planted in a plain database column, the log, the metrics output
/// and the statuses is found; the marker stored as an (encrypted) password
/// is not, nor are the marker-free places.
#[tokio::test]
async fn the_scan_catches_planted_markers_and_not_encrypted_secrets() {
    let root = tempfile::tempdir().expect("a temporary artifacts root");
    let server = TestServer::configure()
        .with_artifacts_root(root.path())
        .with_metrics()
        .spawn()
        .await;
    let token = server.user_token("leak-scanner", &[(WORKSPACE, WorkspaceRole::Owner)]);
    let password = server.marker("password");
    // A leak on purpose: a marker in a column that is not encrypted.
    let planted_in_database = server.marker("planted-description");
    let mut clients = server.client().await;
    create_deployment(&mut clients, &token, WORKSPACE, "prod").await;
    let mut connection = snowflake_connection(&password);
    connection.description = planted_in_database.clone();
    create_connection(&mut clients, &token, WORKSPACE, "warehouse", connection).await;
    let events = ok(
        server
            .client()
            .await
            .with_token(&token)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        "ListAuditEvents",
    );
    assert!(
        !events.audit_events.is_empty(),
        "the writes above are audited"
    );

    // Leaks on purpose in the log (once the server stopped writing it) and
    // the statuses.
    let planted_in_log = server.marker("planted-log");
    let planted_in_status = server.marker("planted-status");
    leaks::append_line(
        root.path(),
        leaks::STATUSES_FILE,
        &format!("InvalidArgument\tbad value {planted_in_status}\t"),
    );
    let log_path = server.log_path().to_path_buf();
    let server_dir = log_path.parent().expect("server dir").to_path_buf();
    drop(clients);
    // Off the runtime, which must keep serving the closing client connections.
    let status = tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .expect("shutdown");
    assert!(
        status.success(),
        "the server exits cleanly: {status:?}; log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert!(
        server_dir.join("data").join("switchboard.db").exists(),
        "the database was kept"
    );
    assert!(
        std::fs::read_to_string(server_dir.join("metrics.txt"))
            .is_ok_and(|text| text.contains("grpc")),
        "the metrics output was kept"
    );

    leaks::append_line(
        &server_dir,
        "server.log",
        &format!("a careless line: {planted_in_log}"),
    );
    // A marker planted in the metrics output is found there too.
    let planted_in_metrics = format!(
        "sb-marker-planted-metrics-{}",
        switchboard_tests::random_hex(12)
    );
    leaks::append_line(root.path(), leaks::MARKERS_FILE, &planted_in_metrics);
    leaks::append_line(
        &server_dir,
        "metrics.txt",
        &format!("# HELP x {planted_in_metrics}"),
    );

    let found = leaks::scan(root.path(), None);
    let places_of = |marker: &str| -> Vec<String> {
        found
            .iter()
            .filter(|leak| leak.marker == marker)
            .map(|leak| leak.place.clone())
            .collect()
    };
    assert!(
        places_of(&password).is_empty(),
        "the encrypted password is not found in plain text: {found:#?}"
    );
    let in_database = places_of(&planted_in_database);
    assert!(
        in_database
            .iter()
            .any(|place| place.ends_with("switchboard.db"))
            || in_database
                .iter()
                .any(|place| place.contains("switchboard.db-wal")),
        "the planted description is found in the database file: {found:#?}"
    );
    if which_sqlite3() {
        assert!(
            in_database
                .iter()
                .any(|place| place.ends_with("(sqlite3 .dump)")),
            "the planted description is found in the database dump: {found:#?}"
        );
    }
    assert_eq!(
        places_of(&planted_in_log),
        vec![log_path.display().to_string()]
    );
    assert_eq!(
        places_of(&planted_in_status),
        vec![root.path().join(leaks::STATUSES_FILE).display().to_string()]
    );
    assert_eq!(
        places_of(&planted_in_metrics),
        vec![server_dir.join("metrics.txt").display().to_string()]
    );
    let expected = [
        &planted_in_database,
        &planted_in_log,
        &planted_in_status,
        &planted_in_metrics,
    ];
    let unexpected: Vec<&Leak> = found
        .iter()
        .filter(|leak| !expected.contains(&&leak.marker))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only the planted markers are found: {unexpected:#?}"
    );
}

fn which_sqlite3() -> bool {
    std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `switchboard dev` on `data_dir` and waits for it to exit on its own
/// (it should refuse to start); its exit success and log.
fn start_expecting_refusal(data_dir: &Path, extra_args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(switchboard_binary())
        .arg("dev")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run switchboard dev");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The binary refuses to start when a key file in its data dir, or the
/// Vault token file, is readable by group or others, and names the file
/// without printing its content.
#[tokio::test]
async fn files_holding_secrets_refuse_to_load_when_readable_by_others() {
    // Let a server create its keys, then stop it.
    let server = TestServer::configure().spawn().await;
    let data_dir = tempfile::tempdir().expect("a data dir");
    for name in ["jwt-hs256.key", "secrets.key"] {
        let from = server.data_dir().join(name);
        assert_eq!(
            std::fs::metadata(&from)
                .expect("the server created its key")
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{name} is created with mode 0600"
        );
    }
    drop(server);

    for (name, mode) in [
        ("jwt-hs256.key", 0o640),
        ("jwt-hs256.key", 0o604),
        ("secrets.key", 0o644),
        ("secrets.key", 0o660),
    ] {
        let dir = data_dir.path().join(format!("{name}-{mode:o}"));
        std::fs::create_dir_all(&dir).expect("create a data dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod the data dir");
        let key = dir.join(name);
        std::fs::write(&key, [7u8; 32]).expect("write a key file");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode))
            .expect("chmod the key");
        let (started, log) = start_expecting_refusal(&dir, &[]);
        assert!(
            !started,
            "started with {name} at mode {mode:o}; log:\n{log}"
        );
        assert!(
            log.contains("readable by group or others") && log.contains(name),
            "the refusal names {name} and why: {log}"
        );
    }

    // A Vault token file readable by others is refused before Vault is contacted.
    let dir = data_dir.path().join("vault-token");
    std::fs::create_dir_all(&dir).expect("create a data dir");
    let token_file = dir.join("vault-token");
    let vault_token = format!(
        "sb-marker-vault-token-{}",
        switchboard_tests::random_hex(12)
    );
    std::fs::write(&token_file, &vault_token).expect("write a token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the token file");
    let token_path = token_file.display().to_string();
    let (started, log) = start_expecting_refusal(
        &dir,
        &[
            "--vault-addr",
            "http://127.0.0.1:9",
            "--vault-token-file",
            &token_path,
        ],
    );
    assert!(
        !started,
        "started with a readable Vault token file; log:\n{log}"
    );
    assert!(
        log.contains("readable by group or others"),
        "the refusal says why: {log}"
    );
    assert!(
        !log.contains(&vault_token),
        "the refusal prints the token: {log}"
    );
}
