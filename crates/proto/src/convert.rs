//! The one place well-known protobuf types meet Rust values: `Struct` ⇄ a
//! JSON object and `Timestamp` ⇄ Unix microseconds. Control, the resolver
//! and the CLI all convert through here, so a number or a null means the same
//! on every side.

use prost_types::value::Kind;
use serde_json::{Map, Value};

/// Largest integer a JSON double holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A protobuf `Struct` as a JSON object; whole numbers within a double's
/// exact range become integers, so `5439` stays `5439`, not `5439.0`.
pub fn struct_to_json(value: Option<&prost_types::Struct>) -> Map<String, Value> {
    value
        .map(|object| {
            object
                .fields
                .iter()
                .map(|(key, value)| (key.clone(), value_to_json(value)))
                .collect()
        })
        .unwrap_or_default()
}

fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(Kind::StringValue(text)) => Value::String(text.clone()),
        Some(Kind::NumberValue(number)) => {
            if number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER {
                Value::from(*number as i64)
            } else {
                serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(Some(object))),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
    }
}

/// A JSON object as a protobuf `Struct`.
pub fn json_to_struct(object: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(key, value)| (key.clone(), json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Unix microseconds as a protobuf `Timestamp`.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_objects_round_trip_through_struct() {
        let object = json!({
            "port": 5439,
            "ratio": 0.5,
            "on": true,
            "gone": null,
            "nested": {"list": [1, "two", {"three": 3}]},
        });
        let Value::Object(object) = object else {
            unreachable!()
        };
        assert_eq!(struct_to_json(Some(&json_to_struct(&object))), object);
        assert!(struct_to_json(None).is_empty());
    }

    #[test]
    fn timestamps_split_micros_before_the_epoch_too() {
        assert_eq!(timestamp(1_500_000).seconds, 1);
        assert_eq!(timestamp(1_500_000).nanos, 500_000_000);
        let before = timestamp(-1);
        assert_eq!((before.seconds, before.nanos), (-1, 999_999_000));
    }
}
