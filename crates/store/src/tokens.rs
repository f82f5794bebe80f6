//! Deployment tokens as rows: only the hash is stored; the token itself is
//! returned once, to whoever issued it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::deployment_token;
use crate::error::StoreResult;
use sha2::{Digest, Sha256};

/// Prefix of deployment tokens, so they are recognizable in secret scanners.
pub const DEPLOYMENT_TOKEN_PREFIX: &str = "sbdt_";

/// A freshly issued deployment token.
pub struct NewDeploymentToken {
    /// Public id, part of the token's resource name.
    pub token_id: String,
    /// The whole secret token, shown once.
    pub token: String,
    /// What is stored.
    pub hash: String,
}

impl fmt::Debug for NewDeploymentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDeploymentToken")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// Issues a deployment token: `sbdt_<id>_<256 random bits, base64url>`.
pub fn new_deployment_token() -> NewDeploymentToken {
    let mut id_bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let token_id: String = id_bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "{DEPLOYMENT_TOKEN_PREFIX}{token_id}_{}",
        URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = hash_token(&token);
    NewDeploymentToken {
        token_id,
        token,
        hash,
    }
}

/// The public id inside a deployment token, if it is well-formed.
pub fn parse_token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(DEPLOYMENT_TOKEN_PREFIX)?;
    let (token_id, secret) = rest.split_once('_')?;
    let id_ok = token_id.len() == 16 && token_id.bytes().all(|byte| byte.is_ascii_hexdigit());
    (id_ok && !secret.is_empty()).then_some(token_id)
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    // On every resolver call: one allocation, not one per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

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
    let issued = new_deployment_token();
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

/// The row of the token whose public id is `token_id`, in any workspace.
pub async fn by_token_id<C: ConnectionTrait>(
    db: &C,
    token_id: &str,
) -> StoreResult<Option<deployment_token::Model>> {
    Ok(deployment_token::Entity::find()
        .filter(deployment_token::Column::TokenId.eq(token_id))
        .one(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn deployment_tokens_carry_256_random_bits_and_parse() {
        let issued = new_deployment_token();
        // The secret may itself contain '_' (base64url), so split after the id.
        let secret = issued
            .token
            .strip_prefix(&format!("{DEPLOYMENT_TOKEN_PREFIX}{}_", issued.token_id))
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
        assert_eq!(
            parse_token_id(&issued.token),
            Some(issued.token_id.as_str())
        );
        assert_eq!(issued.hash, hash_token(&issued.token));
        assert_ne!(new_deployment_token().token, issued.token);
    }
}
