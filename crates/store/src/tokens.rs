//! Deployment tokens as rows: only the hash is stored; the token itself is
//! returned once, to whoever issued it.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};

use crate::auth;
use crate::entity::deployment_token;
use crate::error::StoreResult;

/// A token just issued: the secret, shown once, and its stored row.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token to hand out (`sbdt_<id>_<secret>`); never stored.
    pub token: String,
    /// The row holding its id and hash.
    pub row: deployment_token::Model,
}

/// Issues a token for `deployment_id` of `workspace` and stores its hash
/// through `txn` (the caller's write transaction, which also audits it).
pub async fn issue<C: ConnectionTrait>(
    txn: &C,
    workspace: &str,
    deployment_id: &str,
    description: &str,
    now: i64,
) -> StoreResult<IssuedToken> {
    let issued = auth::new_deployment_token();
    let row = deployment_token::ActiveModel {
        token_id: Set(issued.token_id),
        workspace: Set(workspace.to_owned()),
        deployment_id: Set(deployment_id.to_owned()),
        token_hash: Set(issued.hash),
        description: Set(description.to_owned()),
        create_time: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(IssuedToken {
        token: issued.token,
        row,
    })
}
