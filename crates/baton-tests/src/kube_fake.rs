//! A fake Kubernetes API server, in process, on 127.0.0.1 over plain HTTP: exactly the
//! endpoints baton uses (server-side apply, merge patch, get, list by label, delete,
//! pods and their logs) and minimal Deployment and DaemonSet controllers; every request
//! recorded. It is a fake: no validation (but a Job's template is immutable, as in a
//! cluster), no watch, no admission, no real scheduling.
//!
//! After each change to a Deployment the controller makes a ReplicaSet
//! `<deploy>-<template hash>` (annotated with its `deployment.kubernetes.io/revision`)
//! and its pods `<replicaset>-<n>`, running at once on `fake-node-1`, and sets the
//! Deployment's status (observedGeneration, replica counts, conditions Available and
//! Progressing) one read late: the first GET after a change still shows the status
//! from before it, as a controller that has not caught up yet would. A DaemonSet gets
//! one pod (the fake cluster has one node) and its status, the same way. A template
//! whose image contains `broken` never becomes ready: its pods wait in
//! `ImagePullBackOff`, a Deployment's old pods stay, and `Progressing` says
//! `ProgressDeadlineExceeded` at once. The pods of a deleted workload terminate: the
//! next list of pods still shows them, with a `deletionTimestamp`, the one after does not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// Without the query.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// The `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// The body, when it is JSON (apply patches are: JSON is YAML).
    pub body: Option<Value>,
}

/// (plural, namespace, name)
type Key = (String, String, String);

#[derive(Default)]
struct World {
    objects: BTreeMap<Key, Value>,
    requests: Vec<Request>,
    version: u64,
    /// The status each changed Deployment will show once it has been read once more:
    /// the controller lags one read behind, so waiting is exercised.
    catching_up: BTreeMap<Key, Value>,
    /// Pods whose owner went: listed once more (with a deletionTimestamp), then gone.
    terminating: Vec<Key>,
}

type Shared = Arc<Mutex<World>>;

fn lock(shared: &Shared) -> MutexGuard<'_, World> {
    // A panic while holding the lock is a bug in the fake; its state is still usable.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake; stops when dropped.
pub struct KubeFake {
    addr: SocketAddr,
    world: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl KubeFake {
    /// Starts the fake on an ephemeral port, on a thread of its own.
    pub fn start() -> KubeFake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let world: Shared = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = world.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the fake's runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = Router::new().fallback(handle).with_state(shared);
                let serve = axum::serve(listener, app);
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        KubeFake {
            addr,
            world,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig whose one context, `context`, points at the fake (namespace
    /// `default`, no credentials).
    pub fn write_kubeconfig(&self, path: &Path, context: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: {context}\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: {context}\n",
            self.url()
        );
        std::fs::write(path, text).expect("write the kubeconfig");
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.world).requests.clone()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        lock(&self.world).requests.clear();
    }

    /// Every object the fake holds, as (plural, namespace, name) and the object.
    pub fn objects(&self) -> Vec<(Key, Value)> {
        lock(&self.world)
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One object, by plural (`deployments`), namespace and name.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.world)
            .objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
    }
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What a path names: `/api/v1/namespaces/NS/PLURAL[/NAME[/SUB]]` or
/// `/apis/GROUP/VERSION/namespaces/…`.
struct Target {
    api_version: String,
    namespace: String,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, plural, more @ ..] if more.len() <= 2 => Some(Target {
            api_version,
            namespace: ns.to_string(),
            plural: plural.to_string(),
            name: more.first().map(|s| s.to_string()),
            sub: more.get(1).map(|s| s.to_string()),
        }),
        _ => None,
    }
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "deployments" => "Deployment",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "jobs" => "Job",
        "services" => "Service",
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "pods" => "Pod",
        "ingresses" => "Ingress",
        "horizontalpodautoscalers" => "HorizontalPodAutoscaler",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        _ => "Unknown",
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
        })),
    )
        .into_response()
}

fn not_found(plural: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{plural} \"{name}\" not found"),
    )
}

