//! The web dashboard: server-rendered pages over the same reads and operations as
//! `/api/v1`, kept live over Server-Sent Events, behind a login that trades a token for
//! a server-side session in an HttpOnly, SameSite=Strict cookie.
//!
//! Architecture invariant: a page reads (the store off the async threads, the control
//! plane's services view, the daemon's status) and renders; an action is the same
//! `baton_control::Operation` the API sends, for the session's principal, audited the
//! same way; nothing here decides. Everything a page needs is compiled in (`assets.rs`,
//! `render.rs`): it loads nothing from elsewhere and works on an air-gapped host.
//!
//! Boundaries: `session.rs` (sessions and CSRF tokens), `render.rs` (templates and
//! filters), `pages.rs` (the pages and their live fragments), `actions.rs` (the buttons),
//! `live.rs` (event, log and job-log streams), `dag.rs` (a pipeline's DAG laid out, pure),
//! `charts.rs` (the history graphs' queries and `/ui/series`), `assets.rs` (static files).

mod actions;
mod alerts;
mod assets;
mod charts;
mod dag;
mod edge;
mod live;
mod pages;
mod render;
pub mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use baton_http::Throttle;
use minijinja::context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokens::Role;
use crate::{Api, ApiError, ApiState};

pub use session::{Session, SessionConfig, Sessions};

/// Where the dashboard lives.
pub const ROOT: &str = "/ui";

/// How the dashboard is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardConfig {
    /// Mark the cookie `Secure` (the listener has TLS).
    pub secure_cookies: bool,
    pub sessions: SessionConfig,
}

/// What the dashboard's handlers share.
pub(crate) struct Dash {
    pub api: Arc<ApiState>,
    pub sessions: Sessions,
    pub throttle: Arc<Throttle>,
    pub config: DashboardConfig,
    pub services: pages::ServicesCache,
}

type D = State<Arc<Dash>>;

/// The largest form a dashboard POST may send (a login, a snapshot name).
const MAX_FORM: usize = 16 * 1024;

/// What a browser may do with a dashboard page: only what comes from here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Api {
    /// The dashboard's routes (`/` and `/ui/…`), with their own login and sessions, for
    /// mounting beside [`Api::router`] on the TCP listener.
    pub fn dashboard(&self, config: DashboardConfig) -> Router {
        let dash = Arc::new(Dash {
            api: self.state.clone(),
            sessions: Sessions::new(config.sessions),
            throttle: self.throttle.clone(),
            config,
            services: pages::ServicesCache::default(),
        });
        let open = Router::new()
            .route("/", get(|| async { Redirect::to("/ui/") }))
            .route("/ui", get(|| async { Redirect::to("/ui/") }))
            .route("/ui/login", get(login_page).post(login))
            .route("/ui/assets/{*path}", get(assets::serve));
        let p = "/ui/projects/{project}";
        let closed = Router::new()
            .route("/ui/", get(pages::overview))
            .route("/ui/logout", post(logout))
            .route("/ui/live", get(live::events))
            .route("/ui/series", get(charts::series))
            .route("/ui/events", get(pages::events))
            .route("/ui/audit", get(pages::audit))
            .route("/ui/pipelines", get(pages::pipelines))
            .route("/ui/fleet", get(pages::fleet))
            .route("/ui/routes", get(edge::routes))
            .route("/ui/alerts", get(alerts::page))
            .route(&format!("{p}/silences"), post(alerts::silence))
            .route(&format!("{p}/silences/{{id}}/end"), post(alerts::unsilence))
            .route("/ui/vms", get(pages::vms))
            .route("/ui/vms/{vm}", get(pages::vm))
            .route("/ui/vms/{vm}/{action}", post(actions::vm))
            .route(
                "/ui/vms/{vm}/snapshots/{snapshot}/restore",
                post(actions::vm_restore),
            )
            .route(&format!("{p}/services/{{service}}"), get(pages::service))
            .route(
                &format!("{p}/services/{{service}}/logs"),
                get(live::service_logs),
            )
            .route(
                &format!("{p}/services/{{service}}/rollout/{{action}}"),
                post(actions::rollout),
            )
            .route(&format!("{p}/pipelines/runs/{{run}}"), get(pages::run))
            .route(
                &format!("{p}/pipelines/runs/{{run}}/{{action}}"),
                post(actions::pipeline),
            )
            .route(
                &format!("{p}/pipelines/runs/{{run}}/jobs/{{job}}/log"),
                get(live::job_log),
            )
            .route(
                &format!("{p}/pipelines/runs/{{run}}/artifacts/{{*path}}"),
                get(pages::artifact),
            )
            // Unknown dashboard paths: a page saying so (the API's fallback answers JSON).
            .route("/ui/{*rest}", get(not_found).post(not_found))
            .route_layer(axum::middleware::from_fn_with_state(
                dash.clone(),
                require_session,
            ));
        open.merge(closed)
            .with_state(dash)
            .layer(axum::middleware::from_fn(security_headers))
    }
}

