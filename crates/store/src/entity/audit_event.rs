//! One audited action. Holds field names, never values.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace: String,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub request_id: String,
    /// JSON array of field names.
    pub changed_fields: String,
    pub create_time: i64,
    /// Whether the action gave read access to secret values.
    pub grants_secret_access: bool,
    /// What it granted, in plain words; empty otherwise.
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
