//! A new user's first hour, as the CLI shows it: a typo in an extra key is
//! reported with the key that was meant, a `.env` written into a git work
//! tree that would commit it is warned about, and each usual mistake (a
//! deployment token at control, the wrong process's address, the wrong
//! scheme, an expired or foreign token, a link to a connection that doesn't
//! exist) is told in words with what to do, never with a library's type
//! names. Each case runs the real binary and checks the text a user reads.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, GetConnectionRequest, ListResolvedConnectionsRequest,
};
use switchboard_tests::{Role, TestServer, WorkspaceRole, authorized};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::cli::{Shell, fails, json, ok};
use crate::jwt_claims::{hs256_jwt, now};
use crate::support::{connection_name, string_struct, workspace_name};

/// Library names that must never reach a user.
const LIBRARY_NAMES: &[&str] = &[
    "ExpiredSignature",
    "InvalidSignature",
    "InvalidContentType",
    "UnknownIssuer",
    "InvalidCertificate",
    "hyper::",
    "h2 protocol error",
    "Status {",
];

fn assert_plain_words(text: &str) {
    for name in LIBRARY_NAMES {
        assert!(!text.contains(name), "{name} reaches the user:\n{text}");
    }
}

/// Runs `args` with SWITCHBOARD_TOKEN set to `token` and stdin closed.
fn run_as(shell: &Shell, token: &str, args: &[&str]) -> std::process::Output {
    let mut command = shell.command(args);
    command.env("SWITCHBOARD_TOKEN", token).stdin(Stdio::null());
    command.output().expect("run switchboard")
}

