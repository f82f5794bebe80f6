//! AuditService over the service layer's audit listing.

use switchboard_domain::names::WorkspaceName;
use switchboard_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Control;
use super::pb_conversions::audit_to_pb;
use crate::audit::AuditQuery;
use crate::error::{ControlError, ControlResult};
use crate::service::PageRequest;

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Control {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let query = AuditQuery {
            parent,
            filter: message.filter,
            page: PageRequest {
                size: message.page_size,
                token: message.page_token,
            },
        };
        let page = self.service.list_audit_events(&principal, query).await?;
        let audit_events = page
            .items
            .iter()
            .map(audit_to_pb)
            .collect::<ControlResult<_>>()?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events,
            next_page_token: page.next_page_token,
        }))
    }
}
