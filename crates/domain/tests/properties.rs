//! Property tests of the merge, secret splitting and Airflow encodings.

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_domain::airflow;
use switchboard_domain::connection::{EffectiveConnection, merge};
use switchboard_domain::{ConnectionSpec, Overrides};

fn text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-zA-Z0-9 @:/?#%._-]{1,12}")
}

fn extra_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9 ]{0,8}".prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ]
}

fn extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        "(warehouse|role|token|api_key|region|k[0-9])",
        extra_value(),
        0..5,
    )
    .prop_map(|map| map.into_iter().collect())
}

/// Extra values nested a few levels deep, with sensitive and plain keys at each level.
fn nested_value() -> impl Strategy<Value = Value> {
    extra_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                "(region|Authorization|aws_secret_access_key|x/y~z|a\\.b|k[0-9])",
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn nested_extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        "(session_kwargs|headers|hosts|token|region|k[0-9])",
        nested_value(),
        0..4,
    )
    .prop_map(|map| map.into_iter().collect())
}

/// Whether any key at any depth is sensitive.
fn holds_sensitive_key(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, value)| {
            switchboard_domain::sensitive::is_sensitive_name(key) || holds_sensitive_key(value)
        }),
        Value::Array(items) => items.iter().any(holds_sensitive_key),
        _ => false,
    }
}

