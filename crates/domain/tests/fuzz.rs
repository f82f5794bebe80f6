//! Fuzz-style properties over arbitrary input (any Unicode, any numbers, any
//! JSON): resource names and conn_ids, the connection and override
//! validators, and the Airflow URI and JSON encodings. None may panic; what
//! they accept satisfies the documented rules; violations never repeat a
//! secret; the encodings decode back to the connection. Cases per property:
//! `PROPTEST_CASES` (proptest's default, 256, in CI).

use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_domain::connection::{EffectiveConnection, merge};
use switchboard_domain::names::{
    ConnectionName, DeploymentName, LinkName, PolicyName, TokenName, WorkspaceName,
};
use switchboard_domain::validate::{validate_connection, validate_overrides};
use switchboard_domain::{ConnectionSpec, Overrides, airflow, catalog, conn_id};

/// Any string, biased towards the characters names and URIs treat specially.
fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..max).prop_map(|chars| chars.into_iter().collect()),
        prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "Z",
                "0",
                "_",
                ".",
                "-",
                "~",
                "/",
                "%",
                "%2F",
                "@",
                ":",
                "?",
                "#",
                "&",
                "=",
                "+",
                " ",
                "\0",
                "\n",
                "é",
                "\u{202e}",
                "😀",
                "..",
                "workspaces",
                "connections",
                "deployments",
                "links",
                "tokens",
                "policy",
            ]),
            0..max,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Finite, and read back exactly by serde_json's own parser (its default
        // float parsing may be one ulp off, unlike Python's that Airflow uses).
        any::<f64>()
            .prop_filter("finite and exactly re-read", |number| {
                number.is_finite()
                    && serde_json::from_str::<f64>(&Value::from(*number).to_string()).ok()
                        == Some(*number)
            })
            .prop_map(Value::from),
        tricky_text(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(tricky_text(6), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn extra_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![
            prop::sample::select(vec![
                "account",
                "warehouse",
                "private_key_content",
                "token",
                "api_key",
                "region",
                "__extra__",
            ])
            .prop_map(str::to_owned),
            tricky_text(8),
        ],
        json_value(),
        0..5,
    )
    .prop_map(|map| map.into_iter().collect())
}

fn catalog_key() -> impl Strategy<Value = String> {
    let keys: Vec<String> = catalog::all()
        .iter()
        .map(|connection_type| connection_type.key.to_owned())
        .chain(["unknown".to_owned(), String::new()])
        .collect();
    prop::sample::select(keys)
}

fn any_spec() -> impl Strategy<Value = ConnectionSpec> {
    (
        catalog_key(),
        tricky_text(12),
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(any::<i32>()),
        extra_map(),
    )
        .prop_map(
            |(type_key, conn_type, host, schema, login, password, port, extra)| ConnectionSpec {
                type_key,
                conn_type,
                description: None,
                host,
                schema,
                login,
                password,
                port,
                extra,
            },
        )
}

fn any_overrides() -> impl Strategy<Value = Overrides> {
    (
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(tricky_text(16)),
        prop::option::of(any::<i32>()),
        extra_map(),
    )
        .prop_map(|(host, schema, login, password, port, extra)| Overrides {
            host,
            schema,
            login,
            password,
            port,
            extra,
        })
}

/// Percent-decodes `text`, `+` as a space when `plus`.
fn unquote(text: &str, plus: bool) -> String {
    let text = if plus {
        text.replace('+', " ")
    } else {
        text.to_owned()
    };
    percent_decode_str(&text)
        .decode_utf8()
        .expect("percent-encoded UTF-8")
        .into_owned()
}

