//! Request-decoding fuzz: arbitrary request bodies sent to every method of
//! the running server, as raw bytes. Half the bodies are built from the
//! method's input type in the file descriptor set (every field of the right
//! wire type, values from a vocabulary of real names, traversal and unicode
//! tricks, huge and negative numbers, invalid UTF-8), the other half are
//! such bodies mutated (bytes flipped, cut, spliced) or plain random bytes.
//! Every call must come back with a proper status (never UNKNOWN,
//! UNIMPLEMENTED or UNAVAILABLE; INTERNAL only for bodies protobuf can't
//! decode), within its deadline, and the server must stay up with no panic
//! in its log.
//!
//! `SWITCHBOARD_FUZZ_CASES` sets the bodies per method (default 40);
//! `SWITCHBOARD_FUZZ_SEED` replays a run (each run prints its seed).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use switchboard_tests::{Method, TestServer, WorkspaceRole, random_hex};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{
    create_connection, create_deployment, create_deployment_token, create_link,
    schema_and_warehouse, snowflake_connection,
};

const WORKSPACE: &str = "fuzz";
/// Longest one fuzzed call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Passes bodies through unchanged, in both directions.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; buffer.remaining()];
        buffer.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// xorshift64*: small, seeded, reproducible.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Strings a field may get: real names of the seeded workspace, and the
/// tricks the validators must turn away.
fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = [
        "",
        "workspaces/fuzz",
        "workspaces/fuzz/connections/warehouse",
        "workspaces/fuzz/connections/WAREHOUSE",
        "workspaces/fuzz/connections/warehouse/links/prod",
        "workspaces/fuzz/deployments/prod",
        "workspaces/fuzz/deployments/preview",
        "workspaces/fuzz/policy",
        "workspaces/other/connections/warehouse",
        "workspaces/../fuzz/connections/warehouse",
        "workspaces/fuzz/connections/../../etc/passwd",
        "workspaces/fuzz/connections/%2e%2e",
        "warehouse",
        "prod",
        "fresh_conn",
        "snowflake_password",
        "snowflake_private_key",
        "generic",
        "postgres",
        "password",
        "extra",
        "extra.warehouse",
        "extra.private_key_content",
        "host,port",
        "*",
        "etag-garbage",
        "W/\"1\"",
        "page-token-garbage",
        "conn_type = \"postgres\"",
        "DEPLOYMENT_KIND_STANDARD",
        "../../..",
        "a\u{0}b",
        "\u{202e}evil",
        "ｗａｒｅｈｏｕｓｅ",
        "warehouse\u{301}",
        "😀",
        "-----BEGIN PRIVATE KEY-----",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    words.push("x".repeat(251));
    words.push("a/".repeat(600));
    words.push("é".repeat(70_000));
    words
}

/// Builds protobuf bodies for message types from the descriptor set.
struct BodyBuilder {
    messages: HashMap<String, DescriptorProto>,
    words: Vec<String>,
}

