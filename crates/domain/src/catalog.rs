//! The catalog of connection types, checked against each provider's hook source.

/// Where Airflow reads a parameter from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Host,
    Schema,
    Login,
    Password,
    Port,
    /// A key of the connection's `extra`.
    Extra(&'static str),
}

impl Field {
    /// Path as used in field masks and violations: `host`, …, `extra.<key>`.
    pub fn path(&self) -> String {
        todo!("domain helper")
    }
}

/// A parameter's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    String,
    Integer,
    Boolean,
    /// A JSON object or array (or a string holding one).
    Json,
}

/// One parameter of a connection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub field: Field,
    pub required: bool,
    pub secret: bool,
    /// Regular expression the whole value must match.
    pub pattern: Option<&'static str>,
    pub data_type: DataType,
    pub description: &'static str,
}

/// A catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionType {
    /// Catalog key, e.g. `snowflake_private_key`.
    pub key: &'static str,
    pub display_name: &'static str,
    /// Airflow's conn_type; empty for `generic`, where the caller names it.
    pub conn_type: &'static str,
    pub provider_package: &'static str,
    pub default_port: Option<u16>,
    pub parameters: &'static [Parameter],
}

/// Every catalog entry, in display order.
pub fn all() -> &'static [ConnectionType] {
    todo!("domain helper")
}

/// The entry with catalog key `key`.
pub fn get(key: &str) -> Option<&'static ConnectionType> {
    let _ = key;
    todo!("domain helper")
}

/// Whether the field at `path` (`password`, `extra.<key>`, …) of a connection
/// of type `type_key` is secret.
pub fn is_secret(type_key: &str, path: &str) -> bool {
    let _ = (type_key, path);
    todo!("domain helper")
}

/// The provider package that supplies a hook for Airflow `conn_type`, if known.
pub fn provider_for_conn_type(conn_type: &str) -> Option<&'static str> {
    let _ = conn_type;
    todo!("domain helper")
}