async fn not_found() -> Response {
    pages::PageError(ApiError::not_found("no such page")).into_response()
}

/// Every dashboard answer: no framing, no sniffing, no referrer to other sites (not
/// `no-referrer`: a browser then sends `Origin: null`, which the origin check refuses),
/// and only our own scripts and styles (htmx runs without eval or inline styles).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .map(str::to_string)
}

/// Whether a change comes from a page of ours: the browser's `Origin` (or, without one,
/// `Sec-Fetch-Site`) must say so. Clients that send neither are not browsers; the CSRF
/// token still has to match.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(host) = host else { return false };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        return origin == format!("http://{host}") || origin == format!("https://{host}");
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    true
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// The session check in front of every page, stream and action: no session → the login
/// page (a page), or 401 that tells htmx to go there (a fragment, a stream). A change
/// must come from our origin and carry the session's CSRF token (`X-CSRF-Token`, or
/// `_csrf` in a form).
async fn require_session(State(d): D, req: Request, next: Next) -> Response {
    let Some(id) = session_id(req.headers()) else {
        return to_login(&req);
    };
    let Some(session) = d.sessions.check(&d.api.tokens, &id, Instant::now()).await else {
        return to_login(&req);
    };
    let req = if req.method() == Method::GET || req.method() == Method::HEAD {
        req
    } else {
        match check_csrf(&session, req).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        }
    };
    let mut req = req;
    req.extensions_mut().insert(session);
    next.run(req).await
}

