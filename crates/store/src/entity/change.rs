//! The change feed: what each write transaction changed, by revision.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "change")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The write transaction's revision; several rows may share one.
    pub revision: i64,
    pub workspace: String,
    /// What changed: `connection`, `link`, `deployment`, `token`, `policy`.
    pub kind: String,
    /// The resource name that changed.
    pub resource: String,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
