//! An Airflow deployment of a workspace.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace: String,
    pub deployment_id: String,
    pub display_name: String,
    /// `STANDARD`, `BRANCH` or `PREVIEW`.
    pub kind: String,
    /// For BRANCH/PREVIEW: the parent's deployment id.
    pub parent_deployment: Option<String>,
    pub namespace: String,
    /// `NONE`, `TOKEN` or `ENV`.
    pub secret_delivery: String,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