async fn handle(
    Extract(world): Extract<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query());
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut w = lock(&world);
    w.requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        content_type: content_type.clone(),
        field_manager: query.get("fieldManager").cloned(),
        body: body_json.clone(),
    });
    let Some(t) = parse_path(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake serves no {}", uri.path()),
        );
    };
    let key = |name: &str| (t.plural.clone(), t.namespace.clone(), name.to_string());
    match (&method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let selector = query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = w
                .objects
                .iter()
                .filter(|((p, ns, _), o)| {
                    *p == t.plural && *ns == t.namespace && matches(&selector, o)
                })
                .map(|(_, o)| o.clone())
                .collect();
            if t.plural == "pods" {
                for k in std::mem::take(&mut w.terminating) {
                    w.objects.remove(&k);
                }
            }
            let version = w.version.to_string();
            axum::Json(json!({
                "apiVersion": t.api_version,
                "kind": format!("{}List", kind_of(&t.plural)),
                "metadata": {"resourceVersion": version},
                "items": items
            }))
            .into_response()
        }
        (&Method::GET, Some(name), None) => match w.objects.get(&key(name)).cloned() {
            Some(o) => {
                if let Some(status) = w.catching_up.remove(&key(name)) {
                    if let Some(object) = w.objects.get_mut(&key(name)) {
                        object["status"] = status;
                    }
                }
                axum::Json(o).into_response()
            }
            None => not_found(&t.plural, name),
        },
        (&Method::GET, Some(name), Some("log")) if t.plural == "pods" => {
            match w.objects.get(&key(name)) {
                Some(pod) => {
                    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or("");
                    let mut lines = vec![
                        format!("fake: pod {name} started"),
                        format!("fake: running {image}"),
                    ];
                    if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                        let skip = lines.len().saturating_sub(n);
                        lines.drain(..skip);
                    }
                    let mut text = lines.join("\n");
                    text.push('\n');
                    ([("content-type", "text/plain")], text).into_response()
                }
                None => not_found("pods", name),
            }
        }
        (&Method::PATCH, Some(name), None) => {
            let Some(patch) = body_json else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the fake takes JSON bodies only".into(),
                );
            };
            let manager = query.get("fieldManager").cloned();
            let result = match content_type.as_deref() {
                Some("application/apply-patch+yaml") => {
                    let Some(manager) = manager else {
                        return status(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            "fieldManager is required for apply requests".into(),
                        );
                    };
                    apply(&mut w, &t, name, patch, &manager)
                }
                Some("application/merge-patch+json") => {
                    merge(&mut w, &t, name, &patch, manager.as_deref())
                }
                other => {
                    return status(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UnsupportedMediaType",
                        format!("the fake does not take {other:?} patches"),
                    )
                }
            };
            match result {
                Ok((code, object)) => (code, axum::Json(object)).into_response(),
                Err((code, reason, message)) => status(code, reason, message),
            }
        }
        (&Method::DELETE, Some(name), None) => match w.objects.remove(&key(name)) {
            Some(o) => {
                collect_garbage(&mut w, &o);
                axum::Json(o).into_response()
            }
            None => not_found(&t.plural, name),
        },
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the fake does not serve {method} {}", uri.path()),
        ),
    }
}

/// Equality (`a=b`, `a==b`), inequality (`a!=b`) and existence (`a`, `!a`) selectors.
fn matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k).is_none()
        } else {
            labels.get(term).is_some()
        }
    })
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil-from-days).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn next_version(w: &mut World) -> String {
    w.version += 1;
    w.version.to_string()
}

/// Everything but metadata and status: what bumps `metadata.generation`.
fn content(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

fn managed_entry(manager: &str, operation: &str, api_version: &str) -> Value {
    json!({
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}
    })
}

fn set_manager(object: &mut Value, old: Option<&Value>, manager: &str, operation: &str) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
    let mut entries: Vec<Value> = old
        .and_then(|o| o["metadata"]["managedFields"].as_array().cloned())
        .unwrap_or_default();
    entries.retain(|e| e["manager"].as_str() != Some(manager));
    entries.push(managed_entry(manager, operation, &api_version));
    object["metadata"]["managedFields"] = Value::Array(entries);
}

