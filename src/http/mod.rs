//! The HTTP side (SPEC 7): health, readiness, the JSON API, the dashboard
//! ([`pages`]) and who may use them ([`auth`]). Handlers read the sled
//! store and the processing loop's [`View`]; what changes state
//! (acknowledging an alert, a label) goes to the processing loop as a
//! [`Command`], so the alert policy has one owner.

pub mod auth;
pub mod charts;
pub mod pages;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::alerts::{Alert, AlertHead, Status};
use crate::model::ModelHandle;
use crate::state::Store;
use crate::time::format_rfc3339;

/// What the dashboard shows of a device, kept by the processing loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    /// The engine's own copy of the id, shared (10,000 devices held two
    /// strings each, and two more for the times below).
    #[serde(serialize_with = "id_str")]
    pub device_id: Arc<str>,
    /// End of the latest closed window (epoch ms; RFC 3339 in JSON, "" if none).
    #[serde(serialize_with = "time_or_empty")]
    pub last_window_end: Option<i64>,
    /// Its fault probability (null: not scored).
    pub fault_probability: Option<f64>,
    /// The alert not cleared, if any.
    pub open_alert: Option<String>,
    /// Processing time the latest window closed (epoch ms; RFC 3339 in JSON).
    #[serde(serialize_with = "time")]
    pub updated_at: i64,
    /// The latest window's model input, in the package's feature order.
    #[serde(skip)]
    pub features: Option<Arc<[f32]>>,
    /// The device's baseline of normal, with `[baseline]`. Boxed: the
    /// view's 10,000 entries held 88 bytes each for it, with or without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Box<crate::scoring::BaselineStatus>>,
}

fn id_str<S: serde::Serializer>(id: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(id)
}

fn time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

fn time_or_empty<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ms.map(format_rfc3339).unwrap_or_default())
}

