//! The HTTP side (SPEC 7): health, readiness and the JSON API. Handlers
//! read the sled store and the processing loop's [`View`]; what changes
//! state (acknowledging an alert, a label) goes to the processing loop as
//! a [`Command`], so the alert policy has one owner.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::alerts::{Alert, Status};
use crate::model::ModelHandle;
use crate::state::Store;
use crate::time::format_rfc3339;

/// What the dashboard shows of a device, kept by the processing loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    pub device_id: String,
    /// End of the latest closed window (RFC 3339).
    pub last_window_end: String,
    /// Its fault probability (null: not scored).
    pub fault_probability: Option<f64>,
    /// The alert not cleared, if any.
    pub open_alert: Option<String>,
    /// Processing time the latest window closed (RFC 3339).
    pub updated_at: String,
}

/// The processing loop's state as the HTTP side sees it.
#[derive(Debug, Default)]
pub struct View {
    pub devices: RwLock<BTreeMap<String, DeviceView>>,
    /// The daemon restored its state and started its sources.
    pub started: AtomicBool,
}

/// What the HTTP side asks of the processing loop.
#[derive(Debug)]
pub enum Command {
    Ack { alert_id: String, by: String, comment: Option<String>, reply: oneshot::Sender<Result<Alert, String>> },
    Label { label: Label, reply: oneshot::Sender<Result<LabelOutcome, String>> },
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
}

/// Requests larger than this are refused (413).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/windows", get(windows))
        .route("/api/v1/alerts", get(alerts))
        // Alert ids hold a `/` (SPEC 4: `pump-7/2026-...`): taken whole, encoded or not.
        .route("/api/v1/alerts/{*alert_id_ack}", post(ack))
        .route("/api/v1/model", get(model))
        .route("/api/v1/labels", post(label))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// One device's row on the overview.
struct OverviewRow {
    device_id: String,
    probability: String,
    last_window_end: String,
    open_alert: String,
    /// `critical` (alert open), `warning` (probability at or above 0.5) or `ok`.
    class: &'static str,
}

#[derive(askama::Template)]
#[template(path = "overview.html")]
struct Overview {
    devices: Vec<OverviewRow>,
    open: usize,
    acknowledged: usize,
    model: String,
}

/// `GET /`: every device with its latest probability and open alert.
async fn overview(State(s): State<AppState>) -> Response {
    use askama::Template as _;
    let devices: Vec<OverviewRow> = match s.view.devices.read() {
        Ok(d) => d
            .values()
            .map(|d| OverviewRow {
                device_id: d.device_id.clone(),
                probability: d.fault_probability.map_or_else(|| "–".to_owned(), |p| format!("{p:.3}")),
                last_window_end: d.last_window_end.clone(),
                open_alert: d.open_alert.clone().unwrap_or_default(),
                class: if d.open_alert.is_some() {
                    "critical"
                } else if d.fault_probability.is_some_and(|p| p >= 0.5) {
                    "warning"
                } else {
                    "ok"
                },
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let alerts = s.store.alerts().unwrap_or_default();
    let count = |st: Status| alerts.iter().filter(|a| a.status == st).count();
    let model = s
        .model
        .as_ref()
        .map(|m| m.current())
        .map_or_else(|| "none".to_owned(), |m| format!("{} version {}", m.package.name, m.package.version));
    let page = Overview { devices, open: count(Status::Open), acknowledged: count(Status::Acknowledged), model };
    match page.render() {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!("overview page: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn").into_response()
        }
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

fn page<T: Serialize>(items: Vec<T>, p: &Page) -> Json<serde_json::Value> {
    let total = items.len();
    let offset = p.offset.unwrap_or(0).min(total);
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let items: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
    Json(serde_json::json!({ "total": total, "offset": offset, "limit": limit, "items": items }))
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
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
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

fn internal(e: impl std::error::Error) -> ApiError {
    tracing::error!("HTTP: {}", crate::error_chain(&e));
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the state database could not be read; see the daemon's log")
}

async fn alerts(State(s): State<AppState>, Query(p): Query<Page>) -> Result<Json<serde_json::Value>, ApiError> {
    let want = match p.status.as_deref().unwrap_or("all") {
        "all" => None,
        "open" => Some(Status::Open),
        "acknowledged" => Some(Status::Acknowledged),
        "cleared" => Some(Status::Cleared),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("status {other:?}: use open, acknowledged, cleared or all"),
            ))
        }
    };
    let mut list = s.store.alerts().map_err(internal)?;
    list.retain(|a| want.is_none_or(|w| a.status == w));
    if let Some(d) = &p.device_id {
        list.retain(|a| &a.device_id == d);
    }
    // Newest first.
    list.sort_by(|a, b| b.updated_at_ms.cmp(&a.updated_at_ms).then_with(|| a.alert_id.cmp(&b.alert_id)));
    Ok(page(list.iter().map(Alert::to_json).collect(), &p))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges.
    by: String,
    comment: Option<String>,
}

async fn ack(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    body: Result<Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(alert_id) = rest.strip_suffix("/ack").map(str::to_owned) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such route: POST /api/v1/alerts/{alert_id}/ack"));
    };
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if body.by.trim().is_empty() || body.by.len() > 200 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "by: say who acknowledges (1 to 200 bytes)"));
    }
    if body.comment.as_ref().is_some_and(|c| c.len() > 2000) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "comment: at most 2000 bytes"));
    }
    let (reply, rx) = oneshot::channel();
    let cmd = Command::Ack { alert_id, by: body.by, comment: body.comment, reply };
    let result = ask(&s, cmd, rx).await?;
    match result {
        Ok(a) => Ok(Json(a.to_json())),
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

async fn label(
    State(s): State<AppState>,
    body: Result<Json<Label>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LabelOutcome>, ApiError> {
    let Json(label) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let (reply, rx) = oneshot::channel();
    match ask(&s, Command::Label { label, reply }, rx).await? {
        Ok(o) => Ok(Json(o)),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e)),
    }
}

async fn ask<T>(s: &AppState, cmd: Command, rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
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
