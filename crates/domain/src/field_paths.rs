//! The field paths of connections and link overrides, as update masks
//! (AIP-134) and the CLI's `--set FIELD=VALUE` name them.

/// Connection fields a path may name, besides `extra` and `extra.<key>`.
pub const CONNECTION_FIELDS: &[&str] = &[
    "type",
    "conn_type",
    "description",
    "host",
    "schema",
    "login",
    "password",
    "port",
    "link_to_all_deployments",
    "excluded_deployments",
];

/// Fields a link may override, besides `extra.<key>`.
pub const OVERRIDE_FIELDS: &[&str] = &["host", "schema", "login", "password", "port"];

/// `lowerCamelCase` → `snake_case`, as protobuf's JSON form converts field
/// names (clients sending other forms may not). For field names, never for
/// extra keys, which are the provider's own spelling.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_names_become_snake_case() {
        assert_eq!(snake_case("connType"), "conn_type");
        assert_eq!(
            snake_case("linkToAllDeployments"),
            "link_to_all_deployments"
        );
        assert_eq!(snake_case("host"), "host");
    }
}