fn to_login(req: &Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/ui/");
    if req.method() == Method::GET && !is_htmx(req.headers()) && !path.starts_with("/ui/live") {
        let next = percent_encode(path);
        return Redirect::to(&format!("/ui/login?next={next}")).into_response();
    }
    let mut r = pages::PageError(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "your session has ended: log in again",
    ))
    .into_response();
    r.headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/ui/login"));
    r
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn check_csrf(session: &Session, req: Request) -> Result<Request, pages::PageError> {
    let refused = |why: &str| {
        pages::PageError(ApiError::forbidden(format!(
            "{why}: reload the page and try again"
        )))
    };
    if !same_origin(req.headers()) {
        return Err(refused("the request did not come from this dashboard"));
    }
    if let Some(sent) = req.headers().get("x-csrf-token") {
        return match sent.to_str() {
            Ok(s) if session::csrf_matches(session, s) => Ok(req),
            _ => Err(refused("the page's form token is out of date")),
        };
    }
    // A plain form: the token is the `_csrf` field; the body is read here (bounded) and
    // handed on unchanged.
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        pages::PageError(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "form too large",
        ))
    })?;
    let sent = form_field(&bytes, "_csrf").unwrap_or_default();
    if !session::csrf_matches(session, &sent) {
        return Err(refused("the page's form token is missing or out of date"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
}

/// `+` is a space, `%XX` a byte; a `%` not followed by two hex digits stays as it is.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginQuery {
    next: Option<String>,
}

/// Where to go after login: a dashboard path, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("//")
                && !n.contains(['\\', '\r', '\n'])
                && !n.starts_with("/ui/live")
                && !n.starts_with("/ui/logout") =>
        {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

#[derive(Serialize)]
struct LoginContext<'a> {
    next: &'a str,
    error: Option<&'a str>,
    v: &'static str,
}

async fn login_page(
    State(d): D,
    headers: HeaderMap,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = safe_next(q.as_ref().ok().and_then(|q| q.next.as_deref()));
    if let Some(id) = session_id(&headers) {
        if d.sessions
            .check(&d.api.tokens, &id, Instant::now())
            .await
            .is_some()
        {
            return Redirect::to(&next).into_response();
        }
    }
    login_form(StatusCode::OK, &next, None)
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let ctx = LoginContext {
        next,
        error,
        v: assets::version(),
    };
    match render::render("login.html", None, &ctx) {
        Ok(body) => render::html(status, body),
        Err(e) => pages::PageError(e).into_response(),
    }
}

/// `POST /ui/login`: a token in, a session cookie out. Wrong tokens are slowed down per
/// client address as on the API; the token is never logged or echoed.
async fn login(State(d): D, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<baton_http::ClientAddr>()
        .map(|a| a.0.ip());
    if !same_origin(req.headers()) {
        return pages::PageError(ApiError::forbidden(
            "the login form did not come from this dashboard",
        ))
        .into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), MAX_FORM).await else {
        return login_form(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/ui/",
            Some("the form is too large"),
        );
    };
    let next = safe_next(form_field(&bytes, "next").as_deref());
    let token = form_field(&bytes, "token").unwrap_or_default();
    let token = token.trim();
    if let Some(ip) = ip {
        let wait = d.throttle.delay(ip, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let found = if token.is_empty() {
        None
    } else {
        d.api.tokens.find(token.as_bytes()).await
    };
    let Some(principal) = found else {
        if let Some(ip) = ip {
            d.throttle.failed(ip, Instant::now());
        }
        return login_form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("that token is not known here: check it, or make one with `baton token create NAME --role viewer`"),
        );
    };
    if let Some(ip) = ip {
        d.throttle.succeeded(ip);
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let id = match d.sessions.open(digest, Instant::now()) {
        Ok(id) => id,
        Err(e) => return pages::PageError(e).into_response(),
    };
    tracing::info!(token = %principal.name, role = %principal.role, "dashboard login");
    let cookie = session::set_cookie(&id, d.config.secure_cookies, d.config.sessions.max_age);
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /ui/logout`: the session ends on the server and the cookie goes.
async fn logout(State(d): D, Extension(s): Extension<Session>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        d.sessions.close(&id);
    }
    tracing::info!(token = %s.principal.name, "dashboard logout");
    let mut r = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(d.config.secure_cookies)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    if is_htmx(&headers) {
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/ui/login"));
    }
    r
}

/// The part of every page's context that says who is looking.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Me {
    pub name: String,
    pub role: Role,
    /// Operators and admins see the action buttons.
    pub can_act: bool,
    pub admin: bool,
}

impl Me {
    pub fn of(s: &Session) -> Me {
        Me {
            name: s.principal.name.clone(),
            role: s.principal.role,
            can_act: s.principal.role >= Role::Operator,
            admin: s.principal.role >= Role::Admin,
        }
    }
}

/// The context every page shares: who, the CSRF token, the asset version, the time, the
/// navigation entry, the title, and the live stream the page listens to.
pub(crate) fn base(s: &Session, now: i64, nav: &str, title: &str, live: &str) -> minijinja::Value {
    context! {
        me => Me::of(s),
        csrf => s.csrf,
        v => assets::version(),
        now => now,
        nav => nav,
        title => title,
        live => live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/ui/vms")), "/ui/vms");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui/\\evil",
            "/api/v1/tokens",
            "/ui/logout",
            "/ui/live",
            "/ui/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn forms_are_decoded() {
        let body = b"token=baton_a%2Bb%3D&next=%2Fui%2Fvms&x=a+b&empty";
        assert_eq!(form_field(body, "token").as_deref(), Some("baton_a+b="));
        assert_eq!(form_field(body, "next").as_deref(), Some("/ui/vms"));
        assert_eq!(form_field(body, "x").as_deref(), Some("a b"));
        assert_eq!(form_field(body, "empty").as_deref(), Some(""));
        assert_eq!(form_field(body, "nope"), None);
        assert_eq!(form_field(b"a=%zz%4", "a").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn changes_must_come_from_this_origin() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&h(&[
            ("host", "a.example"),
            ("origin", "https://a.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&h(&[("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&h(&[])), "not a browser: the token decides");
    }
}
