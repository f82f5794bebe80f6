//! A typed client of every `switchboard.v1` method, and the table of them
//! all that the bad-input, permission and fuzz suites share.
//!
//! `Client::with_token` sends `authorization: Bearer <token>` with every
//! call, so a test reads as what it does:
//! `server.client().await.with_token(&owner).create_connection(request)`.
//! Each method answers the response message or the status, so assertions
//! need no `into_inner`.

use std::fmt;
use std::time::Duration;

use switchboard_proto::v1 as pb;
use switchboard_proto::v1::audit_service_client::AuditServiceClient;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use switchboard_proto::v1::deployment_service_client::DeploymentServiceClient;
use switchboard_proto::v1::resolver_service_client::ResolverServiceClient;
use switchboard_proto::v1::workspace_service_client::WorkspaceServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// A client of every service on one channel, sending one `authorization`
/// value (or none). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// The deadline each call sends (`grpc-timeout`), if any.
    timeout: Option<Duration>,
}

impl fmt::Debug for Client {
    // The authorization value is a credential: never printed.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Client")
            .field("authorized", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client on `channel` that sends no credentials.
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            authorization: None,
            timeout: None,
        }
    }

    /// The same channel, sending `authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        self.with_authorization(&format!("Bearer {token}"))
    }

    /// The same channel, sending exactly this `authorization` value.
    pub fn with_authorization(&self, value: &str) -> Self {
        Self {
            authorization: Some(value.parse().expect("a valid metadata value")),
            ..self.clone()
        }
    }

    /// The same client, with every call sending this deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The same channel, sending no credentials.
    pub fn anonymous(&self) -> Self {
        Self::new(self.channel.clone())
    }

    /// The channel, for clients of other services (health, reflection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `message` in a request with this client's credentials.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// Declares [`Method`], [`AnyRequest`] and one `Client` method per RPC from
/// one list, so the three can't disagree.
macro_rules! methods {
    ($(
        $service:literal $client:ident {
            $( $method:ident => $call:ident($request:ident) -> $response:ty; )*
        }
    )*) => {
        /// Every method of the contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Method {
            $($( $method, )*)*
        }

        impl Method {
            /// Every method, service by service.
            pub const ALL: &'static [Method] = &[$($( Method::$method, )*)*];

            /// The method's name, as in the proto (`CreateConnection`).
            pub fn name(self) -> &'static str {
                match self {
                    $($( Method::$method => stringify!($method), )*)*
                }
            }

            /// The full name of the method's service
            /// (`switchboard.v1.ConnectionService`).
            pub fn service(self) -> &'static str {
                match self {
                    $($( Method::$method => concat!("switchboard.v1.", $service), )*)*
                }
            }
        }

        /// A request to any one method.
        #[derive(Debug, Clone)]
        pub enum AnyRequest {
            $($( $method(pb::$request), )*)*
        }

        impl AnyRequest {
            /// The method this request is for.
            pub fn method(&self) -> Method {
                match self {
                    $($( AnyRequest::$method(_) => Method::$method, )*)*
                }
            }
        }

        impl Client {
            $($(
                #[doc = concat!("`", $service, ".", stringify!($method), "`.")]
                pub async fn $call(&self, message: pb::$request) -> Result<$response, Status> {
                    $client::new(self.channel.clone())
                        .$call(self.request(message))
                        .await
                        .map(Response::into_inner)
                }
            )*)*

            /// Sends `request` to its method; the answer's message is dropped.
            pub async fn call(&self, request: AnyRequest) -> Result<(), Status> {
                match request {
                    $($( AnyRequest::$method(message) => self.$call(message).await.map(drop), )*)*
                }
            }
        }
    };
}

methods! {
    "ConnectionService" ConnectionServiceClient {
        ListConnectionTypes => list_connection_types(ListConnectionTypesRequest) -> pb::ListConnectionTypesResponse;
        CreateConnection => create_connection(CreateConnectionRequest) -> pb::Connection;
        GetConnection => get_connection(GetConnectionRequest) -> pb::Connection;
        ListConnections => list_connections(ListConnectionsRequest) -> pb::ListConnectionsResponse;
        UpdateConnection => update_connection(UpdateConnectionRequest) -> pb::Connection;
        DeleteConnection => delete_connection(DeleteConnectionRequest) -> ();
        CreateLink => create_link(CreateLinkRequest) -> pb::Link;
        GetLink => get_link(GetLinkRequest) -> pb::Link;
        ListLinks => list_links(ListLinksRequest) -> pb::ListLinksResponse;
        UpdateLink => update_link(UpdateLinkRequest) -> pb::Link;
        DeleteLink => delete_link(DeleteLinkRequest) -> ();
        ListConnectionVersions => list_connection_versions(ListConnectionVersionsRequest) -> pb::ListConnectionVersionsResponse;
        RollbackConnection => rollback_connection(RollbackConnectionRequest) -> pb::Connection;
    }
    "DeploymentService" DeploymentServiceClient {
        CreateDeployment => create_deployment(CreateDeploymentRequest) -> pb::Deployment;
        GetDeployment => get_deployment(GetDeploymentRequest) -> pb::Deployment;
        ListDeployments => list_deployments(ListDeploymentsRequest) -> pb::ListDeploymentsResponse;
        UpdateDeployment => update_deployment(UpdateDeploymentRequest) -> pb::Deployment;
        DeleteDeployment => delete_deployment(DeleteDeploymentRequest) -> ();
        CreateDeploymentToken => create_deployment_token(CreateDeploymentTokenRequest) -> pb::DeploymentToken;
        ListDeploymentTokens => list_deployment_tokens(ListDeploymentTokensRequest) -> pb::ListDeploymentTokensResponse;
        RevokeDeploymentToken => revoke_deployment_token(RevokeDeploymentTokenRequest) -> pb::DeploymentToken;
    }
    "WorkspaceService" WorkspaceServiceClient {
        GetWorkspacePolicy => get_workspace_policy(GetWorkspacePolicyRequest) -> pb::WorkspacePolicy;
        UpdateWorkspacePolicy => update_workspace_policy(UpdateWorkspacePolicyRequest) -> pb::WorkspacePolicy;
    }
    "AuditService" AuditServiceClient {
        ListAuditEvents => list_audit_events(ListAuditEventsRequest) -> pb::ListAuditEventsResponse;
    }
    "ResolverService" ResolverServiceClient {
        ResolveConnection => resolve_connection(ResolveConnectionRequest) -> pb::ResolvedConnection;
        ListResolvedConnections => list_resolved_connections(ListResolvedConnectionsRequest) -> pb::ListResolvedConnectionsResponse;
    }
}

