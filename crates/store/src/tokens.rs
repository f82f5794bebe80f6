//! Deployment tokens as rows: only the hash is stored; the token itself is
//! returned once, to whoever issued it.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};

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

/// The row of token `token_id` of `deployment_id` in `workspace`, revoked or not.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    deployment_id: &str,
    token_id: &str,
) -> StoreResult<Option<deployment_token::Model>> {
    Ok(deployment_token::Entity::find()
        .filter(deployment_token::Column::Workspace.eq(workspace))
        .filter(deployment_token::Column::DeploymentId.eq(deployment_id))
        .filter(deployment_token::Column::TokenId.eq(token_id))
        .one(db)
        .await?)
}

/// The deployment's tokens with `description` that are not revoked, less
/// `except` (a token id).
pub async fn unrevoked_with_description<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    deployment_id: &str,
    description: &str,
    except: Option<&str>,
) -> StoreResult<Vec<deployment_token::Model>> {
    let mut query = deployment_token::Entity::find()
        .filter(deployment_token::Column::Workspace.eq(workspace))
        .filter(deployment_token::Column::DeploymentId.eq(deployment_id))
        .filter(deployment_token::Column::Description.eq(description))
        .filter(deployment_token::Column::RevokeTime.is_null());
    if let Some(except) = except {
        query = query.filter(deployment_token::Column::TokenId.ne(except));
    }
    Ok(query.all(db).await?)
}

/// Marks `row` revoked at `now` through `txn`; returns the updated row.
pub async fn revoke<C: ConnectionTrait>(
    txn: &C,
    row: deployment_token::Model,
    now: i64,
) -> StoreResult<deployment_token::Model> {
    let mut active = row.into_active_model();
    active.revoke_time = Set(Some(now));
    Ok(active.update(txn).await?)
}

/// Up to `limit` tokens of the deployment with an id after `after`, by id.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    deployment_id: &str,
    after: Option<&str>,
    limit: u64,
) -> StoreResult<Vec<deployment_token::Model>> {
    let mut query = deployment_token::Entity::find()
        .filter(deployment_token::Column::Workspace.eq(workspace))
        .filter(deployment_token::Column::DeploymentId.eq(deployment_id))
        .order_by_asc(deployment_token::Column::TokenId)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(deployment_token::Column::TokenId.gt(after));
    }
    Ok(query.all(db).await?)
}
