//! Conversions between rows and domain values, and the secret-owner names
//! rows point to.

use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use switchboard_domain::{ConnectionSpec, Extra, Overrides};

use crate::entity::{connection, link};
use crate::error::{StoreError, StoreResult};
use crate::secrets::SecretStore;

/// Secret-store owner of a connection's secrets.
pub fn connection_owner(pk: i64) -> String {
    format!("connections/{pk}")
}

/// Secret-store owner of a link's secret overrides.
pub fn link_owner(pk: i64) -> String {
    format!("links/{pk}")
}

/// Serializes a value for a JSON text column.
pub fn to_json_text<T: Serialize>(value: &T) -> String {
    // Serializing plain maps, vectors and derived structs cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Parses a JSON text column.
pub fn from_json_text<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        table,
        reason: err.to_string(),
    })
}

/// The non-secret state of a connection, as kept in each version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSnapshot {
    pub spec: ConnectionSpec,
    pub link_to_all: bool,
    pub excluded_deployments: Vec<String>,
    pub secret_fields: Vec<String>,
}

/// The connection's non-secret spec.
pub fn spec_from_row(row: &connection::Model) -> StoreResult<ConnectionSpec> {
    Ok(ConnectionSpec {
        type_key: row.type_key.clone(),
        conn_type: row.conn_type.clone(),
        description: row.description.clone(),
        host: row.host.clone(),
        schema: row.schema.clone(),
        login: row.login.clone(),
        password: None,
        port: row.port,
        extra: from_json_text::<Extra>("connection", &row.extra)?,
    })
}

/// The snapshot of a connection row.
pub fn snapshot_from_row(row: &connection::Model) -> StoreResult<ConnectionSnapshot> {
    Ok(ConnectionSnapshot {
        spec: spec_from_row(row)?,
        link_to_all: row.link_to_all,
        excluded_deployments: from_json_text("connection", &row.excluded_deployments)?,
        secret_fields: from_json_text("connection", &row.secret_fields)?,
    })
}

/// The link's non-secret overrides.
pub fn overrides_from_row(row: &link::Model) -> StoreResult<Overrides> {
    from_json_text("link", &row.overrides)
}

/// The connection's spec with its secrets.
pub async fn full_spec<C: ConnectionTrait>(
    secrets: &SecretStore,
    db: &C,
    row: &connection::Model,
) -> StoreResult<ConnectionSpec> {
    let values = secrets
        .get(
            db,
            &row.workspace,
            &connection_owner(row.id),
            row.secret_version,
        )
        .await?;
    Ok(spec_from_row(row)?.with_secrets(&values))
}

/// The link's overrides with their secrets.
pub async fn full_overrides<C: ConnectionTrait>(
    secrets: &SecretStore,
    db: &C,
    row: &link::Model,
) -> StoreResult<Overrides> {
    let values = secrets
        .get(db, &row.workspace, &link_owner(row.id), row.secret_version)
        .await?;
    Ok(overrides_from_row(row)?.with_secrets(&values))
}
