//! A deployment token, stored only as a SHA-256 hash.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_token")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Public id, the last segment of the token's resource name.
    pub token_id: String,
    pub workspace: String,
    pub deployment_id: String,
    /// Hex SHA-256 of the whole token.
    pub token_hash: String,
    pub description: String,
    pub create_time: i64,
    pub revoke_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
