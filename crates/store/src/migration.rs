//! Versioned schema migrations, run forward at start-up. Written with
//! sea-query's schema builder so one definition serves SQLite and Postgres.

use sea_orm_migration::prelude::*;

mod retention;

/// All migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(SharedKeys),
            Box::new(AuditSecretGrants),
            Box::new(retention::Retention),
        ]
    }
}

#[derive(Debug)]
struct Initial;

/// Keys every replica must share (page-token signing), kept in the database
/// so that replicas agree without shipping a key file to each.
#[derive(Debug)]
struct SharedKeys;

impl MigrationName for SharedKeys {
    fn name(&self) -> &str {
        "m20261128_000002_shared_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SharedKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("shared_key"))
                    .col(
                        ColumnDef::new(Alias::new("name"))
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("value")).binary().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("shared_key")).to_owned())
            .await
    }
}

/// Audit events say when an action grants read access to secret values
/// (a deployment token does), so the grant shows in ListAuditEvents.
#[derive(Debug)]
struct AuditSecretGrants;

impl MigrationName for AuditSecretGrants {
    fn name(&self) -> &str {
        "m20261203_000003_audit_secret_grants"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AuditSecretGrants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("audit_event"))
                    .add_column(
                        ColumnDef::new(Alias::new("grants_secret_access"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("audit_event"))
                    .add_column(
                        ColumnDef::new(Alias::new("detail"))
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["detail", "grants_secret_access"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("audit_event"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m20261128_000001_initial"
    }
}

fn id() -> ColumnDef {
    ColumnDef::new(Alias::new("id"))
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .text()
        .not_null()
        .to_owned()
}

fn text_null(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).text().null().to_owned()
}

fn big(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .not_null()
        .to_owned()
}

fn big_null(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .null()
        .to_owned()
}

fn boolean(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .boolean()
        .not_null()
        .to_owned()
}

fn unique_index(table: &str, name: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table)).unique();
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

fn index(table: &str, name: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table(Alias::new("feed_head"))
                .col(
                    ColumnDef::new(Alias::new("id"))
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(big("revision"))
                .to_owned(),
            Table::create()
                .table(Alias::new("change"))
                .col(id())
                .col(big("revision"))
                .col(text("workspace"))
                .col(text("kind"))
                .col(text("resource"))
                .col(big("create_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("policy"))
                .col(
                    ColumnDef::new(Alias::new("workspace"))
                        .string_len(63)
                        .not_null()
                        .primary_key(),
                )
                .col(boolean("allow_secret_reveal"))
                .col(boolean("allow_local_export"))
                .col(big("version"))
                .col(big("update_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("deployment"))
                .col(id())
                .col(text("workspace"))
                .col(text("deployment_id"))
                .col(text("display_name"))
                .col(text("kind"))
                .col(text_null("parent_deployment"))
                .col(text("namespace"))
                .col(text("secret_delivery"))
                .col(big("version"))
                .col(big("create_time"))
                .col(big("update_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("connection"))
                .col(id())
                .col(text("workspace"))
                .col(text("conn_id"))
                .col(text("conn_id_folded"))
                .col(text("type_key"))
                .col(text("conn_type"))
                .col(text_null("description"))
                .col(text_null("host"))
                .col(text_null("schema"))
                .col(text_null("login"))
                .col(ColumnDef::new(Alias::new("port")).integer().null())
                .col(text("extra"))
                .col(boolean("link_to_all"))
                .col(text("excluded_deployments"))
                .col(big_null("secret_version"))
                .col(text("secret_fields"))
                .col(big("version"))
                .col(big("create_time"))
                .col(big("update_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("link"))
                .col(id())
                .col(text("workspace"))
                .col(big("connection_pk"))
                .col(text("deployment_id"))
                .col(text("overrides"))
                .col(big_null("secret_version"))
                .col(text("secret_fields"))
                .col(big("version"))
                .col(big("create_time"))
                .col(big("update_time"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_link_connection")
                        .from(Alias::new("link"), Alias::new("connection_pk"))
                        .to(Alias::new("connection"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
            Table::create()
                .table(Alias::new("connection_version"))
                .col(id())
                .col(big("connection_pk"))
                .col(big("version"))
                .col(text("snapshot"))
                .col(big_null("secret_version"))
                .col(text("actor"))
                .col(text("action"))
                .col(text("changed_fields"))
                .col(big("create_time"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_version_connection")
                        .from(
                            Alias::new("connection_version"),
                            Alias::new("connection_pk"),
                        )
                        .to(Alias::new("connection"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
            Table::create()
                .table(Alias::new("secret"))
                .col(id())
                .col(text("workspace"))
                .col(text("owner"))
                .col(big("version"))
                .col(text("field"))
                .col(ColumnDef::new(Alias::new("nonce")).binary().not_null())
                .col(ColumnDef::new(Alias::new("ciphertext")).binary().not_null())
                .col(big("create_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("deployment_token"))
                .col(id())
                .col(text("token_id"))
                .col(text("workspace"))
                .col(text("deployment_id"))
                .col(text("token_hash"))
                .col(text("description"))
                .col(big("create_time"))
                .col(big_null("revoke_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("audit_event"))
                .col(id())
                .col(text("workspace"))
                .col(text("actor"))
                .col(text("action"))
                .col(text("resource"))
                .col(text("request_id"))
                .col(text("changed_fields"))
                .col(big("create_time"))
                .to_owned(),
            Table::create()
                .table(Alias::new("request_log"))
                .col(id())
                .col(text("workspace"))
                .col(text("method"))
                .col(text("request_id"))
                .col(text("resource"))
                .col(big("create_time"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        let indexes = [
            unique_index(
                "deployment",
                "ux_deployment",
                &["workspace", "deployment_id"],
            ),
            unique_index(
                "connection",
                "ux_connection",
                &["workspace", "conn_id_folded"],
            ),
            unique_index("link", "ux_link", &["connection_pk", "deployment_id"]),
            index(
                "link",
                "ix_link_deployment",
                &["workspace", "deployment_id"],
            ),
            unique_index(
                "connection_version",
                "ux_connection_version",
                &["connection_pk", "version"],
            ),
            unique_index("secret", "ux_secret", &["owner", "version", "field"]),
            unique_index("deployment_token", "ux_token_id", &["token_id"]),
            unique_index("deployment_token", "ux_token_hash", &["token_hash"]),
            index("change", "ix_change_revision", &["revision"]),
            index("audit_event", "ix_audit_workspace", &["workspace", "id"]),
            unique_index(
                "request_log",
                "ux_request",
                &["workspace", "method", "request_id"],
            ),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        let seed = Query::insert()
            .into_table(Alias::new("feed_head"))
            .columns([Alias::new("id"), Alias::new("revision")])
            .values_panic([1.into(), 0.into()])
            .to_owned();
        manager.exec_stmt(seed).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the initial schema cannot be rolled back".to_owned(),
        ))
    }
}
