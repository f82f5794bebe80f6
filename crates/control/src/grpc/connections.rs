//! ConnectionService over the service layer's connection and link
//! operations.

use switchboard_domain::names::{ConnectionName, LinkName, WorkspaceName};
use switchboard_proto::v1 as pb;
use switchboard_store::records::{self, ConnectionSnapshot};
use tonic::{Request, Response, Status};

use super::Control;
use super::pb_conversions::mask_paths;
use super::pb_conversions::{
    catalog_to_pb, connection_to_pb, link_to_pb, masked_connection, overrides_from_pb,
    spec_from_pb, timestamp, version_action,
};
use crate::connections::{
    ConnectionCreate, ConnectionDelete, ConnectionFields, ConnectionQuery, ConnectionRead,
    ConnectionUpdate, Rollback, VersionPage, connection_name,
};
use crate::error::{ControlError, ControlResult};
use crate::links::{LinkCreate, LinkDelete, LinkFields, LinkOf, LinkUpdate};
use crate::service::{PageRequest, required};

/// A connection message as the service reads it.
fn connection_fields(message: &pb::Connection) -> ConnectionFields {
    ConnectionFields {
        spec: spec_from_pb(message),
        link_to_all_deployments: message.link_to_all_deployments,
        excluded_deployments: message.excluded_deployments.clone(),
    }
}

/// A link message as the service reads it.
fn link_fields(message: &pb::Link) -> LinkFields {
    LinkFields {
        deployment: message.deployment.clone(),
        overrides: overrides_from_pb(message.overrides.as_ref()),
    }
}

fn link_of_to_pb(link: &LinkOf) -> ControlResult<pb::Link> {
    link_to_pb(&link.connection, &link.link)
}

/// A connection as read, secrets shown only when they were revealed.
fn read_to_pb(read: &ConnectionRead) -> ControlResult<pb::Connection> {
    match &read.revealed {
        None => masked_connection(&read.row),
        Some((snapshot, spec)) => Ok(connection_to_pb(
            &connection_name(&read.row),
            snapshot,
            Some(spec),
            Some(&read.row),
        )),
    }
}

fn versions_to_pb(found: VersionPage) -> ControlResult<pb::ListConnectionVersionsResponse> {
    let canonical = connection_name(&found.connection);
    let connection_versions = found
        .versions
        .items
        .iter()
        .map(|version| {
            let snapshot: ConnectionSnapshot =
                records::from_json_text("connection_version", &version.snapshot)?;
            Ok(pb::ConnectionVersion {
                name: format!("{canonical}/versions/{}", version.version),
                version: version.version,
                connection: Some(connection_to_pb(&canonical, &snapshot, None, None)),
                actor: version.actor.clone(),
                action: version_action(&version.action).to_owned(),
                changed_fields: records::from_json_text(
                    "connection_version",
                    &version.changed_fields,
                )?,
                create_time: Some(timestamp(version.create_time)),
            })
        })
        .collect::<ControlResult<_>>()?;
    Ok(pb::ListConnectionVersionsResponse {
        connection_versions,
        next_page_token: found.versions.next_page_token,
    })
}

