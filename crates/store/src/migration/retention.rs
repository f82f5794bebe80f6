//! Retention: the feed's pruned horizon, and indexes on `create_time` for
//! pruning the change feed, the request log and the audit table by age.

use sea_orm_migration::prelude::*;

use super::{big, index};

/// The single row saying up to which revision the change feed was pruned:
/// a follower whose cursor is older may have missed changes and reloads
/// everything instead.
#[derive(Debug)]
pub(super) struct Retention;

impl MigrationName for Retention {
    fn name(&self) -> &str {
        "m20261203_000010_retention"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Retention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("feed_horizon"))
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big("pruned_through"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Alias::new("feed_horizon"))
                    .columns([Alias::new("id"), Alias::new("pruned_through")])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await?;
        for (table, name) in [
            ("change", "ix_change_create_time"),
            ("request_log", "ix_request_log_create_time"),
            ("audit_event", "ix_audit_create_time"),
        ] {
            manager
                .create_index(index(table, name, &["create_time"]))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name) in [
            ("change", "ix_change_create_time"),
            ("request_log", "ix_request_log_create_time"),
            ("audit_event", "ix_audit_create_time"),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Alias::new("feed_horizon")).to_owned())
            .await
    }
}
