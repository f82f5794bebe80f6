//! User-token claims and JWKS refresh over the real binary: `nbf`, `aud` as
//! a string or an array, a required `iss`, refused `crit` headers and
//! control characters in `sub`, each with a plain UNAUTHENTICATED message
//! that never echoes the token; and a JWKS URL read one refresh at a time,
//! at most once per interval, with the cached keys serving while it hangs
//! or fails.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_proto::v1::ListConnectionTypesRequest;
use switchboard_tests::{TestServer, workspace_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::support::{Client, expect_code, ok};

const W: &str = "claims";
const ISSUER: &str = "https://idp.example";
/// The fixture key the JWKS publishes (ES256).
const KID: &str = "test-es256-a";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "erin",
        "aud": "switchboard",
        "exp": now() + 3600,
        "roles": { W: "MEMBER" },
    })
}

/// A JWT over exactly `header` and `claims`, signed HMAC-SHA256 with `key`.
pub(crate) fn hs256_jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &[u8],
) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn fixture(name: &str) -> PathBuf {
    workspace_root()
        .join("crates/auth/tests/fixtures")
        .join(name)
}

/// An ES256 JWT over `claims` signed with the fixture key, naming `kid`.
fn es256_jwt(kid: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(fixture(&format!("{KID}.pem"))).expect("the fixture key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("an EC key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("signing works")
}

/// ListConnectionTypes with `token`, which any role allows.
async fn call(clients: &mut Client, token: &str) -> Result<(), tonic::Status> {
    clients
        .with_token(token)
        .list_connection_types(ListConnectionTypesRequest::default())
        .await
        .map(|_| ())
}

/// Fails unless `token` is refused UNAUTHENTICATED with a message that
/// contains `expected`, names no library error and does not echo the token.
async fn refused(clients: &mut Client, token: &str, expected: &str, what: &str) {
    let status = expect_code(
        clients
            .with_token(token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        Code::Unauthenticated,
        what,
    );
    let message = status.message();
    assert!(message.contains(expected), "{what}: {message}");
    for part in token.split('.').filter(|part| part.len() > 8) {
        assert!(
            !message.contains(part),
            "{what}: the message echoes the token"
        );
    }
    for library_name in [
        "InvalidSignature",
        "ImmatureSignature",
        "InvalidAudience",
        "MissingRequiredClaim",
        "Json(",
        "Error(",
    ] {
        assert!(!message.contains(library_name), "{what}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_token_claims_are_checked_with_plain_errors() {
    let server = TestServer::configure().spawn().await;
    let key = std::fs::read(server.data_dir().join("jwt-hs256.key"))
        .expect("the development signing key in the data dir");
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let mut clients = server.client().await;

    ok(
        clients
            .with_token(&hs256_jwt(&header, &claims(), &key))
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "a plain token",
    );

    // `aud` may be an array (RFC 7519 4.1.3) that names switchboard.
    let mut array_audience = claims();
    array_audience["aud"] = serde_json::json!(["airflow", "switchboard"]);
    call(&mut clients, &hs256_jwt(&header, &array_audience, &key))
        .await
        .expect("an audience array naming switchboard is accepted");
    let mut foreign_audience = claims();
    foreign_audience["aud"] = serde_json::json!(["airflow", "grafana"]);
    let token = hs256_jwt(&header, &foreign_audience, &key);
    server.forbid_in_logs(&token);
    refused(
        &mut clients,
        &token,
        "audience must include 'switchboard'",
        "an audience array without switchboard",
    )
    .await;

    // `nbf` is honoured (beyond the 30 s leeway).
    let mut not_yet = claims();
    not_yet["nbf"] = serde_json::json!(now() + 600);
    let token = hs256_jwt(&header, &not_yet, &key);
    server.forbid_in_logs(&token);
    refused(&mut clients, &token, "not valid yet", "nbf in the future").await;
    let mut already = claims();
    already["nbf"] = serde_json::json!(now() - 60);
    call(&mut clients, &hs256_jwt(&header, &already, &key))
        .await
        .expect("an nbf in the past is accepted");

    // Critical header extensions are refused: we implement none.
    let critical = serde_json::json!({"alg": "HS256", "typ": "JWT", "crit": ["b64"], "b64": false});
    let token = hs256_jwt(&critical, &claims(), &key);
    server.forbid_in_logs(&token);
    refused(&mut clients, &token, "'crit'", "a crit header").await;

    // A subject with control characters would reach audit events and logs.
    for subject in ["erin\nadmin", "erin\u{1b}[31m", "erin\r"] {
        let mut odd = claims();
        odd["sub"] = serde_json::json!(subject);
        let token = hs256_jwt(&header, &odd, &key);
        server.forbid_in_logs(&token);
        refused(
            &mut clients,
            &token,
            "subject contains control characters",
            "control characters in sub",
        )
        .await;
    }

    // The signature's failure is told in words.
    let good = hs256_jwt(&header, &claims(), &key);
    let (unsigned, _) = good.rsplit_once('.').expect("three parts");
    let forged = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    server.forbid_in_logs(&forged);
    refused(
        &mut clients,
        &forged,
        "signature does not verify",
        "a forged signature",
    )
    .await;
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_issuer_is_required() {
    let server = TestServer::configure()
        .with_arg("--jwks-file", fixture("jwks.json"))
        .with_arg("--jwt-issuer", ISSUER)
        .spawn()
        .await;
    let mut clients = server.client().await;
    let mut with_issuer = claims();
    with_issuer["iss"] = serde_json::json!(ISSUER);
    call(&mut clients, &es256_jwt(KID, &with_issuer))
        .await
        .expect("the configured issuer is accepted");

    let token = es256_jwt(KID, &claims());
    server.forbid_in_logs(&token);
    refused(
        &mut clients,
        &token,
        "no issuer (iss)",
        "a token without iss",
    )
    .await;
    let mut other_issuer = claims();
    other_issuer["iss"] = serde_json::json!("https://evil.example");
    let token = es256_jwt(KID, &other_issuer);
    server.forbid_in_logs(&token);
    refused(
        &mut clients,
        &token,
        "issuer is not the configured issuer",
        "another issuer",
    )
    .await;
    server.assert_logs_clean();
}

/// What the test JWKS endpoint does with the next request.
#[derive(Debug, Clone)]
enum Mode {
    /// Answers 200 with this JWKS document.
    Serve(String),
    /// Answers 500.
    Fail,
    /// Reads the request and never answers.
    Hang,
}

/// A JWKS URL served from inside the test, counting the requests it gets.
#[derive(Debug, Clone)]
struct JwksEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
}

impl JwksEndpoint {
    async fn start(document: String) -> JwksEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS endpoint");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("local address")
        );
        let endpoint = JwksEndpoint {
            url,
            requests: Arc::new(AtomicUsize::new(0)),
            mode: Arc::new(Mutex::new(Mode::Serve(document))),
        };
        let served = endpoint.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    // One request per connection (answered with Connection: close).
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    served.requests.fetch_add(1, Ordering::SeqCst);
                    let mode = served.mode.lock().expect("mode lock").clone();
                    let response = match mode {
                        Mode::Serve(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Mode::Fail => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                        Mode::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        endpoint
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode lock") = mode;
    }
}

/// The fixture JWKS, with the fixture key also published under `extra_kids`.
fn jwks_document(extra_kids: &[&str]) -> String {
    let text = std::fs::read_to_string(fixture("jwks.json")).expect("the fixture JWKS");
    let mut document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let key = document["keys"][0].clone();
    for kid in extra_kids {
        let mut copy = key.clone();
        copy["kid"] = serde_json::json!(kid);
        document["keys"]
            .as_array_mut()
            .expect("a keys array")
            .push(copy);
    }
    document.to_string()
}

/// Calls with one token each, all at once; each call's result and duration.
async fn burst(
    clients: &Client,
    tokens: Vec<String>,
) -> Vec<(Result<(), tonic::Status>, Duration)> {
    let calls = tokens.into_iter().map(|token| {
        let mut clients = clients.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = call(&mut clients, &token).await;
            (result, started.elapsed())
        })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(call.await.expect("the call's task"));
    }
    results
}

fn unknown_kid_tokens(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| es256_jwt(&format!("{prefix}-{index}"), &claims()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refresh_is_single_flight_bounded_and_never_blocks_known_keys() {
    let endpoint = JwksEndpoint::start(jwks_document(&[])).await;
    // A 2 s interval: unknown kids may trigger one read per 2 s.
    let interval = Duration::from_secs(2);
    let server = TestServer::configure()
        .with_arg("--jwks-url", &endpoint.url)
        .with_arg("--jwks-refresh", "2s")
        .spawn()
        .await;
    assert_eq!(endpoint.requests(), 1, "the JWKS is read once at startup");
    let clients = server.client().await;
    let known = es256_jwt(KID, &claims());
    call(&mut clients.clone(), &known)
        .await
        .expect("a token with the published kid");

    // A burst of unknown kids after the interval: one read, not one per token.
    tokio::time::sleep(interval + Duration::from_millis(300)).await;
    let before = endpoint.requests();
    let results = burst(&clients, unknown_kid_tokens("burst", 40)).await;
    for (result, _) in &results {
        let status = result.as_ref().expect_err("an unknown kid is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("signing key is unknown"),
            "{status:?}"
        );
    }
    let more = burst(&clients, unknown_kid_tokens("again", 40)).await;
    assert!(more.iter().all(|(result, _)| result.is_err()));
    let reads = endpoint.requests() - before;
    assert!(
        reads <= 1,
        "80 tokens with unknown kids within one interval read the JWKS {reads} times"
    );

    // A rotated-in key is picked up by the one read its first token triggers.
    endpoint.set(Mode::Serve(jwks_document(&["rotated"])));
    tokio::time::sleep(interval + Duration::from_millis(300)).await;
    call(&mut clients.clone(), &es256_jwt("rotated", &claims()))
        .await
        .expect("a newly published kid is accepted after one refresh");

    // A hanging endpoint: known kids are served from the cache at once, and
    // the one read in flight is not joined by more.
    endpoint.set(Mode::Hang);
    tokio::time::sleep(interval + Duration::from_millis(300)).await;
    let hang_started = endpoint.requests();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rounds = 0;
    while Instant::now() < deadline {
        let mut tokens = vec![known.clone(); 10];
        tokens.extend(unknown_kid_tokens(&format!("hang{rounds}"), 10));
        let results = burst(&clients, tokens).await;
        for (index, (result, took)) in results.iter().enumerate() {
            if index < 10 {
                assert!(
                    result.is_ok(),
                    "a known kid while the JWKS hangs: {result:?}"
                );
                assert!(
                    *took < Duration::from_secs(1),
                    "a known kid waited {took:?} for a hanging JWKS"
                );
            } else {
                assert!(result.is_err(), "an unknown kid while the JWKS hangs");
                assert!(
                    *took < Duration::from_secs(6),
                    "an unknown kid waited {took:?}"
                );
            }
        }
        rounds += 1;
    }
    assert!(
        endpoint.requests() - hang_started <= 1,
        "{} reads started while one hung",
        endpoint.requests() - hang_started
    );

    // A failing endpoint: reads back off; known kids keep working.
    endpoint.set(Mode::Fail);
    let fail_started = endpoint.requests();
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut calls = 0;
    while Instant::now() < deadline {
        let mut tokens = vec![known.clone(); 5];
        tokens.extend(unknown_kid_tokens(&format!("fail{calls}"), 5));
        let results = burst(&clients, tokens).await;
        assert!(results[..5].iter().all(|(result, _)| result.is_ok()));
        calls += results.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hung read times out after 10 s, then retries wait 2 s, 4 s, 8 s…
    let reads = endpoint.requests() - fail_started;
    assert!(
        reads <= 3,
        "{calls} calls against a failing JWKS read it {reads} times"
    );
    assert!(
        server.logs().contains("cannot refresh the JWKS"),
        "failed reads are logged"
    );
}