impl BodyBuilder {
    fn new(set: &FileDescriptorSet) -> Self {
        let mut messages = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(&mut messages, &format!(".{package}"), message);
            }
        }
        BodyBuilder {
            messages,
            words: vocabulary(),
        }
    }

    /// A body for `type_name` (".switchboard.v1.X"); unknown types get random fields.
    fn body(&self, type_name: &str, rng: &mut Rng, depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(message) = self.messages.get(type_name) else {
            let len = rng.below(16);
            return rng.bytes(len);
        };
        for field in &message.field {
            // Most fields present; repeated ones a few times.
            if !rng.chance(75) {
                continue;
            }
            let repeats = if field.label() == Label::Repeated {
                rng.below(4)
            } else {
                1
            };
            for _ in 0..repeats {
                self.field(field, rng, depth, &mut out);
            }
        }
        if rng.chance(5) {
            // An unknown field number.
            put_key(&mut out, 1000 + rng.below(1000) as u32, 0);
            put_varint(&mut out, rng.next());
        }
        out
    }

    fn field(
        &self,
        field: &prost_types::FieldDescriptorProto,
        rng: &mut Rng,
        depth: usize,
        out: &mut Vec<u8>,
    ) {
        let number = field.number() as u32;
        match field.r#type() {
            Type::Double | Type::Fixed64 | Type::Sfixed64 => {
                put_key(out, number, 1);
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
            Type::Float | Type::Fixed32 | Type::Sfixed32 => {
                put_key(out, number, 5);
                out.extend_from_slice(&(rng.next() as u32).to_le_bytes());
            }
            Type::Int64
            | Type::Uint64
            | Type::Int32
            | Type::Uint32
            | Type::Sint32
            | Type::Sint64
            | Type::Bool
            | Type::Enum => {
                put_key(out, number, 0);
                let value = match rng.below(5) {
                    0 => 0,
                    1 => 1 + rng.below(4) as u64,
                    2 => u64::MAX,
                    3 => (-1i64) as u64,
                    _ => rng.next() >> rng.below(64),
                };
                put_varint(out, value);
            }
            Type::String | Type::Bytes => {
                put_key(out, number, 2);
                let value = if rng.chance(5) {
                    // Not UTF-8.
                    vec![0xff, 0xfe, b'a', 0xc0]
                } else if rng.chance(10) {
                    let len = rng.below(40);
                    rng.bytes(len)
                        .into_iter()
                        .map(|byte| b' ' + byte % 95)
                        .collect()
                } else {
                    self.words[rng.below(self.words.len())].clone().into_bytes()
                };
                put_varint(out, value.len() as u64);
                out.extend_from_slice(&value);
            }
            Type::Message | Type::Group => {
                put_key(out, number, 2);
                let inner = if depth >= 4 {
                    Vec::new()
                } else {
                    self.body(field.type_name(), rng, depth + 1)
                };
                put_varint(out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
        }
    }
}

fn collect(
    messages: &mut HashMap<String, DescriptorProto>,
    scope: &str,
    message: &DescriptorProto,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect(messages, &name, nested);
    }
    messages.insert(name, message.clone());
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u32) {
    put_varint(out, u64::from((number << 3) | wire_type));
}

/// Flips, cuts, splices or replaces `body`.
fn mutate(mut body: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 if !body.is_empty() => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(body.len());
                body[at] ^= 1 << rng.below(8);
            }
        }
        1 if !body.is_empty() => body.truncate(rng.below(body.len())),
        2 => {
            let at = rng.below(body.len() + 1);
            let len = rng.below(12);
            let noise = rng.bytes(len);
            body.splice(at..at, noise);
        }
        3 => {
            // A length prefix claiming far more than follows.
            body.insert(0, 0x0a);
            body.insert(1, 0xff);
            body.insert(2, 0xff);
            body.insert(3, 0x7f);
        }
        _ => {
            let len = rng.below(64);
            body = rng.bytes(len);
        }
    }
    body
}

/// Every method of the contract's table: (path, input type from the
/// descriptor set).
fn methods(set: &FileDescriptorSet) -> Vec<(String, String)> {
    let mut methods = Method::ALL
        .iter()
        .map(|method| {
            let input = set
                .file
                .iter()
                .flat_map(|file| {
                    file.service
                        .iter()
                        .filter(move |service| {
                            format!("{}.{}", file.package(), service.name()) == method.service()
                        })
                        .flat_map(|service| service.method.iter())
                })
                .find(|candidate| candidate.name() == method.name())
                .unwrap_or_else(|| panic!("{method:?} is in the descriptor set"))
                .input_type()
                .to_owned();
            (method.path(), input)
        })
        .collect::<Vec<_>>();
    // Sorted, so a seed picks the same methods whatever the table's order.
    methods.sort();
    methods
}