#[tonic::async_trait]
impl pb::connection_service_server::ConnectionService for Control {
    async fn list_connection_types(
        &self,
        request: Request<pb::ListConnectionTypesRequest>,
    ) -> Result<Response<pb::ListConnectionTypesResponse>, Status> {
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let page = PageRequest {
            size: message.page_size,
            token: message.page_token,
        };
        let page = self.service.connection_types(&principal, page)?;
        Ok(Response::new(pb::ListConnectionTypesResponse {
            connection_types: page.items.into_iter().map(catalog_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_connection(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let create = ConnectionCreate {
            parent,
            connection_id: message.connection_id,
            connection: message.connection.as_ref().map(connection_fields),
            links: message.links.iter().map(link_fields).collect(),
            request_id: message.request_id,
        };
        let row = self.service.create_connection(&principal, create).await?;
        Ok(Response::new(masked_connection(&row)?))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let name =
            ConnectionName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let reveal = matches!(
            pb::ConnectionView::try_from(request.get_ref().view),
            Ok(pb::ConnectionView::WithSecrets)
        );
        let principal = self.authenticate(&request).await?;
        let read = self
            .service
            .get_connection(&principal, &name, reveal)
            .await?;
        Ok(Response::new(read_to_pb(&read)?))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let query = ConnectionQuery {
            parent,
            filter: message.filter,
            page: PageRequest {
                size: message.page_size,
                token: message.page_token,
            },
        };
        let page = self.service.list_connections(&principal, query).await?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: page
                .items
                .iter()
                .map(masked_connection)
                .collect::<ControlResult<_>>()?,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_connection(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let connection = required("connection", request.get_ref().connection.as_ref())?;
        let name = ConnectionName::parse("connection.name", &connection.name)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let connection = message.connection.unwrap_or_default();
        // `*` counts only as a whole mask entry, as before paths are split.
        let wildcard = message
            .update_mask
            .as_ref()
            .is_some_and(|mask| mask.paths.iter().any(|path| path == "*"));
        let update = ConnectionUpdate {
            name,
            connection: connection_fields(&connection),
            etag: connection.etag,
            paths: mask_paths(message.update_mask.as_ref()),
            wildcard,
            request_id: message.request_id,
        };
        let row = self.service.update_connection(&principal, update).await?;
        Ok(Response::new(masked_connection(&row)?))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<()>, Status> {
        let name =
            ConnectionName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let delete = ConnectionDelete {
            name,
            etag: message.etag,
            request_id: message.request_id,
        };
        self.service.delete_connection(&principal, delete).await?;
        Ok(Response::new(()))
    }

    async fn create_link(
        &self,
        request: Request<pb::CreateLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        let parent = ConnectionName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let create = LinkCreate {
            parent,
            link: message.link.as_ref().map(link_fields),
            request_id: message.request_id,
        };
        let link = self.service.create_link(&principal, create).await?;
        Ok(Response::new(link_of_to_pb(&link)?))
    }

    async fn get_link(
        &self,
        request: Request<pb::GetLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        let name = LinkName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let link = self.service.get_link(&principal, &name).await?;
        Ok(Response::new(link_of_to_pb(&link)?))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        let parent = ConnectionName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let page = PageRequest {
            size: message.page_size,
            token: message.page_token,
        };
        let found = self.service.list_links(&principal, &parent, page).await?;
        Ok(Response::new(pb::ListLinksResponse {
            links: found
                .links
                .items
                .iter()
                .map(|row| link_to_pb(&found.connection, row))
                .collect::<ControlResult<_>>()?,
            next_page_token: found.links.next_page_token,
        }))
    }

    async fn update_link(
        &self,
        request: Request<pb::UpdateLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        let link = required("link", request.get_ref().link.as_ref())?;
        let name = LinkName::parse("link.name", &link.name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let link = message.link.unwrap_or_default();
        let update = LinkUpdate {
            name,
            overrides: overrides_from_pb(link.overrides.as_ref()),
            etag: link.etag,
            paths: mask_paths(message.update_mask.as_ref()),
            request_id: message.request_id,
        };
        let link = self.service.update_link(&principal, update).await?;
        Ok(Response::new(link_of_to_pb(&link)?))
    }

    async fn delete_link(
        &self,
        request: Request<pb::DeleteLinkRequest>,
    ) -> Result<Response<()>, Status> {
        let name = LinkName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let delete = LinkDelete {
            name,
            etag: message.etag,
            request_id: message.request_id,
        };
        self.service.delete_link(&principal, delete).await?;
        Ok(Response::new(()))
    }

    async fn list_connection_versions(
        &self,
        request: Request<pb::ListConnectionVersionsRequest>,
    ) -> Result<Response<pb::ListConnectionVersionsResponse>, Status> {
        let name = ConnectionName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let page = PageRequest {
            size: message.page_size,
            token: message.page_token,
        };
        let found = self.service.list_versions(&principal, &name, page).await?;
        Ok(Response::new(versions_to_pb(found)?))
    }

    async fn rollback_connection(
        &self,
        request: Request<pb::RollbackConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let name =
            ConnectionName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let rollback = Rollback {
            name,
            version: message.version,
            etag: message.etag,
            request_id: message.request_id,
        };
        let row = self
            .service
            .rollback_connection(&principal, rollback)
            .await?;
        Ok(Response::new(masked_connection(&row)?))
    }
}
