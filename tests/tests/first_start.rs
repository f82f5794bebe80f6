//! What a server logs once it listens, for whoever just started it (README
//! "On a fresh machine"): its data dir, that development keys are in use,
//! the command that mints a user token for that data dir, and where its
//! metrics are or that they are off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use switchboard_proto::v1::ListDeploymentsRequest;
use switchboard_tests::{Role, TestServer, switchboard_binary};

use crate::readme::{blocks, section};

/// The token command a server prints, for `data_dir`.
fn token_command(data_dir: &str) -> String {
    format!("switchboard token user --data-dir {data_dir} --subject you --role WORKSPACE=OPERATOR")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_its_data_dir_the_token_command_and_that_metrics_are_off() {
    let server = TestServer::configure().spawn().await;
    let logs = server.logs();
    let data_dir = server.data_dir().display().to_string();
    for expected in [
        format!("serving gRPC address={}", server.address()),
        format!(
            "data dir {data_dir}: SQLite database, development keys (first start: created its keys)"
        ),
        "development keys are in use (jwt-hs256.key signs user tokens, secrets.key encrypts secrets)"
            .to_owned(),
        format!("mint a user token: {}", token_command(&data_dir)),
        "metrics are off (--metrics-listen HOST:PORT serves them at /metrics)".to_owned(),
    ] {
        assert!(logs.contains(&expected), "{expected:?} in the log:\n{logs}");
    }

    // README quotes these lines as dev prints them, for its own paths.
    let quoted = blocks(&section("## On a fresh machine"), "text");
    let quoted = quoted.first().expect("README quotes what dev prints");
    for line in quoted.lines() {
        let line = line
            .replace("/home/you/switchboard/.switchboard", &data_dir)
            .replace("127.0.0.1:50051", &server.address().to_string());
        let line = line.trim_end_matches("[…]");
        assert!(
            logs.contains(line),
            "README's {line:?} is what dev prints:\n{logs}"
        );
    }

    // The printed command, with a workspace named, mints a token the server takes.
    let command = token_command(&data_dir)
        .replacen(
            "switchboard",
            &switchboard_binary().display().to_string(),
            1,
        )
        .replace("WORKSPACE", "first-start");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&command)
        .env_remove("SWITCHBOARD_DATA_DIR")
        .output()
        .expect("run the printed command");
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("a UTF-8 token")
        .trim()
        .to_owned();
    server.forbid_in_logs(&token);
    server
        .client()
        .await
        .with_token(&token)
        .list_deployments(ListDeploymentsRequest {
            parent: "workspaces/first-start".to_owned(),
            ..Default::default()
        })
        .await
        .expect("the printed command's token lists the workspace's deployments");
    server.assert_logs_clean();
}

/// The body of `GET /metrics` at `address`.
fn metrics_text(address: SocketAddr) -> String {
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_resolver_print_the_token_command_for_their_data_dir_and_their_metrics() {
    let control = TestServer::configure()
        .with_role(Role::Control)
        .with_metrics()
        .spawn()
        .await;
    let resolver = TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(&control)
        .with_metrics()
        .spawn()
        .await;
    let data_dir = control.data_dir().display().to_string();
    for (server, first_start) in [(&control, true), (&resolver, false)] {
        let logs = server.logs();
        let metrics = server.metrics_address().expect("metrics were asked for");
        let data_dir_line = format!("data dir {data_dir}: SQLite database, development keys");
        assert!(logs.contains(&data_dir_line), "{data_dir_line:?}:\n{logs}");
        assert_eq!(
            logs.contains("(first start: created its keys)"),
            first_start,
            "only the process that created the keys says so:\n{logs}"
        );
        let expected = [
            format!("serving gRPC address={}", server.address()),
            format!("mint a user token: {}", token_command(&data_dir)),
            format!("Prometheus metrics at http://{metrics}/metrics"),
        ];
        for expected in expected {
            assert!(logs.contains(&expected), "{expected:?} in the log:\n{logs}");
        }
        assert!(!logs.contains("metrics are off"), "{logs}");
        // Where the line says, metrics are served.
        let text = metrics_text(metrics);
        assert!(text.contains("200 OK"), "GET /metrics:\n{text}");
        server.assert_logs_clean();
    }
}
