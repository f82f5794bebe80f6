//! Embedded secret store: one AES-256-GCM ciphertext per (owner, version, field).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secret")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace: String,
    /// `connections/{pk}` or `links/{pk}`.
    pub owner: String,
    pub version: i64,
    /// `password` or `extra.<key>`.
    pub field: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
