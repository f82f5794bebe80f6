//! A snapshot of a connection after one change, for history and rollback.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connection_version")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_pk: i64,
    pub version: i64,
    /// JSON of the non-secret state (see `ConnectionSnapshot`).
    pub snapshot: String,
    pub secret_version: Option<i64>,
    pub actor: String,
    pub action: String,
    pub changed_fields: String,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
