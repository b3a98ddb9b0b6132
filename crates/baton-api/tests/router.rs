//! The router in process, without a container engine: the document lists exactly the
//! routes served, roles are enforced, and bad input is refused before anything runs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use baton_api::tokens::{self, Role};
use baton_api::{route_table, Api, ApiState, EventHub};
use baton_control::ControlHandle;
use baton_state::Store;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    router: Router,
    viewer: String,
    operator: String,
    admin: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let token = |name: &str, role| {
        tokens::create(&store, "cli:test", name, role, 1)
            .unwrap()
            .token
    };
    let (viewer, operator, admin) = (
        token("dash", Role::Viewer),
        token("ci", Role::Operator),
        token("root", Role::Admin),
    );
    let api = Api::new(ApiState {
        store: store.clone(),
        control: ControlHandle::detached(),
        logs: None,
        daemon: Arc::new(Default::default()),
        events: EventHub::start(store.clone(), Duration::from_millis(50)),
        tokens: tokens::Tokens::new(store.clone(), || 1),
        state_dir: dir.path().to_path_buf(),
        clock: || 1,
        services: baton_api::services_cache(),
    });
    Fixture {
        router: api.router(),
        _dir: dir,
        store,
        viewer,
        operator,
        admin,
    }
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some((ct, b)) => {
            req = req.header(header::CONTENT_TYPE, ct);
            Body::from(b.to_vec())
        }
        None => Body::empty(),
    };
    let resp = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A concrete path for a templated one.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{run}" => "1",
            "{path}" => "out/a.txt",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served() {
    let f = fixture().await;
    let (status, doc) = call(&f.router, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let table = route_table();
    let mut documented = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                table
                    .iter()
                    .any(|r| &r.path == path && r.method.eq_ignore_ascii_case(method)),
                "documented but not a route: {method} {path}"
            );
        }
    }
    assert_eq!(documented, table.len(), "every route is documented");
    // Every route of the table is mounted: none falls through to "no such route", and
    // paths outside the table do.
    for r in &table {
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let path = fill(&r.path);
        let (status, body) = if r.path.ends_with("/events") && !r.path.contains("projects") {
            (StatusCode::OK, serde_json::Value::Null) // a stream: not read to its end here
        } else {
            call(&f.router, method, &path, Some(&f.admin), None).await
        };
        let fell_through = body["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such route"));
        assert!(
            !fell_through && status != StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}: {status} {body}",
            r.method
        );
    }
    let (status, body) = call(
        &f.router,
        Method::GET,
        "/api/v1/nothing",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().starts_with("no such route"));
    // Schemas the routes name are in the document.
    let text = doc.to_string();
    for schema in [
        "ServicesView",
        "RolloutView",
        "UpOutcome",
        "AuditView",
        "Error",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    for r in text.match_indices("#/components/schemas/") {
        let rest = &text[r.0 + r.1.len()..];
        let name: String = rest.chars().take_while(|c| *c != '"').collect();
        assert!(
            doc["components"]["schemas"][&name].is_object(),
            "dangling reference to {name}"
        );
    }
}

#[tokio::test]
async fn roles_decide_who_may_do_what() {
    let f = fixture().await;
    let r = &f.router;
    let (status, body) = call(r, Method::GET, "/api/v1/projects", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = call(
        r,
        Method::GET,
        "/api/v1/projects",
        Some("baton_wrong"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Unknown routes say nothing to strangers.
    let (status, _) = call(r, Method::GET, "/api/v1/secret-route", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(r, Method::GET, "/api/v1/projects", Some(&f.viewer), None).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!([])));
    let (status, body) = call(
        r,
        Method::POST,
        "/api/v1/projects/shop/stop",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("needs operator"),
        "{body}"
    );
    // An operator gets through to the control plane (which is not there: 503).
    let (status, _) = call(
        r,
        Method::POST,
        "/api/v1/projects/shop/stop",
        Some(&f.operator),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = call(r, Method::GET, "/api/v1/audit", Some(&f.operator), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(
        r,
        Method::GET,
        "/api/v1/audit?limit=2",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert!(body["next"].is_i64(), "three tokens were made: {body}");
    // Tokens through the API: made once, listed without secrets, revoked.
    let json = "application/json";
    let (status, made) = call(
        r,
        Method::POST,
        "/api/v1/tokens",
        Some(&f.admin),
        Some((json, br#"{"name": "bot", "role": "viewer"}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = made["token"].as_str().unwrap().to_string();
    let (_, list) = call(r, Method::GET, "/api/v1/tokens", Some(&f.admin), None).await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(!list.to_string().contains(&secret));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = call(r, Method::GET, "/api/v1/projects", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        r,
        Method::DELETE,
        "/api/v1/tokens/bot",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        r,
        Method::DELETE,
        "/api/v1/tokens/bot",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let log = f.store.audit_page(None, None, 10).unwrap();
    assert_eq!(log[0].actor, "root");
    assert_eq!(
        (log[1].action.as_str(), log[1].target.as_str()),
        ("token.revoke", "bot")
    );
}

/// (method, path, (content type, body), the status wanted, words the error says).
type Case<'a> = (
    Method,
    &'a str,
    Option<(&'a str, &'a [u8])>,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let f = fixture().await;
    let r = &f.router;
    let t = Some(f.operator.as_str());
    let json = "application/json";
    let before = f.store.audit_page(None, None, 100).unwrap().len();
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/projects/shop/stop",
            Some((json, b"{\"services\": [")),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/stop",
            Some((json, b"{\"services\": [], \"force\": 1}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `force`",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/stop",
            Some(("text/plain", b"{}")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/scale",
            Some((json, b"{\"replicas\": {\"web\": -1}}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "replicas",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/scale",
            Some((json, b"{}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "names no service",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/up",
            Some((json, b"{\"options\": {}}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`project` is required",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/up",
            Some((json, b"{\"project\": {\"name\": \"other\"}}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "project",
        ),
        (
            Method::POST,
            "/api/v1/projects/shop/services/web/rollout/promote",
            Some((json, b"{\"now\": true}")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
        (
            Method::POST,
            "/api/v1/projects/%2e%2e/stop",
            None,
            StatusCode::BAD_REQUEST,
            "is not a name",
        ),
        (
            Method::GET,
            "/api/v1/projects/shop/pipelines/runs/1/artifacts/..%2f..%2fbaton.db",
            None,
            StatusCode::BAD_REQUEST,
            "without '..'",
        ),
        (
            Method::GET,
            "/api/v1/projects/shop/pipelines/runs/1/artifacts/%2fetc%2fpasswd",
            None,
            StatusCode::BAD_REQUEST,
            "without '..'",
        ),
        (
            Method::GET,
            "/api/v1/projects/shop/pipelines/runs/one",
            None,
            StatusCode::BAD_REQUEST,
            "not a run id",
        ),
        (
            Method::GET,
            "/api/v1/projects/shop/events?limit=ten",
            None,
            StatusCode::BAD_REQUEST,
            "bad query",
        ),
        (
            Method::GET,
            "/api/v1/projects/shop/events?color=red",
            None,
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ];
    for (method, path, body, want, says) in cases {
        let (status, answer) = call(r, method.clone(), path, t, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: {message}");
    }
    assert_eq!(
        f.store.audit_page(None, None, 100).unwrap().len(),
        before,
        "nothing reached the control plane"
    );
}