fn non_empty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..16).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn names_parse_only_what_the_rules_allow(text in tricky_text(40)) {
        if conn_id::validate(&text).is_ok() {
            prop_assert!(!text.is_empty() && text.len() <= conn_id::MAX_LEN);
            prop_assert!(text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte)));
            prop_assert_eq!(conn_id::fold(&conn_id::fold(&text)), conn_id::fold(&text));
        }
        for name in [
            text.clone(),
            format!("workspaces/{text}"),
            format!("workspaces/w/connections/{text}"),
            format!("workspaces/w/deployments/{text}"),
            format!("workspaces/w/connections/c/links/{text}"),
            format!("workspaces/w/deployments/d/tokens/{text}"),
            format!("workspaces/{text}/policy"),
        ] {
            // Whatever parses prints back as the same name: no traversal,
            // no second spelling of one resource.
            if let Ok(parsed) = WorkspaceName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
            if let Ok(parsed) = ConnectionName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
            if let Ok(parsed) = DeploymentName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
            if let Ok(parsed) = LinkName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
            if let Ok(parsed) = TokenName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
            if let Ok(parsed) = PolicyName::parse("name", &name) {
                prop_assert_eq!(parsed.to_string(), name.clone());
            }
        }
    }

    #[test]
    fn validators_never_panic_nor_repeat_a_secret(spec in any_spec(), layer in any_overrides()) {
        let secret = "sb-fuzz-secret-7d1f";
        let with_secret = ConnectionSpec {
            password: spec.password.as_ref().map(|password| format!("{password}{secret}")),
            ..spec.clone()
        };
        match validate_connection(&with_secret) {
            Ok(()) => {
                // What validates encodes for Airflow.
                let connection = EffectiveConnection::from_spec("c", with_secret.clone());
                let json: Value = serde_json::from_str(&airflow::to_json(&connection))
                    .expect("valid JSON");
                prop_assert!(json.is_object());
                prop_assert!(catalog::get(&with_secret.type_key).is_some());
                if let Some(port) = with_secret.port {
                    prop_assert!((1..=65535).contains(&port));
                }
            }
            Err(violations) => {
                prop_assert!(!violations.is_empty());
                for violation in &violations {
                    prop_assert!(!violation.field.is_empty());
                    prop_assert!(!violation.description.contains(secret));
                }
            }
        }
        let layer = Overrides {
            password: layer.password.as_ref().map(|password| format!("{password}{secret}")),
            ..layer
        };
        if let Err(violations) = validate_overrides(&spec.type_key, &layer) {
            for violation in &violations {
                prop_assert!(!violation.field.is_empty());
                prop_assert!(!violation.description.contains(secret));
            }
        }
        // The merge of anything with anything never panics and is stable.
        let merged = merge(&spec, &[&layer]);
        prop_assert_eq!(merge(&merged, &[&layer]), merged);
    }

    #[test]
    fn airflow_uri_parts_decode_back_to_the_connection(
        login in non_empty_text(),
        password in non_empty_text(),
        host in non_empty_text(),
        schema in non_empty_text(),
        port in 1..=65535i32,
        extra in extra_map(),
        conn_type in "[a-z][a-z0-9_]{0,10}",
    ) {
        let connection = EffectiveConnection {
            conn_id: "c".to_owned(),
            conn_type: conn_type.clone(),
            description: None,
            host: Some(host.clone()),
            schema: Some(schema.clone()),
            login: Some(login.clone()),
            password: Some(password.clone()),
            port: Some(port),
            extra: extra.clone(),
        };
        let uri = airflow::to_uri(&connection);
        prop_assert!(uri.is_ascii() && !uri.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()));
        let scheme = format!("{}://", conn_type.replace('_', "-"));
        let rest = uri.strip_prefix(&scheme).expect("the scheme comes first");
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, host_path) = location.split_once('@').expect("userinfo");
        let (login_part, password_part) = userinfo.split_once(':').expect("login:password");
        prop_assert_eq!(unquote(login_part, false), login);
        prop_assert_eq!(unquote(password_part, false), password);
        let (host_port, schema_part) = host_path.split_once('/').expect("host/schema");
        let (host_part, port_part) = host_port.split_once(':').expect("host:port");
        prop_assert_eq!(unquote(host_part, false), host);
        prop_assert_eq!(port_part.parse::<i32>().ok(), Some(port));
        prop_assert_eq!(unquote(schema_part, false), schema);
        let normalized = airflow::normalize_numbers(&extra);
        if normalized.is_empty() {
            prop_assert!(query.is_empty());
        } else if let Some(json) = query.strip_prefix("__extra__=") {
            let decoded: Value = serde_json::from_str(&unquote(json, true)).expect("JSON extra");
            prop_assert_eq!(decoded, Value::Object(normalized));
        } else {
            let mut decoded = Map::new();
            for pair in query.split('&') {
                let (key, value) = pair.split_once('=').expect("key=value");
                decoded.insert(unquote(key, true), Value::from(unquote(value, true)));
            }
            prop_assert_eq!(decoded, normalized);
        }
    }

    #[test]
    fn airflow_json_keeps_arbitrary_values_exactly(
        login in prop::option::of(tricky_text(16)),
        password in prop::option::of(tricky_text(16)),
        extra in extra_map(),
    ) {
        let connection = EffectiveConnection {
            conn_id: "c".to_owned(),
            conn_type: "generic_thing".to_owned(),
            description: None,
            host: None,
            schema: None,
            login: login.clone(),
            password: password.clone(),
            port: None,
            extra: extra.clone(),
        };
        let json: Value = serde_json::from_str(&airflow::to_json(&connection)).expect("valid JSON");
        prop_assert_eq!(json.get("login").and_then(Value::as_str), login.as_deref());
        prop_assert_eq!(json.get("password").and_then(Value::as_str), password.as_deref());
        let decoded = json.get("extra").and_then(Value::as_object).cloned().unwrap_or_default();
        prop_assert_eq!(decoded, airflow::normalize_numbers(&extra));
    }
}
