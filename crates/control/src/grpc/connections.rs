//! ConnectionService over the service layer's connection and link
//! operations.

use switchboard_domain::catalog;
use switchboard_domain::names::{ConnectionName, LinkName};
use switchboard_domain::permission;
use switchboard_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Control;
use crate::error::{ControlError, ControlResult};
use crate::field_mask::mask_paths;
use crate::links::{LinkCreate, LinkDelete, LinkFields, LinkOf, LinkUpdate};
use crate::page_token;
use crate::pb_conversions::{catalog_to_pb, link_to_pb, overrides_from_pb};
use crate::service::{PageRequest, required};

/// A link message as the service reads it.
pub(super) fn link_fields(message: &pb::Link) -> LinkFields {
    LinkFields {
        deployment: message.deployment.clone(),
        overrides: overrides_from_pb(message.overrides.as_ref()),
    }
}

fn link_of_to_pb(link: &LinkOf) -> ControlResult<pb::Link> {
    link_to_pb(&link.connection, &link.link)
}

#[tonic::async_trait]
impl pb::connection_service_server::ConnectionService for Control {
    async fn list_connection_types(
        &self,
        request: Request<pb::ListConnectionTypesRequest>,
    ) -> Result<Response<pb::ListConnectionTypesResponse>, Status> {
        let principal = self.authenticate(&request).await?;
        permission::authorize_catalog(&principal).map_err(ControlError::from)?;
        let message = request.into_inner();
        let page_key = &self.service.page_key;
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = "connection_types";
        let mut entries: Vec<_> = catalog::all().iter().collect();
        if let Some(after) = page_token::decode(page_key, fingerprint, &message.page_token)? {
            let position = entries
                .iter()
                .position(|entry| entry.key == after)
                .ok_or_else(|| {
                    ControlError::invalid("page_token", "is not a page token of this request")
                })?;
            entries.drain(..=position);
        }
        let next_page_token =
            page_token::next_page(page_key, fingerprint, &mut entries, page_size, |entry| {
                entry.key.to_owned()
            });
        Ok(Response::new(pb::ListConnectionTypesResponse {
            connection_types: entries.into_iter().map(catalog_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn create_connection(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.create_connection_inner(request).await?))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.get_connection_inner(request).await?))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        Ok(Response::new(self.list_connections_inner(request).await?))
    }

    async fn update_connection(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.update_connection_inner(request).await?))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_connection_inner(request).await?;
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
        Ok(Response::new(self.list_versions_inner(request).await?))
    }

    async fn rollback_connection(
        &self,
        request: Request<pb::RollbackConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.rollback_inner(request).await?))
    }
}