fn fuzz_cases() -> usize {
    std::env::var("SWITCHBOARD_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(40)
}

fn fuzz_seed() -> u64 {
    std::env::var("SWITCHBOARD_FUZZ_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| u64::from_str_radix(&random_hex(8), 16).expect("hex"))
        | 1
}

/// Whether `status` is a proper answer to a fuzzed body.
fn acceptable(status: &Status) -> bool {
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::ResourceExhausted => true,
        // tonic answers INTERNAL for a body protobuf can't decode, before
        // our code runs; any other INTERNAL is a bug.
        Code::Internal => status
            .message()
            .starts_with("failed to decode Protobuf message"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_request_bodies_get_proper_statuses_and_the_server_stays_up() {
    let server = TestServer::configure()
        .with_arg("--rate-limit", "100000")
        .spawn()
        .await;
    let owner = server.user_token("fuzz-owner", &[(WORKSPACE, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, WORKSPACE, "prod").await;
    let password = server.marker("fuzz-password");
    create_connection(
        &mut clients,
        &owner,
        WORKSPACE,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &owner,
        WORKSPACE,
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let deployment_token =
        create_deployment_token(&server, &mut clients, &owner, WORKSPACE, "prod").await;

    let set = FileDescriptorSet::decode(switchboard_proto::FILE_DESCRIPTOR_SET)
        .expect("the file descriptor set decodes");
    let builder = BodyBuilder::new(&set);
    let methods = methods(&set);
    assert!(methods.len() >= 20, "every method is found: {methods:?}");
    let cases = fuzz_cases();
    let seed = fuzz_seed();
    println!(
        "request fuzz: {} methods x {cases} bodies, SWITCHBOARD_FUZZ_SEED={seed}",
        methods.len()
    );
    let mut rng = Rng(seed);
    let channel = server.channel().await;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut codes: HashMap<Code, usize> = HashMap::new();
    for (path, input_type) in &methods {
        for case in 0..cases {
            let structured = builder.body(input_type, &mut rng, 0);
            let body = if case % 2 == 0 {
                structured
            } else {
                mutate(structured, &mut rng)
            };
            let token = match rng.below(6) {
                0 => None,
                1 => Some(deployment_token.as_str()),
                2 => Some("garbage.token.value"),
                _ => Some(owner.as_str()),
            };
            let mut request = tonic::Request::new(body.clone());
            request.set_timeout(CALL_TIMEOUT);
            if let Some(token) = token {
                let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("metadata");
                request.metadata_mut().insert("authorization", value);
            }
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.expect("the channel is ready");
            let call_started = Instant::now();
            let result = grpc
                .unary::<Vec<u8>, Vec<u8>, RawCodec>(
                    request,
                    PathAndQuery::from_maybe_shared(path.clone()).expect("a method path"),
                    RawCodec,
                )
                .await;
            let code = match &result {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            };
            *codes.entry(code).or_default() += 1;
            if let Err(status) = &result {
                switchboard_tests::leaks::record_status(status);
                if !acceptable(status) {
                    failures.push(format!(
                        "{path} case {case}: {:?} {} (body {} bytes: {:02x?})",
                        status.code(),
                        status.message(),
                        body.len(),
                        &body[..body.len().min(64)]
                    ));
                }
                crate::support::assert_status_free_of(status, &password);
            }
            assert!(
                call_started.elapsed() < CALL_TIMEOUT,
                "{path} case {case} took {:?}",
                call_started.elapsed()
            );
        }
    }
    let total = methods.len() * cases;
    let mut summary: Vec<(String, usize)> = codes
        .iter()
        .map(|(code, count)| (format!("{code:?}"), *count))
        .collect();
    summary.sort();
    println!(
        "request fuzz: {total} calls in {:.1} s; codes {summary:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "improper answers to fuzzed bodies (replay with SWITCHBOARD_FUZZ_SEED={seed}):\n{}",
        failures.join("\n")
    );
    assert_eq!(
        server.health_status("").await,
        Some(ServingStatus::Serving),
        "the server still serves after the fuzz"
    );
    let logs = server.logs();
    assert!(
        !logs.contains("panicked"),
        "the server panicked during the fuzz:\n{logs}"
    );
    server.assert_logs_clean();
}