/// A Secret's `stringData` folded into `data` (base64), as the API server does.
fn fold_string_data(object: &mut Value) {
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (k, v) in strings {
        let text = v.as_str().unwrap_or("").to_string();
        object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// A refused request: status, reason, message.
type Refusal = (StatusCode, &'static str, String);
type Answer = Result<(StatusCode, Value), Refusal>;

/// Server-side apply, as much as baton needs: the applied object replaces what was
/// there (status, uid and the controller's revision annotation kept), the manager is
/// recorded, and the generation moves when anything but metadata changed.
fn apply(w: &mut World, t: &Target, name: &str, mut object: Value, manager: &str) -> Answer {
    if object["metadata"]["name"].as_str() != Some(name) {
        return Err((
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the object's name is not {name}"),
        ));
    }
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        if ns != t.namespace {
            return Err((
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    if object["kind"].as_str() != Some(kind_of(&t.plural)) {
        return Err((
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("a {} sent to {}", object["kind"], t.plural),
        ));
    }
    if t.plural == "secrets" {
        fold_string_data(&mut object);
    }
    let key = (t.plural.clone(), t.namespace.clone(), name.to_string());
    let old = w.objects.get(&key).cloned();
    object["metadata"]["namespace"] = json!(t.namespace);
    let code = match &old {
        None => {
            object["metadata"]["uid"] = json!(format!("uid-{}-{}", t.plural, w.version + 1));
            object["metadata"]["creationTimestamp"] = json!(now());
            object["metadata"]["generation"] = json!(1);
            StatusCode::CREATED
        }
        Some(old)
            if t.plural == "jobs" && old["spec"]["template"] != object["spec"]["template"] =>
        {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Job.batch \"{name}\" is invalid: spec.template: Invalid value: field is immutable"),
            ));
        }
        Some(old) => {
            for k in ["uid", "creationTimestamp"] {
                object["metadata"][k] = old["metadata"][k].clone();
            }
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = content(old) != content(&object);
            object["metadata"]["generation"] = json!(generation + i64::from(changed));
            if let Some(rev) = old["metadata"]["annotations"][REVISION].as_str() {
                object["metadata"]["annotations"][REVISION] = json!(rev);
            }
            if !old["status"].is_null() {
                object["status"] = old["status"].clone();
            }
            StatusCode::OK
        }
    };
    set_manager(&mut object, old.as_ref(), manager, "Apply");
    object["metadata"]["resourceVersion"] = json!(next_version(w));
    w.objects.insert(key.clone(), object);
    match t.plural.as_str() {
        "deployments" => reconcile(w, &t.namespace, name),
        "daemonsets" => reconcile_daemon(w, &t.namespace, name),
        _ => {}
    }
    Ok((code, w.objects.get(&key).cloned().unwrap_or(Value::Null)))
}

/// RFC 7386.
fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_into(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn merge(w: &mut World, t: &Target, name: &str, patch: &Value, manager: Option<&str>) -> Answer {
    let key = (t.plural.clone(), t.namespace.clone(), name.to_string());
    let Some(old) = w.objects.get(&key).cloned() else {
        return Err((
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", t.plural),
        ));
    };
    let mut object = old.clone();
    merge_into(&mut object, patch);
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let changed = content(&old) != content(&object);
    object["metadata"]["generation"] = json!(generation + i64::from(changed));
    set_manager(
        &mut object,
        Some(&old),
        manager.unwrap_or("unknown"),
        "Update",
    );
    object["metadata"]["resourceVersion"] = json!(next_version(w));
    w.objects.insert(key.clone(), object);
    match t.plural.as_str() {
        "deployments" => reconcile(w, &t.namespace, name),
        "daemonsets" => reconcile_daemon(w, &t.namespace, name),
        _ => {}
    }
    Ok((
        StatusCode::OK,
        w.objects.get(&key).cloned().unwrap_or(Value::Null),
    ))
}

const REVISION: &str = "deployment.kubernetes.io/revision";

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn template_hash(template: &Value) -> String {
    let bytes = serde_json::to_vec(&canonical(template)).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..5])
}

fn owned_by(o: &Value, uid: &str) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

fn owner(kind: &str, name: &str, uid: &str, api_version: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
}

/// The fake's Deployment controller: one ReplicaSet per pod template, pods made at
/// once, old ones removed unless the new template is broken, status set.
fn reconcile(w: &mut World, ns: &str, name: &str) {
    let dkey = ("deployments".to_string(), ns.to_string(), name.to_string());
    let Some(d) = w.objects.get(&dkey).cloned() else {
        return;
    };
    let uid = d["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let template = d["spec"]["template"].clone();
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let hash = template_hash(&template);
    let rs_name = format!("{name}-{hash}");
    let broken = template["spec"]["containers"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["image"].as_str().is_some_and(|i| i.contains("broken")))
    });

    let sets: Vec<Key> = w
        .objects
        .iter()
        .filter(|((p, n, _), o)| p == "replicasets" && n == ns && owned_by(o, &uid))
        .map(|(k, _)| k.clone())
        .collect();
    let revision_of = |o: &Value| -> u64 {
        o["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    let max = sets
        .iter()
        .filter_map(|k| w.objects.get(k))
        .map(revision_of)
        .max()
        .unwrap_or(0);
    let rs_key = ("replicasets".to_string(), ns.to_string(), rs_name.clone());
    let revision = match w.objects.get(&rs_key) {
        Some(rs) if revision_of(rs) == max => max,
        _ => max + 1,
    };
    let mut pod_labels = template["metadata"]["labels"].clone();
    pod_labels["pod-template-hash"] = json!(hash);
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"] = pod_labels.clone();
    let rs_uid = w
        .objects
        .get(&rs_key)
        .and_then(|rs| rs["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("uid-rs-{rs_name}"));
    let version = next_version(w);
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name, "namespace": ns, "uid": rs_uid, "resourceVersion": version,
            "labels": pod_labels, "annotations": {REVISION: revision.to_string()},
            "ownerReferences": owner("Deployment", name, &uid, "apps/v1"),
            "creationTimestamp": now()
        },
        "spec": {"replicas": replicas, "selector": d["spec"]["selector"], "template": rs_template},
        "status": {"replicas": replicas}
    });
    w.objects.insert(rs_key.clone(), rs);

    // Pods of the current set: exactly `replicas` of them.
    let pod_key = |n: u64| ("pods".to_string(), ns.to_string(), format!("{rs_name}-{n}"));
    let mine: Vec<Key> = w
        .objects
        .iter()
        .filter(|((p, n, _), o)| p == "pods" && n == ns && owned_by(o, &rs_uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in mine {
        let index = k.2.rsplit('-').next().and_then(|i| i.parse::<u64>().ok());
        if index.is_none_or(|i| i >= replicas) {
            w.objects.remove(&k);
        }
    }
    for n in 0..replicas {
        if w.objects.contains_key(&pod_key(n)) {
            continue;
        }
        let pod = make_pod(
            w,
            ns,
            &format!("{rs_name}-{n}"),
            &template,
            &pod_labels,
            &rs_name,
            &rs_uid,
            broken,
        );
        w.objects.insert(pod_key(n), pod);
    }

    // Old sets: scaled to zero and their pods gone, unless the new one never comes up.
    let mut old_pods = 0;
    for k in sets.iter().filter(|k| **k != rs_key) {
        let Some(old_uid) = w
            .objects
            .get(k)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string))
        else {
            continue;
        };
        let pods: Vec<Key> = w
            .objects
            .iter()
            .filter(|((p, n, _), o)| p == "pods" && n == ns && owned_by(o, &old_uid))
            .map(|(k, _)| k.clone())
            .collect();
        if broken {
            old_pods += pods.len() as u64;
        } else {
            for p in pods {
                w.objects.remove(&p);
            }
            if let Some(o) = w.objects.get_mut(k) {
                o["spec"]["replicas"] = json!(0);
                o["status"]["replicas"] = json!(0);
            }
        }
    }

    let ready = if broken { 0 } else { replicas };
    let available = ready + old_pods;
    let progressing = if broken {
        json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
               "message": format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
               "lastUpdateTime": now(), "lastTransitionTime": now()})
    } else {
        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
               "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
               "lastUpdateTime": now(), "lastTransitionTime": now()})
    };
    let available_condition = if available >= replicas {
        json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
               "message": "Deployment has minimum availability.", "lastUpdateTime": now(), "lastTransitionTime": now()})
    } else {
        json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
               "message": "Deployment does not have minimum availability.", "lastUpdateTime": now(), "lastTransitionTime": now()})
    };
    let version = next_version(w);
    if let Some(d) = w.objects.get_mut(&dkey) {
        d["metadata"]["annotations"][REVISION] = json!(revision.to_string());
        d["metadata"]["resourceVersion"] = json!(version);
        let generation = d["metadata"]["generation"].clone();
        let status = json!({
            "observedGeneration": generation,
            "replicas": replicas + old_pods,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": replicas.saturating_sub(ready),
            "conditions": [available_condition, progressing]
        });
        w.catching_up.insert(dkey, status);
    }
}