/// The processing loop's state as the HTTP side sees it.
#[derive(Debug)]
pub struct View {
    pub devices: RwLock<BTreeMap<Arc<str>, DeviceView>>,
    /// Alerts not cleared, by id: their status.
    pub alerts: RwLock<BTreeMap<String, Status>>,
    /// The daemon restored its state and started its sources.
    pub started: AtomicBool,
    /// Readings accepted per second, lately (f64 bits).
    rate: AtomicU64,
    /// Changes for live pages: (event name, JSON).
    events: broadcast::Sender<(&'static str, Arc<str>)>,
}

impl Default for View {
    fn default() -> Self {
        View {
            devices: RwLock::default(),
            alerts: RwLock::default(),
            started: AtomicBool::new(false),
            rate: AtomicU64::new(0),
            events: broadcast::channel(1024).0,
        }
    }
}

impl View {
    /// Whether a live page is open (so events are worth making).
    pub fn listened(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Tells live pages about a change; nobody listening is fine.
    pub fn publish(&self, event: &'static str, data: &serde_json::Value) {
        if self.listened() {
            self.publish_text(event, data.to_string());
        }
    }

    /// [`View::publish`] for data already written as JSON text.
    fn publish_text(&self, event: &'static str, json: String) {
        let _ = self.events.send((event, Arc::from(json)));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<(&'static str, Arc<str>)> {
        self.events.subscribe()
    }

    pub fn set_rate(&self, per_s: f64) {
        self.rate.store(per_s.to_bits(), Ordering::Relaxed);
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Open and acknowledged alerts.
    pub fn counts(&self) -> (usize, usize) {
        let a = self.alerts.read().unwrap_or_else(|e| e.into_inner());
        let n = |st: Status| a.values().filter(|s| **s == st).count();
        (n(Status::Open), n(Status::Acknowledged))
    }

    /// Keeps the alert counts in step with an alert record, and tells live pages.
    pub fn alert_changed(&self, a: &Alert) {
        {
            let mut m = self.alerts.write().unwrap_or_else(|e| e.into_inner());
            if a.status == Status::Cleared {
                m.remove(&a.alert_id);
            } else {
                m.insert(a.alert_id.clone(), a.status);
            }
        }
        if self.listened() {
            // The text the alert topic gets, without a `Value` first.
            self.publish_text("alert", a.to_json_string());
            let (open, acknowledged) = self.counts();
            self.publish("counts", &serde_json::json!({"open": open, "acknowledged": acknowledged}));
        }
    }
}

/// What the HTTP side asks of the processing loop.
#[derive(Debug)]
pub enum Command {
    Ack {
        alert_id: String,
        by: String,
        comment: Option<String>,
        reply: oneshot::Sender<Result<Alert, String>>,
    },
    Label {
        label: Label,
        reply: oneshot::Sender<Result<LabelOutcome, String>>,
    },
    /// Learn a device's normal again (`POST /api/v1/devices/{id}/baseline/reset`).
    ResetBaseline {
        device_id: String,
        by: String,
        reply: oneshot::Sender<Result<crate::scoring::BaselineStatus, String>>,
    },
}

/// Maintenance feedback (`POST /api/v1/labels`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub device_id: String,
    /// RFC 3339 or epoch milliseconds.
    pub start: serde_json::Value,
    pub end: serde_json::Value,
    /// True: a fault was found; false: there was none.
    pub fault: bool,
}

/// What a label did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelOutcome {
    /// Alerts of the device overlapping the labelled time.
    pub alerts: Vec<String>,
    /// Of those, how many the label says were false alarms.
    pub false_alerts: usize,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub view: Arc<View>,
    pub commands: mpsc::Sender<Command>,
    pub model: Option<Arc<ModelHandle>>,
    /// Connection state of each source, by label.
    pub sources: Arc<Vec<(String, Arc<crate::daemon::SourceStatus>)>>,
    pub auth: Arc<auth::Auth>,
    /// Live pages open at once (`/events`).
    pub live: Arc<tokio::sync::Semaphore>,
    /// Becomes true when the daemon stops; live streams end then.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The Prometheus registry behind `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Live pages (`/events` streams) open at once.
pub const MAX_LIVE: usize = 256;

/// Requests larger than this are refused (413).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/devices/{id}", get(pages::device))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/ack", post(pages::ack_form))
        .route("/alerts/feedback", post(pages::feedback_form))
        .route("/devices/baseline/reset", post(pages::reset_form))
        .route("/models", get(pages::models))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/events", get(pages::events))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/app.js", get(pages::script))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/windows", get(windows))
        .route("/api/v1/devices/{id}/baseline/reset", post(reset_baseline))
        .route("/api/v1/alerts", get(alerts))
        // Alert ids hold a `/` (SPEC 4: `pump-7/2026-...`): taken whole, encoded or not.
        .route("/api/v1/alerts/{*alert_id_ack}", post(ack))
        .route("/api/v1/model", get(model))
        .route("/api/v1/labels", post(label))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Routes anyone may call: probes, the sign-in page and what it needs.
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/login" | "/assets/style.css" | "/assets/app.js")
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/events" || path == "/metrics"
}

/// `GET /metrics`: Prometheus text format (behind `[http.auth]` when it is on:
/// scrape with a viewer token).
async fn prometheus(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], h.render())
            .into_response(),
        None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the metrics registry could not be installed")
            .into_response(),
    }
}

/// Finds out who calls; refuses callers without credentials (401 for the
/// API, the sign-in page for pages), and session-authenticated API posts
/// without the session's CSRF token in `X-CSRF-Token`.
async fn gate(State(s): State<AppState>, mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if public(path) {
        return next.run(req).await;
    }
    let Some(who) = s.auth.identify(req.headers()) else {
        if is_api(path) {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "sign in, or send Authorization: Bearer <token>")
                .into_response();
            r.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            return r;
        }
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return axum::response::Redirect::to(&format!("/login?next={}", pages::enc(target))).into_response();
    };
    let changes = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if changes && is_api(path) && who.via == auth::Via::Session {
        let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !who.csrf_ok(sent) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "a signed-in API call that changes something needs X-CSRF-Token",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// Headers on every response: no framing, no sniffing, scripts and styles from here only.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{header, HeaderValue};
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn not_found(req: axum::extract::Request) -> Response {
    if is_api(req.uri().path()) {
        ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response()
    } else {
        let who = req.extensions().get::<auth::Who>().cloned();
        pages::error_page(who.as_ref(), StatusCode::NOT_FOUND, "There is no such page.")
    }
}

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("../../web/openapi.json")).into_response()
}

