//! Every method of every `switchboard.v1` service, found through gRPC
//! reflection and called with an empty request: the ones still answering
//! UNIMPLEMENTED must be exactly [`STILL_UNIMPLEMENTED`], a list that only
//! shrinks as the issues naming those methods land.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::FileDescriptorProto;
use switchboard_proto::SERVICE_NAMES;
use switchboard_tests::{TestServer, WorkspaceRole, authorized};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

/// Methods that may still answer UNIMPLEMENTED. Remove a method when it is
/// implemented; never add one.
const STILL_UNIMPLEMENTED: &[&str] = &[];

async fn reflect(
    client: &mut v1::server_reflection_client::ServerReflectionClient<Channel>,
    request: v1::server_reflection_request::MessageRequest,
) -> v1::server_reflection_response::MessageResponse {
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1 answers")
        .into_inner();
    responses
        .next()
        .await
        .expect("one reflection response")
        .expect("a reflection response, not an error")
        .message_response
        .expect("the response has a message")
}

/// `service → [method]` for every `switchboard.v1` service reflection lists.
async fn methods_by_reflection(channel: Channel) -> BTreeMap<String, Vec<String>> {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let MessageResponse::ListServicesResponse(listed) =
        reflect(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("ListServices answered with something else");
    };
    let mut methods = BTreeMap::new();
    for service in listed.service {
        let Some(short_name) = service.name.strip_prefix("switchboard.v1.") else {
            continue;
        };
        let MessageResponse::FileDescriptorResponse(files) = reflect(
            &mut client,
            MessageRequest::FileContainingSymbol(service.name.clone()),
        )
        .await
        else {
            panic!("no file descriptor for {}", service.name);
        };
        let descriptor = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).expect("a file descriptor"))
            .filter(|file| file.package() == "switchboard.v1")
            .flat_map(|file| file.service)
            .find(|candidate| candidate.name() == short_name)
            .unwrap_or_else(|| panic!("reflection describes {}", service.name));
        methods.insert(
            service.name.clone(),
            descriptor
                .method
                .iter()
                .map(|method| method.name().to_owned())
                .collect(),
        );
    }
    methods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_methods_answer_unimplemented() {
    let server = TestServer::configure().spawn().await;
    let channel = server.channel().await;
    let token = server.user_token("olivia", &[("acme", WorkspaceRole::Operator)]);

    let methods = methods_by_reflection(channel.clone()).await;
    let reflected: Vec<&str> = methods.keys().map(String::as_str).collect();
    let mut contract: Vec<&str> = SERVICE_NAMES.to_vec();
    contract.sort_unstable();
    assert_eq!(
        reflected, contract,
        "reflection lists every contract service"
    );

    // The same through reflection v1alpha, which older grpcurl speaks.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        }]))
        .await
        .expect("reflection v1alpha answers")
        .into_inner();
    let Some(Ok(v1alpha::ServerReflectionResponse {
        message_response:
            Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(listed)),
        ..
    })) = answers.next().await
    else {
        panic!("reflection v1alpha lists services");
    };
    for service in SERVICE_NAMES {
        assert!(
            listed.service.iter().any(|entry| entry.name == *service),
            "reflection v1alpha lists {service}"
        );
    }

    let mut unimplemented = Vec::new();
    let mut broken = Vec::new();
    for (service, names) in &methods {
        for method in names {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.expect("the channel is ready");
            let path: PathAndQuery = format!("/{service}/{method}")
                .parse()
                .expect("a method path");
            let codec = tonic_prost::ProstCodec::<(), ()>::default();
            let result = grpc.unary(authorized((), &token), path, codec).await;
            let full_name = format!("{service}/{method}");
            match result.map_err(|status| status.code()) {
                Err(Code::Unimplemented) => unimplemented.push(full_name),
                Err(
                    code @ (Code::Internal | Code::Unknown | Code::Cancelled | Code::Unavailable),
                ) => broken.push(format!("{full_name}: {code:?}")),
                _ => {}
            }
        }
    }
    assert!(
        broken.is_empty(),
        "an empty request must be refused cleanly, not fail inside the server: {broken:?}"
    );
    unimplemented.sort_unstable();
    let mut expected: Vec<String> = STILL_UNIMPLEMENTED
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    expected.sort_unstable();
    assert_eq!(
        unimplemented, expected,
        "methods answering UNIMPLEMENTED differ from STILL_UNIMPLEMENTED: remove \
         implemented ones from the list"
    );

    server.assert_logs_clean();
}