/// The fake's DaemonSet controller: the cluster has one node, so one pod
/// `<daemonset>-<template hash>`, and the status (one read late, as Deployments').
fn reconcile_daemon(w: &mut World, ns: &str, name: &str) {
    let key = ("daemonsets".to_string(), ns.to_string(), name.to_string());
    let Some(d) = w.objects.get(&key).cloned() else {
        return;
    };
    let uid = d["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let template = d["spec"]["template"].clone();
    let hash = template_hash(&template);
    let pod_name = format!("{name}-{hash}");
    let broken = template["spec"]["containers"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["image"].as_str().is_some_and(|i| i.contains("broken")))
    });
    let stale: Vec<Key> = w
        .objects
        .iter()
        .filter(|((p, n, pod), o)| p == "pods" && n == ns && owned_by(o, &uid) && *pod != pod_name)
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        w.objects.remove(&k);
    }
    let pod_key = ("pods".to_string(), ns.to_string(), pod_name.clone());
    if !w.objects.contains_key(&pod_key) {
        let mut labels = template["metadata"]["labels"].clone();
        labels["controller-revision-hash"] = json!(hash);
        let mut pod = make_pod(w, ns, &pod_name, &template, &labels, name, &uid, broken);
        pod["metadata"]["ownerReferences"] = owner("DaemonSet", name, &uid, "apps/v1");
        w.objects.insert(pod_key, pod);
    }
    let available = i64::from(!broken);
    let status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0,
        "updatedNumberScheduled": 1, "numberReady": available, "numberAvailable": available
    });
    w.catching_up.insert(key, status);
}