/// Logs in as an OWNER of `acme` and creates deployment `dev`.
fn owner_shell(server: &TestServer) -> Shell {
    let shell = Shell::new(server);
    let owner = server.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    ok(
        shell.run_with_stdin(
            &["login", "--endpoint", &shell.address, "--workspace", "acme"],
            &format!("{owner}\n"),
        ),
        "login",
    );
    ok(shell.run(&["deployments", "create", "dev"]), "create dev");
    shell
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_an_extra_key_is_stored_and_reported_with_the_key_meant() {
    let server = TestServer::configure().spawn().await;
    let shell = owner_shell(&server);
    let password = shell.write("snow.pass", &server.marker("snow-password"));
    let password = password.to_str().expect("utf-8");

    let output = shell.run(&[
        "connections",
        "create",
        "snow",
        "--type",
        "snowflake_password",
        "--login",
        "SVC",
        "--password-file",
        password,
        "--set",
        "extra.account=xy12345",
        "--set",
        "extra.warehose=WH",
        "--no-input",
        "-o",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let created = json(&ok(output, "create with a typo"), "create -o json");
    assert!(
        stderr.contains(
            "warning: extra.warehose is not a parameter of snowflake_password; \
             did you mean extra.warehouse?"
        ),
        "{stderr}"
    );
    // Stored as given, reported for every client, the password only as set.
    assert_eq!(created["extra"]["warehose"], "WH");
    assert_eq!(
        created["unknownExtraKeys"],
        serde_json::json!(["extra.warehose"])
    );
    assert!(
        created.get("password").is_none(),
        "a masked password is left out, not shown as \"\": {created}"
    );
    assert_eq!(created["secretFieldsSet"], serde_json::json!(["password"]));
    let shown = json(
        &ok(
            shell.run(&["connections", "get", "snow", "-o", "json"]),
            "get",
        ),
        "get -o json",
    );
    assert!(shown.get("password").is_none(), "{shown}");
    assert_eq!(
        shown["unknownExtraKeys"],
        serde_json::json!(["extra.warehose"])
    );

    // An update warns about the keys it writes, not about older ones.
    let output = shell.run(&[
        "connections",
        "update",
        "snow",
        "--set",
        "extra.role=ANALYST",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "update a listed key");
    assert!(!stderr.contains("warning"), "{stderr}");
    let output = shell.run(&[
        "connections",
        "update",
        "snow",
        "--set",
        "extra.Role=ANALYST",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "update with a typo");
    assert!(
        stderr.contains(
            "warning: extra.Role is not a parameter of snowflake_password; did you mean extra.role?"
        ) && !stderr.contains("extra.warehose"),
        "{stderr}"
    );
    let output = shell.run(&[
        "connections",
        "update",
        "snow",
        "--set",
        "extra.client_session_keep_alive=true",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "update with a key the catalog doesn't list");
    assert!(
        stderr.contains(
            "warning: extra.client_session_keep_alive is not a parameter of snowflake_password; \
             it is stored as given (`switchboard types snowflake_password` lists the parameters)"
        ),
        "{stderr}"
    );

    // A link's override extras are checked against the connection's type.
    let output = shell.run(&[
        "links",
        "create",
        "snow",
        "--deployment",
        "dev",
        "--set",
        "extra.warehuose=DEV_WH",
        "-o",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let link = json(&ok(output, "link with a typo"), "links create -o json");
    assert!(
        stderr.contains(
            "warning: extra.warehuose is not a parameter of snowflake_password; \
             did you mean extra.warehouse?"
        ),
        "{stderr}"
    );
    assert_eq!(
        link["unknownExtraKeys"],
        serde_json::json!(["extra.warehuose"])
    );

    // Over the API: typed connections report unknown keys, generic ones none.
    let owner = server.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    let clients = server.client().await;
    let fetched = clients
        .with_token(&owner)
        .get_connection(GetConnectionRequest {
            name: connection_name("acme", "snow"),
            view: 0,
        })
        .await
        .expect("get snow");
    assert_eq!(
        fetched.unknown_extra_keys,
        [
            "extra.Role",
            "extra.client_session_keep_alive",
            "extra.warehose"
        ]
    );
    let generic = clients
        .with_token(&owner)
        .create_connection(CreateConnectionRequest {
            parent: workspace_name("acme"),
            connection_id: "http_api".to_owned(),
            connection: Some(Connection {
                r#type: "generic".to_owned(),
                conn_type: "http".to_owned(),
                host: "api.example.com".to_owned(),
                extra: Some(string_struct(&[("anything", "goes")])),
                ..Default::default()
            }),
            request_id: String::new(),
            links: Vec::new(),
        })
        .await
        .expect("create a generic connection");
    assert!(generic.unknown_extra_keys.is_empty(), "{generic:?}");

    // A link to a connection that doesn't exist names it.
    let stderr = fails(
        shell.run(&["links", "create", "snwo", "--deployment", "dev"]),
        4,
        "a link to a missing connection",
    );
    assert!(
        stderr.contains(
            "error: cannot create the link of connection \"snwo\" to deployment \"dev\": \
             not found: connection \"snwo\" does not exist in workspace acme"
        ) && stderr.contains("switchboard connections create snwo"),
        "{stderr}"
    );
    server.assert_logs_clean();
}

/// Whether git runs here; the warning is git's to give.
fn has_git() -> bool {
    Command::new("git")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_secrets_written_where_git_would_commit_them_are_warned_about() {
    if !has_git() {
        switchboard_tests::skip_without("git");
        return;
    }
    let server = TestServer::configure().spawn().await;
    let shell = owner_shell(&server);
    ok(
        shell.run(&["policy", "set", "--allow-local-export"]),
        "policy set",
    );
    let project = shell.dir().join("project");
    std::fs::create_dir_all(&project).expect("project dir");
    git(&project, &["init", "-q"]);
    let env_file = project.join(".env");
    let env_path = env_file.to_str().expect("utf-8");
    let export = ["local", "env", "-d", "dev", "--output-file", env_path];

    let output = shell.run(&export);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "export into a work tree");
    let canonical = std::fs::canonicalize(&project).expect("canonical project dir");
    let expected = format!(
        "warning: {}/.env holds secrets and git does not ignore it: add .env to {}/.gitignore \
         so it is never committed",
        canonical.display(),
        canonical.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // The airflow_settings.yaml export and a deployment token file too.
    let settings = project.join("airflow_settings.yaml");
    let output = shell.run(&[
        "local",
        "env",
        "-d",
        "dev",
        "--format",
        "airflow-settings",
        "--output-file",
        settings.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "airflow_settings.yaml into a work tree");
    assert!(
        stderr.contains("airflow_settings.yaml holds secrets and git does not ignore it"),
        "{stderr}"
    );
    let token_file = project.join("dev.token");
    let output = shell.run(&[
        "deployments",
        "token",
        "dev",
        "--output-file",
        token_file.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "a token file into a work tree");
    assert!(
        stderr.contains("dev.token holds secrets and git does not ignore it"),
        "{stderr}"
    );

    // Once ignored, no warning; once tracked, a warning that says so.
    std::fs::write(project.join(".gitignore"), ".env\n").expect("write .gitignore");
    let output = shell.run(&export);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "export of an ignored file");
    assert!(!stderr.contains("warning"), "{stderr}");
    git(&project, &["add", "-f", ".env"]);
    let output = shell.run(&export);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "export of a tracked file");
    assert!(
        stderr.contains(".env holds secrets and git tracks it: run `git rm --cached .env`"),
        "{stderr}"
    );

    // Outside any work tree, nothing to say.
    let outside = shell.dir().join("outside.env");
    let output = shell.run(&[
        "local",
        "env",
        "-d",
        "dev",
        "--output-file",
        outside.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output, "export outside a work tree");
    assert!(!stderr.contains("warning"), "{stderr}");
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_says_what_it_serves_and_tokens_say_why_they_are_refused() {
    let control = TestServer::configure()
        .with_role(Role::Control)
        .spawn()
        .await;
    let resolver = TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(&control)
        .spawn()
        .await;
    let shell = owner_shell(&control);
    let mut stderrs = String::new();

    // A resolver call at control's address, and a control call at the resolver's.
    let stderr = fails(
        shell.run(&["local", "env", "-d", "dev"]),
        1,
        "local env at control",
    );
    assert!(
        stderr.contains(
            "not implemented by this server: this address serves switchboard control \
             (ConnectionService, DeploymentService, WorkspaceService, AuditService), not \
             switchboard.v1.ResolverService; the resolver answers it"
        ) && stderr
            .contains("hint: this address does not serve the resolver: pass --resolver-endpoint"),
        "{stderr}"
    );
    stderrs.push_str(&stderr);
    let owner = control.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    let resolver_address = resolver.address().to_string();
    let stderr = fails(
        run_as(
            &shell,
            &owner,
            &[
                "connections",
                "list",
                "--endpoint",
                &resolver_address,
                "-w",
                "acme",
            ],
        ),
        1,
        "connections at the resolver",
    );
    assert!(
        stderr.contains(
            "not implemented by this server: this address serves the switchboard resolver \
             (ResolverService), not switchboard.v1.ConnectionService; control answers it: call \
             the address of `switchboard control`"
        ),
        "{stderr}"
    );
    stderrs.push_str(&stderr);
    // The code stays UNIMPLEMENTED for programs.
    let status = control
        .client()
        .await
        .with_token(&owner)
        .list_resolved_connections(ListResolvedConnectionsRequest {
            deployment: crate::support::deployment_name("acme", "dev"),
        })
        .await
        .expect_err("control serves no resolver");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status
            .message()
            .starts_with("this address serves switchboard control")
    );
    // A method the contract lacks, as an older or newer client might call.
    let mut grpc = tonic::client::Grpc::new(control.channel().await);
    grpc.ready().await.expect("the channel is ready");
    let invented: PathAndQuery = "/switchboard.v1.ConnectionService/Invented"
        .parse()
        .expect("a method path");
    let status = grpc
        .unary(
            authorized((), &owner),
            invented,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "switchboard.v1.ConnectionService has no method Invented; this address serves \
         switchboard control (ConnectionService, DeploymentService, WorkspaceService, AuditService)"
    );

    // A deployment token where a user token is needed.
    let deployment_token = ok(shell.run(&["deployments", "token", "dev"]), "token")
        .trim()
        .to_owned();
    control.forbid_in_logs(&deployment_token);
    let stderr = fails(
        run_as(&shell, &deployment_token, &["connections", "list"]),
        7,
        "a deployment token at control",
    );
    assert!(
        stderr
            .contains("permission denied: this is a deployment token; control needs a user token")
            && stderr.contains("switchboard token user --data-dir DIR"),
        "{stderr}"
    );
    stderrs.push_str(&stderr);

    // An expired token: the words say so, with the leeway; contexts list marks it.
    let key = std::fs::read(control.data_dir().join("jwt-hs256.key")).expect("the dev key");
    let expired = hs256_jwt(
        &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        &serde_json::json!({
            "sub": "olivia",
            "aud": "switchboard",
            "exp": now() - 120,
            "roles": {"acme": "OWNER"},
        }),
        &key,
    );
    control.forbid_in_logs(&expired);
    let stderr = fails(
        run_as(&shell, &expired, &["connections", "list"]),
        7,
        "an expired token",
    );
    assert!(
        stderr.contains(
            "not authenticated: token has expired (its exp is more than the 30 s allowed for \
             clock skew in the past)"
        ) && stderr.contains("hint: the token has expired: get a new one"),
        "{stderr}"
    );
    stderrs.push_str(&stderr);
    ok(
        shell.run_with_stdin(
            &[
                "login",
                "--endpoint",
                &shell.address,
                "--context",
                "stale",
                "--no-verify",
            ],
            &format!("{expired}\n"),
        ),
        "store an expired token",
    );
    let output = shell.run(&["contexts", "list"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let listed = ok(output, "contexts list");
    let stale = listed
        .lines()
        .find(|line| line.contains("stale"))
        .unwrap_or_else(|| panic!("the stale context is listed:\n{listed}"));
    assert!(stale.contains("expired 20"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|line| line.contains("default") && line.ends_with("stored")),
        "{listed}"
    );
    assert!(
        stderr.contains("warning: the token of context 'stale' has expired"),
        "{stderr}"
    );
    ok(
        shell.run(&["contexts", "use", "default"]),
        "back to default",
    );

    // A token minted for another data dir: what likely happened and how to mint one.
    let elsewhere = tempfile::tempdir().expect("another data dir");
    let foreign = switchboard_tests::mint_user_token(
        elsewhere.path(),
        "olivia",
        &[("acme", WorkspaceRole::Owner)],
    );
    control.forbid_in_logs(&foreign);
    let stderr = fails(
        run_as(&shell, &foreign, &["connections", "list"]),
        7,
        "a token of another key",
    );
    assert!(
        stderr
            .contains("not authenticated: token signature does not verify with this server's keys")
            && stderr.contains(
                "hint: the token was likely minted for another data dir or key than this \
                 server's: mint one with `switchboard token user --data-dir DIR"
            ),
        "{stderr}"
    );
    stderrs.push_str(&stderr);

    // https:// against a plaintext server.
    let https = format!("https://{}", control.address());
    let stderr = fails(
        run_as(
            &shell,
            &owner,
            &["connections", "list", "--endpoint", &https, "-w", "acme"],
        ),
        8,
        "https against plaintext",
    );
    assert!(
        stderr.contains(&format!(
            "cannot reach https://{address}: the server did not answer the TLS handshake\n  \
             hint: the server speaks plaintext gRPC: use http://{address}",
            address = control.address()
        )),
        "{stderr}"
    );
    stderrs.push_str(&stderr);

    // Nothing listening.
    let stderr = fails(
        run_as(
            &shell,
            &owner,
            &[
                "connections",
                "list",
                "--endpoint",
                "127.0.0.1:1",
                "-w",
                "acme",
            ],
        ),
        8,
        "nothing listening",
    );
    assert!(
        stderr.contains(
            "cannot reach http://127.0.0.1:1: nothing listens there (connection refused)"
        ),
        "{stderr}"
    );
    stderrs.push_str(&stderr);

    assert_plain_words(&stderrs);
    // The server's refusals are plain words too: the token's text never
    // decides the message's shape.
    let forged = {
        let (unsigned, _) = owner.rsplit_once('.').expect("a JWT");
        format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode([9u8; 32]))
    };
    control.forbid_in_logs(&forged);
    let status = control
        .client()
        .await
        .with_token(&forged)
        .get_connection(GetConnectionRequest {
            name: connection_name("acme", "x"),
            view: 0,
        })
        .await
        .expect_err("a forged token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_plain_words(status.message());
    control.assert_logs_clean();
    resolver.assert_logs_clean();
}