/// An error as JSON: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if !s.view.started.load(Ordering::Relaxed) {
        problems.push("state not restored yet".to_owned());
    }
    for (name, st) in s.sources.iter() {
        if !st.connected.load(Ordering::Relaxed) {
            problems.push(format!("source {name} not connected"));
        }
    }
    let model = s.model.as_ref().map(|m| m.current());
    let body = serde_json::json!({
        "ready": problems.is_empty(),
        "problems": problems,
        "model": model.map(|m| serde_json::json!({"name": m.package.name, "version": m.package.version})),
    });
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// `?limit=N&offset=M` on lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
    status: Option<String>,
    device_id: Option<String>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn page_limit(p: &Page) -> usize {
    p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
}

fn page<T: Serialize>(items: Vec<T>, p: &Page) -> Json<serde_json::Value> {
    let total = items.len();
    let offset = p.offset.unwrap_or(0).min(total);
    let limit = page_limit(p);
    let items: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
    page_json(total, offset, limit, items)
}

/// A page of a listing as the API gives it; `offset` is clamped to `total`.
fn page_json<T: Serialize>(total: usize, offset: usize, limit: usize, items: Vec<T>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "total": total, "offset": offset.min(total), "limit": limit, "items": items }))
}

async fn devices(State(s): State<AppState>, Query(p): Query<Page>) -> Result<Json<serde_json::Value>, ApiError> {
    let devices: Vec<DeviceView> = match s.view.devices.read() {
        Ok(d) => d.values().cloned().collect(),
        Err(_) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "device view unavailable")),
    };
    Ok(page(devices, &p))
}

async fn windows(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page_limit(&p);
    let ws = s.store.windows(&id, limit).map_err(internal)?;
    let items: Vec<serde_json::Value> = ws
        .iter()
        .map(|w| {
            serde_json::json!({
                "window_start": format_rfc3339(w.start_ms),
                "window_end": format_rfc3339(w.end_ms),
                "readings": w.readings,
                "fault_probability": w.score.is_finite().then_some(f64::from(w.score)),
                "model": w.model,
                "model_version": w.model_version,
                "update": w.update,
                "signals": w.signals.iter().map(|(n, mean, std)| serde_json::json!({"name": n, "mean": finite(*mean), "std": finite(*std)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "device_id": id, "items": items })))
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

pub(crate) fn internal(e: impl std::error::Error) -> ApiError {
    tracing::error!("HTTP: {}", crate::error_chain(&e));
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the state database could not be read; see the daemon's log")
}

async fn alerts(State(s): State<AppState>, Query(p): Query<Page>) -> Result<Json<serde_json::Value>, ApiError> {
    let want =
        status_filter(p.status.as_deref().unwrap_or("all")).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let device = p.device_id.as_deref();
    let (offset, limit) = (p.offset.unwrap_or(0), page_limit(&p));
    let keep = |h: &AlertHead<'_>| want.is_none_or(|w| h.status == w) && device.is_none_or(|d| h.device_id == d);
    let (total, list) = s.store.alerts_page(keep, offset, limit).map_err(internal)?;
    Ok(page_json(total, offset, limit, list.iter().map(Alert::to_json).collect()))
}

/// An alert status filter (`open`, `acknowledged`, `cleared`; `all`: none).
pub(crate) fn status_filter(s: &str) -> Result<Option<Status>, String> {
    match s {
        "all" => Ok(None),
        "open" => Ok(Some(Status::Open)),
        "acknowledged" => Ok(Some(Status::Acknowledged)),
        "cleared" => Ok(Some(Status::Cleared)),
        other => Err(format!("status {other:?}: use open, acknowledged, cleared or all")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges (default, when signed in or with a token: that name).
    by: Option<String>,
    comment: Option<String>,
}

fn operator(who: &auth::Who) -> Result<(), ApiError> {
    if who.may_change() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "this role reads only; an operator may change alerts and labels"))
    }
}

async fn ack(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<auth::Who>,
    Path(rest): Path<String>,
    body: Result<Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(alert_id) = rest.strip_suffix("/ack").map(str::to_owned) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such route: POST /api/v1/alerts/{alert_id}/ack"));
    };
    operator(&who)?;
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    // Signed in: the record names the account, and whom it acted for if that differs.
    let by = match (body.by.map(|b| b.trim().to_owned()), &who.name) {
        (Some(b), Some(n)) if !b.is_empty() && b != *n => format!("{b} (via {n})"),
        (_, Some(n)) => n.clone(),
        (Some(b), None) => b,
        (None, None) => String::new(),
    };
    if by.is_empty() || by.len() > 200 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "by: say who acknowledges (1 to 200 bytes)"));
    }
    if body.comment.as_ref().is_some_and(|c| c.len() > 2000) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "comment: at most 2000 bytes"));
    }
    let (reply, rx) = oneshot::channel();
    let cmd = Command::Ack { alert_id, by, comment: body.comment, reply };
    let result = ask(&s, cmd, rx).await?;
    match result {
        Ok(a) => Ok(Json(a.to_json())),
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

async fn label(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<auth::Who>,
    body: Result<Json<Label>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LabelOutcome>, ApiError> {
    operator(&who)?;
    let Json(label) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let (reply, rx) = oneshot::channel();
    match ask(&s, Command::Label { label, reply }, rx).await? {
        Ok(o) => Ok(Json(o)),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e)),
    }
}