/// A list request that pages with `page_token`, for [`Client::list_all`].
pub trait Paged: Sized {
    /// What one page lists.
    type Item;
    /// Sends this request for one page.
    fn page(
        self,
        client: &Client,
    ) -> impl Future<Output = Result<(Vec<Self::Item>, String), Status>> + Send;
    /// The same request for the page `token` names.
    fn at(self, token: String) -> Self;
    /// The page size asked for (0: the server's default).
    fn page_size(&self) -> i32;
}

/// Implements [`Paged`] for list requests from their call and item field.
macro_rules! paged {
    ($( $request:ident => $call:ident, $items:ident: $item:ty; )*) => {$(
        impl Paged for pb::$request {
            type Item = $item;
            async fn page(self, client: &Client) -> Result<(Vec<$item>, String), Status> {
                let page = client.$call(self).await?;
                Ok((page.$items, page.next_page_token))
            }
            fn at(self, token: String) -> Self {
                Self { page_token: token, ..self }
            }
            fn page_size(&self) -> i32 {
                self.page_size
            }
        }
    )*};
}

paged! {
    ListConnectionTypesRequest => list_connection_types, connection_types: pb::ConnectionType;
    ListConnectionsRequest => list_connections, connections: pb::Connection;
    ListLinksRequest => list_links, links: pb::Link;
    ListConnectionVersionsRequest => list_connection_versions, connection_versions: pb::ConnectionVersion;
    ListDeploymentsRequest => list_deployments, deployments: pb::Deployment;
    ListDeploymentTokensRequest => list_deployment_tokens, deployment_tokens: pb::DeploymentToken;
    ListAuditEventsRequest => list_audit_events, audit_events: pb::AuditEvent;
}

/// More pages than any test's listing has: a server that keeps answering
/// next-page tokens is looping, and the test says so instead of hanging.
const MAX_PAGES: usize = 10_000;

impl Client {
    /// Every item `request` lists, following next-page tokens from its own
    /// `page_token` to the last page; fails the test if a page holds more
    /// than the `page_size` asked for or the pages never end.
    pub async fn list_all<R: Paged + Clone>(&self, request: R) -> Result<Vec<R::Item>, Status> {
        let page_size = usize::try_from(request.page_size()).unwrap_or(0);
        let mut items = Vec::new();
        let mut next = request.clone();
        for _ in 0..MAX_PAGES {
            let (page, token) = next.page(self).await?;
            assert!(
                page_size == 0 || page.len() <= page_size,
                "a page holds {} items, more than page_size {page_size}",
                page.len()
            );
            items.extend(page);
            if token.is_empty() {
                return Ok(items);
            }
            next = request.clone().at(token);
        }
        panic!("the listing never reached its last page ({MAX_PAGES} pages)");
    }
}

impl Method {
    /// The method's HTTP/2 path (`/switchboard.v1.ConnectionService/CreateConnection`).
    pub fn path(self) -> String {
        format!("/{}/{}", self.service(), self.name())
    }

    /// The method called `name` (`CreateConnection`), if the contract has one.
    pub fn named(name: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|method| method.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table holds exactly the methods of the compiled contract, so a
    /// new RPC can't slip past the suites that iterate it.
    #[test]
    fn the_table_is_the_contract() {
        let descriptor = <prost_types::FileDescriptorSet as prost::Message>::decode(
            switchboard_proto::FILE_DESCRIPTOR_SET,
        )
        .expect("the descriptor set decodes");
        let mut contract: Vec<(String, String)> = descriptor
            .file
            .iter()
            .filter(|file| file.package() == "switchboard.v1")
            .flat_map(|file| {
                file.service.iter().flat_map(|service| {
                    service.method.iter().map(|method| {
                        (
                            format!("switchboard.v1.{}", service.name()),
                            method.name().to_owned(),
                        )
                    })
                })
            })
            .collect();
        contract.sort();
        let mut table: Vec<(String, String)> = Method::ALL
            .iter()
            .map(|method| (method.service().to_owned(), method.name().to_owned()))
            .collect();
        table.sort();
        assert_eq!(table, contract);
        assert_eq!(
            Method::named("CreateConnection"),
            Some(Method::CreateConnection)
        );
        assert_eq!(Method::named("NoSuchMethod"), None);
    }
}
