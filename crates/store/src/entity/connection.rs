//! A connection's non-secret fields and a pointer to its secret version.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connection")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace: String,
    pub conn_id: String,
    /// conn_id upper-cased; unique per workspace, as Airflow's env vars are.
    pub conn_id_folded: String,
    pub type_key: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub port: Option<i32>,
    /// JSON object of the non-secret extra keys.
    pub extra: String,
    pub link_to_all: bool,
    /// JSON array of excluded deployment ids.
    pub excluded_deployments: String,
    /// Secret-store version holding this connection's secrets, if any.
    pub secret_version: Option<i64>,
    /// JSON array of the secret field paths that hold a value.
    pub secret_fields: String,
    /// Bumped on every change; the etag.
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::link::Entity")]
    Link,
}

impl Related<super::link::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Link.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