fn spec() -> impl Strategy<Value = ConnectionSpec> {
    (
        text(),
        text(),
        text(),
        text(),
        prop::option::of(1..65535i32),
        extra(),
    )
        .prop_map(
            |(host, schema, login, password, port, extra)| ConnectionSpec {
                type_key: "generic".into(),
                conn_type: "http".into(),
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

fn overrides() -> impl Strategy<Value = Overrides> {
    let nullable = prop::collection::btree_map(
        "(warehouse|role|token|k[0-9])",
        prop_oneof![Just(Value::Null), extra_value()],
        0..4,
    );
    (
        text(),
        text(),
        text(),
        text(),
        prop::option::of(1..65535i32),
        nullable,
    )
        .prop_map(|(host, schema, login, password, port, extra)| Overrides {
            host,
            schema,
            login,
            password,
            port,
            extra: extra.into_iter().collect(),
        })
}

proptest! {
    #[test]
    fn the_last_layer_wins_field_by_field(base in spec(), first in overrides(), second in overrides()) {
        let merged = merge(&base, &[&first, &second]);
        let expect = |base: &Option<String>, a: &Option<String>, b: &Option<String>| {
            b.clone().or_else(|| a.clone()).or_else(|| base.clone())
        };
        prop_assert_eq!(merged.host, expect(&base.host, &first.host, &second.host));
        prop_assert_eq!(merged.schema, expect(&base.schema, &first.schema, &second.schema));
        prop_assert_eq!(merged.password, expect(&base.password, &first.password, &second.password));
        prop_assert_eq!(merged.port, second.port.or(first.port).or(base.port));
        for (key, value) in &second.extra {
            if value.is_null() {
                prop_assert!(!merged.extra.contains_key(key));
            } else {
                prop_assert_eq!(merged.extra.get(key), Some(value));
            }
        }
        for (key, value) in &base.extra {
            if !first.extra.contains_key(key) && !second.extra.contains_key(key) {
                prop_assert_eq!(merged.extra.get(key), Some(value));
            }
        }
    }

    #[test]
    fn merging_is_idempotent(base in spec(), layer in overrides()) {
        let once = merge(&base, &[&layer]);
        prop_assert_eq!(merge(&once, &[&layer]), once.clone());
        prop_assert_eq!(merge(&base, &[&layer, &layer]), once);
        prop_assert_eq!(merge(&base, &[]), base.normalized());
    }

    #[test]
    fn secrets_split_off_and_back(base in spec()) {
        let (public, secrets) = base.split_secrets();
        prop_assert!(public.password.is_none());
        prop_assert!(!public.extra.contains_key("token") && !public.extra.contains_key("api_key"));
        prop_assert_eq!(secrets.len(), base.secret_fields_set().len());
        prop_assert_eq!(public.with_secrets(&secrets), base);
    }

    #[test]
    fn nested_secrets_split_off_and_back(extra in nested_extra(), password in text()) {
        let base = ConnectionSpec {
            type_key: "generic".into(),
            conn_type: "aws".into(),
            password,
            extra,
            ..ConnectionSpec::default()
        };
        let (public, secrets) = base.split_secrets();
        prop_assert!(!holds_sensitive_key(&Value::Object(public.extra.clone())));
        prop_assert!(public.secret_fields_set().is_empty());
        prop_assert_eq!(secrets.len(), base.secret_fields_set().len());
        prop_assert_eq!(public.clone().with_secrets(&secrets), base.clone());
        // Splitting what was restored gives the same parts again.
        let (again, secrets_again) = public.with_secrets(&secrets).split_secrets();
        prop_assert_eq!(again, base.split_secrets().0);
        prop_assert_eq!(secrets_again, secrets);
    }

    #[test]
    fn nested_override_secrets_split_off_and_back(extra in nested_extra()) {
        let layer = Overrides { extra, ..Overrides::default() };
        let (public, secrets) = layer.split_secrets("generic");
        prop_assert!(!holds_sensitive_key(&Value::Object(public.extra.clone())));
        prop_assert_eq!(secrets.len(), layer.secret_fields_set("generic").len());
        prop_assert_eq!(public.with_secrets(&secrets), layer);
    }

    #[test]
    fn airflow_json_round_trips(base in spec()) {
        let connection = EffectiveConnection::from_spec("c", base.clone());
        let parsed: Value = serde_json::from_str(&airflow::to_json(&connection)).unwrap();
        prop_assert_eq!(parsed["conn_type"].as_str(), Some("http"));
        prop_assert_eq!(parsed.get("host").and_then(Value::as_str), base.host.as_deref());
        prop_assert_eq!(parsed.get("password").and_then(Value::as_str), base.password.as_deref());
        prop_assert_eq!(parsed.get("port").and_then(Value::as_i64), base.port.map(i64::from));
        let extra = parsed.get("extra").and_then(Value::as_object).cloned().unwrap_or_default();
        prop_assert_eq!(extra, base.extra);
    }

    #[test]
    fn a_null_extra_removes_the_key_whatever_came_before(
        base in spec(),
        first in overrides(),
        key in "(warehouse|role|token|k[0-9])",
    ) {
        let remover = Overrides {
            extra: [(key.clone(), Value::Null)].into_iter().collect(),
            ..Overrides::default()
        };
        prop_assert!(!merge(&base, &[&first, &remover]).extra.contains_key(&key));
        // A later layer that sets the key again brings it back.
        let setter = Overrides {
            extra: [(key.clone(), Value::from("again"))].into_iter().collect(),
            ..Overrides::default()
        };
        let merged = merge(&base, &[&remover, &setter]);
        prop_assert_eq!(merged.extra.get(&key), Some(&Value::from("again")));
    }

    #[test]
    fn override_secrets_split_off_and_back(layer in overrides()) {
        let (public, secrets) = layer.split_secrets("snowflake_password");
        prop_assert!(public.password.is_none());
        prop_assert_eq!(secrets.len(), layer.secret_fields_set("snowflake_password").len());
        prop_assert_eq!(public.with_secrets(&secrets), layer);
    }

    #[test]
    fn airflow_json_parses_back_to_the_connection(base in spec(), description in text()) {
        let connection = EffectiveConnection::from_spec(
            "c",
            ConnectionSpec { description, ..base },
        );
        let parsed: Value = serde_json::from_str(&airflow::to_json(&connection)).unwrap();
        let field = |key: &str| parsed.get(key).and_then(Value::as_str).map(str::to_owned);
        let back = EffectiveConnection {
            conn_id: "c".into(),
            conn_type: field("conn_type").unwrap_or_default(),
            description: field("description"),
            host: field("host"),
            schema: field("schema"),
            login: field("login"),
            password: field("password"),
            port: parsed.get("port").and_then(Value::as_i64).map(|port| port as i32),
            extra: parsed.get("extra").and_then(Value::as_object).cloned().unwrap_or_default(),
        };
        prop_assert_eq!(back, connection);
    }
}