/// `POST /api/v1/devices/{id}/baseline/reset`: the machine was serviced;
/// its baseline learns normal again from its next windows.
async fn reset_baseline(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<auth::Who>,
    Path(device_id): Path<String>,
) -> Result<Json<crate::scoring::BaselineStatus>, ApiError> {
    operator(&who)?;
    let by = who.name.clone().unwrap_or_else(|| "api".to_owned());
    let (reply, rx) = oneshot::channel();
    match ask(&s, Command::ResetBaseline { device_id, by, reply }, rx).await? {
        Ok(b) => Ok(Json(b)),
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

pub(crate) async fn ask<T>(s: &AppState, cmd: Command, rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
    let busy = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is shutting down");
    s.commands.send(cmd).await.map_err(|_| busy())?;
    tokio::time::timeout(std::time::Duration::from_secs(10), rx).await.map_err(|_| busy())?.map_err(|_| busy())
}

async fn model(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(h) = &s.model else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no [model] configured"));
    };
    let m = h.current();
    let p = &m.package;
    Ok(Json(serde_json::json!({
        "name": p.name,
        "version": p.version,
        "features": p.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "threshold": p.threshold,
        "input": p.input,
        "output": p.output,
    })))
}

/// Epoch milliseconds of a label time: RFC 3339 or a number.
pub fn label_time(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => crate::time::parse_cell(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_view_gives_its_times_as_rfc3339_text() {
        let mut d = DeviceView {
            device_id: Arc::from("pump-1"),
            last_window_end: Some(1_700_000_060_000),
            fault_probability: Some(0.25),
            open_alert: None,
            updated_at: 1_700_000_061_500,
            features: Some(Arc::from([1.0f32].as_slice())),
            baseline: None,
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({
                "device_id": "pump-1",
                "last_window_end": "2023-11-14T22:14:20Z",
                "fault_probability": 0.25,
                "open_alert": null,
                "updated_at": "2023-11-14T22:14:21.500Z",
            })
        );
        d.last_window_end = None;
        assert_eq!(serde_json::to_value(&d).unwrap()["last_window_end"], "", "no window yet");
    }

    #[test]
    fn the_openapi_document_is_json_and_names_every_api_route() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../../web/openapi.json")).expect("JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        for p in [
            "/api/v1/devices",
            "/api/v1/devices/{id}/windows",
            "/api/v1/alerts",
            "/api/v1/alerts/{alert_id}/ack",
            "/api/v1/model",
            "/api/v1/labels",
            "/api/v1/openapi.json",
            "/events",
            "/healthz",
            "/readyz",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p} documented");
        }
    }
}
