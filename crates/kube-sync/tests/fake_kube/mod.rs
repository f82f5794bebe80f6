//! An in-process fake Kubernetes API server that speaks the Secret
//! endpoints (get, server-side apply, delete, list by label) and records
//! every request. Shared by control's sync tests and the end-to-end tests
//! (which include this file by path), so there is one fake.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// One request the fake API server received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl Request {
    pub(crate) fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// `METHOD path` for compact assertions.
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    secrets: BTreeMap<(String, String), Value>,
    requests: Vec<Request>,
    /// Injected failures: (method or any, status code), in order.
    failures: VecDeque<(Option<Method>, u16)>,
    revision: u64,
}

/// The fake Kubernetes API server.
#[derive(Debug, Clone)]
pub(crate) struct FakeApi {
    state: Arc<Mutex<FakeState>>,
    pub(crate) url: String,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(value: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn labels_match(secret: &Value, selector: &str) -> bool {
    selector.split(',').all(|term| {
        let (key, value) = term.split_once('=').unwrap();
        secret["metadata"]["labels"][key].as_str() == Some(value)
    })
}

/// Server-side apply as the API server does it for a single field manager:
/// fields in the body are set; `data` keys this manager applied before but
/// left out now are removed; keys others set stay.
fn apply(existing: Option<&Value>, body: &Value, revision: u64, uid: String) -> Value {
    let mut secret = existing.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"], "uid": uid},
        })
    });
    let previously_owned: Vec<String> = secret["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["manager"] == "switchboard")
        .flat_map(|entry| {
            entry["fieldsV1"]["f:data"]
                .as_object()
                .into_iter()
                .flat_map(|data| {
                    data.keys()
                        .filter_map(|key| key.strip_prefix("f:"))
                        .map(str::to_owned)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut data = secret["data"].as_object().cloned().unwrap_or_default();
    let applied = body["data"].as_object().cloned().unwrap_or_default();
    for key in previously_owned {
        if !applied.contains_key(&key) {
            data.remove(&key);
        }
    }
    data.extend(applied.clone());
    secret["data"] = Value::Object(data);
    secret["type"] = body["type"].clone();
    for field in ["labels", "annotations"] {
        let mut merged = secret["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        merged.extend(
            body["metadata"][field]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        secret["metadata"][field] = Value::Object(merged);
    }
    let owned: serde_json::Map<String, Value> = applied
        .keys()
        .map(|key| (format!("f:{key}"), json!({})))
        .collect();
    secret["metadata"]["managedFields"] = json!([{
        "manager": "switchboard", "operation": "Apply", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": owned},
    }]);
    secret["metadata"]["resourceVersion"] = json!(revision.to_string());
    secret
}

async fn handle(
    state: Arc<Mutex<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = state.lock().unwrap();
    state.requests.push(Request {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body_json.clone(),
    });
    if let Some(position) = state
        .failures
        .iter()
        .position(|(only, _)| only.as_ref().is_none_or(|only| *only == method))
    {
        let (_, code) = state.failures.remove(position).unwrap();
        let reason = if code == 409 {
            "Conflict"
        } else {
            "InternalError"
        };
        return status(code, reason, "injected failure");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (namespace, name) = match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "secrets"] => ((*namespace).to_owned(), None),
        ["api", "v1", "namespaces", namespace, "secrets", name] => {
            ((*namespace).to_owned(), Some((*name).to_owned()))
        }
        _ => return status(404, "NotFound", "unknown path"),
    };
    let Some(name) = name else {
        if method != Method::GET {
            return status(405, "MethodNotAllowed", "only list");
        }
        let selector = query_param(&query, "labelSelector").unwrap_or_default();
        let items: Vec<Value> = state
            .secrets
            .iter()
            .filter(|((ns, _), secret)| *ns == namespace && labels_match(secret, &selector))
            .map(|(_, secret)| secret.clone())
            .collect();
        return ok(&json!({
            "apiVersion": "v1", "kind": "SecretList",
            "metadata": {"resourceVersion": state.revision.to_string()}, "items": items,
        }));
    };
    let key = (namespace, name.clone());
    match method {
        Method::GET => match state.secrets.get(&key) {
            Some(secret) => ok(secret),
            None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
        },
        Method::PATCH => {
            assert_eq!(
                query_param(&query, "fieldManager").as_deref(),
                Some("switchboard")
            );
            let existing = state.secrets.get(&key).cloned();
            if let Some(wanted) = body_json["metadata"]["resourceVersion"].as_str() {
                let current = existing
                    .as_ref()
                    .and_then(|secret| secret["metadata"]["resourceVersion"].as_str());
                if current != Some(wanted) {
                    return status(409, "Conflict", "the object has been modified");
                }
            }
            state.revision += 1;
            let revision = state.revision;
            let secret = apply(
                existing.as_ref(),
                &body_json,
                revision,
                format!("uid-{revision}"),
            );
            state.secrets.insert(key, secret.clone());
            ok(&secret)
        }
        Method::DELETE => {
            let Some(existing) = state.secrets.get(&key).cloned() else {
                return status(404, "NotFound", &format!("secrets \"{name}\" not found"));
            };
            if let Some(uid) = body_json["preconditions"]["uid"].as_str()
                && existing["metadata"]["uid"].as_str() != Some(uid)
            {
                return status(409, "Conflict", "precondition failed: uid");
            }
            state.secrets.remove(&key);
            ok(&existing)
        }
        _ => status(405, "MethodNotAllowed", "unsupported"),
    }
}

impl FakeApi {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                handle(state.clone(), method, uri, headers, body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, url }
    }

    pub(crate) fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }

    pub(crate) fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub(crate) fn put(&self, namespace: &str, name: &str, secret: Value) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .insert((namespace.to_owned(), name.to_owned()), secret);
    }

    pub(crate) fn remove(&self, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    pub(crate) fn fail(&self, method: Option<Method>, code: u16) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push_back((method, code));
    }

    pub(crate) fn clear_failures(&self) {
        self.state.lock().unwrap().failures.clear();
    }
}

/// A data value of a Secret the fake holds, decoded.
pub(crate) fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    Some(String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap())
}

pub(crate) fn data_keys(secret: &Value) -> Vec<String> {
    secret["data"]
        .as_object()
        .map(|data| data.keys().cloned().collect())
        .unwrap_or_default()
}

pub(crate) fn secret_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/secrets/{name}")
}