#[allow(clippy::too_many_arguments)]
fn make_pod(
    w: &mut World,
    ns: &str,
    name: &str,
    template: &Value,
    labels: &Value,
    rs_name: &str,
    rs_uid: &str,
    broken: bool,
) -> Value {
    let version = next_version(w);
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!("fake-node-1");
    let statuses: Vec<Value> = spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or("");
            let state = if broken {
                json!({"waiting": {"reason": "ImagePullBackOff",
                                   "message": format!("Back-off pulling image \"{image}\"")}})
            } else {
                json!({"running": {"startedAt": now()}})
            };
            json!({"name": c["name"], "image": image, "imageID": "", "ready": !broken,
                   "started": !broken, "restartCount": 0, "state": state})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-pod-{name}-{version}"),
            "resourceVersion": version, "labels": labels,
            "ownerReferences": owner("ReplicaSet", rs_name, rs_uid, "apps/v1"),
            "creationTimestamp": now()
        },
        "spec": spec,
        "status": {
            "phase": if broken { "Pending" } else { "Running" },
            "startTime": now(),
            "containerStatuses": statuses
        }
    })
}

/// What the garbage collector does after a delete: a Deployment's ReplicaSets and
/// their pods go with it.
fn collect_garbage(w: &mut World, deleted: &Value) {
    if let (Some(ns), Some(name)) = (
        deleted["metadata"]["namespace"].as_str(),
        deleted["metadata"]["name"].as_str(),
    ) {
        for plural in ["deployments", "daemonsets"] {
            w.catching_up
                .remove(&(plural.to_string(), ns.to_string(), name.to_string()));
        }
    }
    let Some(uid) = deleted["metadata"]["uid"].as_str() else {
        return;
    };
    let owned: Vec<Key> = w
        .objects
        .iter()
        .filter(|(_, o)| owned_by(o, uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in owned {
        if k.0 == "pods" {
            // A pod terminates: it is seen once more, marked, then it is gone.
            if let Some(pod) = w.objects.get_mut(&k) {
                pod["metadata"]["deletionTimestamp"] = json!(now());
            }
            w.terminating.push(k);
        } else if let Some(o) = w.objects.remove(&k) {
            collect_garbage(w, &o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_dates_and_queries() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        assert!(matches("a=1,b==2", &o));
        assert!(!matches("a=1,b=3", &o));
        assert!(matches("a!=2,b", &o));
        assert!(!matches("!a", &o));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        let q = parse_query(Some(
            "labelSelector=io.baton.project%3Dshop%2Cx%3Dy&force=true",
        ));
        assert_eq!(q["labelSelector"], "io.baton.project=shop,x=y");
        assert_eq!(decode("a%2"), "a%2");
    }
}
