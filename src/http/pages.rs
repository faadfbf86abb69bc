//! The dashboard (SPEC 7): server-rendered pages that work without
//! JavaScript, forms for acknowledging alerts and recording maintenance
//! feedback (CSRF token in every form), sign-in, the live event stream,
//! and the two assets. Templates live in `web/templates` and are compiled in.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::auth::{Via, Who, LOGIN_COOKIE, SESSION_COOKIE};
use super::charts::Chart;
use super::{ask, AppState, Command, Label};
use crate::alerts::{Alert, AlertHead, Status};
use crate::time::format_rfc3339;

/// Windows drawn on a device page.
const CHART_WINDOWS: usize = 200;
/// Alerts per page of `/alerts`.
const ALERTS_PER_PAGE: usize = 50;

/// The header of every page.
pub struct Nav {
    page: &'static str,
    user: Option<String>,
    role: &'static str,
    csrf: String,
    /// Which live updates the page wants (`overview`, `device`, `alerts`; empty: none).
    live: &'static str,
    note: Option<&'static str>,
}

impl Nav {
    fn new(who: Option<&Who>, page: &'static str, live: &'static str, note: Option<&str>) -> Nav {
        Nav {
            page,
            user: who.filter(|w| w.via == Via::Session).and_then(|w| w.name.clone()),
            role: match who.map(|w| w.role) {
                Some(crate::config::Role::Operator) => "operator",
                _ => "viewer",
            },
            csrf: who.and_then(|w| w.csrf.clone()).unwrap_or_default(),
            live,
            note: note.and_then(|n| match n {
                "acknowledged" => Some("Alert acknowledged."),
                "fault" => Some("Recorded: the fault was confirmed."),
                "false" => Some("Recorded: false alarm."),
                "relearning" => Some("The baseline learns this machine's normal again from its next windows."),
                _ => None,
            }),
        }
    }
}

/// Percent-encodes `s` for a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` if it is a path on this site (so a redirect cannot leave it).
fn local(s: &str) -> Option<&str> {
    (s.starts_with('/') && !s.starts_with("//") && !s.starts_with("/\\") && !s.contains(['\r', '\n'])).then_some(s)
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("page: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn; see the daemon's log").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    message: String,
}

/// An HTML error page.
pub fn error_page(who: Option<&Who>, status: StatusCode, message: impl Into<String>) -> Response {
    let page = ErrorPage { nav: Nav::new(who, "", "", None), status: status.as_u16(), message: message.into() };
    (status, render(&page)).into_response()
}

type Opts = Vec<(&'static str, &'static str, bool)>;

fn options(choices: &[(&'static str, &'static str)], current: &str) -> Opts {
    choices.iter().map(|(v, l)| (*v, *l, *v == current)).collect()
}

fn fmt_p(p: Option<f64>) -> String {
    p.map_or_else(|| "–".to_owned(), |p| format!("{p:.3}"))
}

/// `critical` (alert open), `warning` (probability at or above 0.5) or `ok`.
fn class_of(open_alert: bool, p: Option<f64>) -> &'static str {
    if open_alert {
        "critical"
    } else if p.is_some_and(|p| p >= 0.5) {
        "warning"
    } else {
        "ok"
    }
}

// ---------------------------------------------------------------- overview

struct OverviewRow {
    device_id: String,
    href: String,
    probability: String,
    p: f64,
    last_window_end: String,
    updated_at: String,
    open_alert: String,
    class: &'static str,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    nav: Nav,
    devices: Vec<OverviewRow>,
    total: usize,
    filtered: bool,
    open: usize,
    acknowledged: usize,
    rate: String,
    model: String,
    q: String,
    state_options: Opts,
    sort: String,
    sort_links: (String, String, String),
}

#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    sort: String,
    note: Option<String>,
}

/// `GET /`: every device with its latest probability and open alert.
pub async fn overview(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let all: Vec<OverviewRow> = s
        .view
        .devices
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|d| OverviewRow {
            device_id: d.device_id.to_string(),
            href: format!("/devices/{}", enc(&d.device_id)),
            probability: fmt_p(d.fault_probability),
            p: d.fault_probability.unwrap_or(-1.0),
            last_window_end: d.last_window_end.map(format_rfc3339).unwrap_or_default(),
            updated_at: format_rfc3339(d.updated_at),
            open_alert: d.open_alert.clone().unwrap_or_default(),
            class: class_of(d.open_alert.is_some(), d.fault_probability),
        })
        .collect();
    let total = all.len();
    let needle = q.q.trim().to_lowercase();
    let mut devices: Vec<OverviewRow> = all
        .into_iter()
        .filter(|d| needle.is_empty() || d.device_id.to_lowercase().contains(&needle))
        .filter(|d| q.state.is_empty() || d.class == q.state)
        .collect();
    match q.sort.as_str() {
        "probability" => devices.sort_by(|a, b| b.p.total_cmp(&a.p).then_with(|| a.device_id.cmp(&b.device_id))),
        "window" => devices.sort_by(|a, b| b.last_window_end.cmp(&a.last_window_end)),
        // Devices with an open alert first, then by id.
        _ => devices.sort_by(|a, b| (a.class != "critical", &a.device_id).cmp(&(b.class != "critical", &b.device_id))),
    }
    let link = |sort: &str| format!("/?q={}&state={}&sort={sort}", enc(&q.q), enc(&q.state));
    let (open, acknowledged) = s.view.counts();
    let model = s
        .model
        .as_ref()
        .map(|m| m.current())
        .map_or_else(|| "none".to_owned(), |m| format!("{} version {}", m.package.name, m.package.version));
    let page = Overview {
        nav: Nav::new(Some(&who), "overview", "overview", q.note.as_deref()),
        filtered: devices.len() != total,
        devices,
        total,
        open,
        acknowledged,
        rate: format!("{:.1}", s.view.rate()),
        model,
        state_options: options(
            &[("", "any"), ("critical", "alert open"), ("warning", "probability ≥ 0.5"), ("ok", "ok")],
            &q.state,
        ),
        q: q.q.clone(),
        sort: q.sort.clone(),
        sort_links: (link("device"), link("probability"), link("window")),
    };
    render(&page)
}

// ---------------------------------------------------------------- alerts

pub struct AlertRow {
    alert_id: String,
    device_id: String,
    device_href: String,
    status: &'static str,
    severity: &'static str,
    /// Row colour: open red (warning: amber), acknowledged amber, cleared green.
    row_class: &'static str,
    probability: String,
    window_start: String,
    window_end: String,
    raised_at: String,
    acknowledged_by: Option<String>,
    comment: Option<String>,
    message: String,
    /// What raised it: `model <name> <version>`, `baseline v<version>`, or empty.
    origin: String,
    /// A baseline alert's contributing features with their shares.
    why: String,
}

/// `Temperature.mean 62 %, Pressure.mean 20 %`.
fn why(a: &Alert) -> String {
    a.contributions.iter().map(|(name, share)| format!("{name} {:.0} %", share * 100.0)).collect::<Vec<_>>().join(", ")
}

fn alert_row(a: &Alert) -> AlertRow {
    AlertRow {
        alert_id: a.alert_id.clone(),
        device_id: a.device_id.clone(),
        device_href: format!("/devices/{}", enc(&a.device_id)),
        status: a.status.as_str(),
        severity: a.severity.as_str(),
        row_class: match a.status {
            Status::Open => a.severity.as_str(),
            Status::Acknowledged => "warning",
            Status::Cleared => "ok",
        },
        probability: format!("{:.3}", a.fault_probability),
        window_start: format_rfc3339(a.window_start_ms),
        window_end: format_rfc3339(a.window_end_ms),
        raised_at: format_rfc3339(a.raised_at_ms),
        acknowledged_by: a.acknowledged_by.clone(),
        comment: a.comment.clone(),
        message: a.message.clone(),
        origin: match a.origin {
            crate::alerts::Origin::Model => format!("model {} {}", a.model, a.model_version),
            crate::alerts::Origin::Baseline => format!("baseline v{}", a.model_version),
            crate::alerts::Origin::Silence => String::new(),
        },
        why: why(a),
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    alerts: Vec<AlertRow>,
    actions: bool,
    back: String,
    total: usize,
    first: usize,
    last: usize,
    prev: Option<String>,
    next: Option<String>,
    status_options: Opts,
    severity_options: Opts,
    device_id: String,
    from: String,
    to: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    offset: usize,
    note: Option<String>,
}

impl AlertsQuery {
    fn to_query(&self, offset: usize) -> String {
        format!(
            "/alerts?status={}&severity={}&device_id={}&from={}&to={}&offset={offset}",
            enc(&self.status),
            enc(&self.severity),
            enc(&self.device_id),
            enc(&self.from),
            enc(&self.to)
        )
    }
}

/// A filter time: RFC 3339, or `YYYY-MM-DDTHH:MM` taken as UTC.
fn filter_time(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let padded = if s.len() == 16 { format!("{s}:00Z") } else { s.to_owned() };
    crate::time::parse_cell(&padded)
        .map(Some)
        .ok_or_else(|| format!("{s:?} is not a time like 2026-11-22T08:00 (UTC) or RFC 3339"))
}

/// `GET /alerts`: filter, acknowledge, give feedback.
pub async fn alerts(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let status = match super::status_filter(if q.status.is_empty() { "all" } else { &q.status }) {
        Ok(s) => s,
        Err(e) => return error_page(Some(&who), StatusCode::BAD_REQUEST, e),
    };
    let (from, to) = match (filter_time(&q.from), filter_time(&q.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error_page(Some(&who), StatusCode::BAD_REQUEST, e),
    };
    let keep = |a: &AlertHead<'_>| {
        status.is_none_or(|st| a.status == st)
            && (q.severity.is_empty() || a.severity.as_str() == q.severity)
            && (q.device_id.is_empty() || a.device_id == q.device_id)
            && from.is_none_or(|f| a.raised_at_ms >= f)
            && to.is_none_or(|t| a.raised_at_ms <= t)
    };
    let (total, list) = match s.store.alerts_page(keep, q.offset, ALERTS_PER_PAGE) {
        Ok(l) => l,
        Err(e) => return error_page(Some(&who), StatusCode::INTERNAL_SERVER_ERROR, super::internal(e).to_string()),
    };
    let offset = q.offset.min(total);
    let rows: Vec<AlertRow> = list.iter().map(alert_row).collect();
    let page = AlertsPage {
        nav: Nav::new(Some(&who), "alerts", "alerts", q.note.as_deref()),
        actions: who.may_change(),
        back: q.to_query(offset),
        total,
        first: offset + 1,
        last: offset + rows.len(),
        prev: (offset > 0).then(|| q.to_query(offset.saturating_sub(ALERTS_PER_PAGE))),
        next: (offset + rows.len() < total).then(|| q.to_query(offset + ALERTS_PER_PAGE)),
        alerts: rows,
        status_options: options(
            &[("all", "all"), ("open", "open"), ("acknowledged", "acknowledged"), ("cleared", "cleared")],
            if q.status.is_empty() { "all" } else { &q.status },
        ),
        severity_options: options(&[("", "any"), ("warning", "warning"), ("critical", "critical")], &q.severity),
        device_id: q.device_id.clone(),
        from: q.from.clone(),
        to: q.to.clone(),
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
pub struct AckForm {
    csrf: String,
    alert_id: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    back: String,
}

/// Checks what every changing form needs: an operator, and the caller's CSRF token.
fn may_post(who: &Who, csrf: &str) -> Result<(), Box<Response>> {
    if !who.csrf_ok(csrf) {
        return Err(Box::new(error_page(
            Some(who),
            StatusCode::FORBIDDEN,
            "The form's security token does not match your session: reload the page and try again.",
        )));
    }
    if !who.may_change() {
        return Err(Box::new(error_page(
            Some(who),
            StatusCode::FORBIDDEN,
            "Your role may read but not change alerts.",
        )));
    }
    Ok(())
}

/// A changing form's fields, once it is complete and its caller may post it.
fn accepted<T>(who: &Who, form: Result<Form<T>, FormRejection>, csrf: impl Fn(&T) -> &str) -> Result<T, Box<Response>> {
    let Ok(Form(f)) = form else {
        return Err(Box::new(error_page(Some(who), StatusCode::BAD_REQUEST, "The form is incomplete.")));
    };
    may_post(who, csrf(&f))?;
    Ok(f)
}

fn back_to(back: &str, note: &str) -> Response {
    let base = local(back).unwrap_or("/alerts");
    let sep = if base.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{base}{sep}note={note}")).into_response()
}

/// `POST /alerts/ack` (form).
pub async fn ack_form(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    form: Result<Form<AckForm>, FormRejection>,
) -> Response {
    let f = match accepted(&who, form, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let by = match &who.name {
        Some(n) => n.clone(),
        None => f.by.trim().to_owned(),
    };
    if by.is_empty() || by.len() > 200 {
        return error_page(Some(&who), StatusCode::BAD_REQUEST, "Say who acknowledges (1 to 200 characters).");
    }
    if f.comment.len() > 2000 {
        return error_page(Some(&who), StatusCode::BAD_REQUEST, "The comment may be at most 2000 bytes.");
    }
    let comment = Some(f.comment.trim().to_owned()).filter(|c| !c.is_empty());
    let (reply, rx) = tokio::sync::oneshot::channel();
    match ask(&s, Command::Ack { alert_id: f.alert_id, by, comment, reply }, rx).await {
        Ok(Ok(_)) => back_to(&f.back, "acknowledged"),
        Ok(Err(e)) => error_page(Some(&who), StatusCode::NOT_FOUND, e),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct FeedbackForm {
    csrf: String,
    alert_id: String,
    fault: bool,
    #[serde(default)]
    back: String,
}

/// `POST /alerts/feedback` (form): a label over the alert's window.
pub async fn feedback_form(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    form: Result<Form<FeedbackForm>, FormRejection>,
) -> Response {
    let f = match accepted(&who, form, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let alert = match s.store.alert(&f.alert_id) {
        Ok(a) => a,
        Err(e) => return error_page(Some(&who), StatusCode::INTERNAL_SERVER_ERROR, super::internal(e).to_string()),
    };
    let Some(a) = alert else {
        return error_page(Some(&who), StatusCode::NOT_FOUND, format!("No alert {:?}.", f.alert_id));
    };
    let label = Label {
        device_id: a.device_id.clone(),
        start: serde_json::json!(a.window_start_ms),
        end: serde_json::json!(a.window_end_ms),
        fault: f.fault,
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    match ask(&s, Command::Label { label, reply }, rx).await {
        Ok(Ok(_)) => back_to(&f.back, if f.fault { "fault" } else { "false" }),
        Ok(Err(e)) => error_page(Some(&who), StatusCode::BAD_REQUEST, e),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------- device

struct FeatureRow {
    name: String,
    value: String,
    p05: String,
    p50: String,
    p95: String,
    outside: bool,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    nav: Nav,
    device_id: String,
    class: &'static str,
    state: &'static str,
    probability: String,
    last_window_end: String,
    windows: usize,
    probability_chart: String,
    signal_charts: Vec<(String, String)>,
    features: Vec<FeatureRow>,
    features_from: String,
    alerts: Vec<AlertRow>,
    actions: bool,
    back: String,
    baseline: Option<BaselineInfo>,
}

/// The device's baseline as its page shows it.
struct BaselineInfo {
    /// `learning`, `active`.
    state: &'static str,
    have: usize,
    need: usize,
    version: u32,
    since: String,
    /// The latest window's T² and Q over their limits, if scored since start.
    latest: Option<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    csrf: String,
    device_id: String,
}

/// `POST /devices/baseline/reset` (form): the machine was serviced; learn its normal again.
pub async fn reset_form(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let f = match accepted(&who, form, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let by = who.name.clone().unwrap_or_else(|| "dashboard".to_owned());
    let back = format!("/devices/{}", enc(&f.device_id));
    let (reply, rx) = tokio::sync::oneshot::channel();
    match ask(&s, Command::ResetBaseline { device_id: f.device_id, by, reply }, rx).await {
        Ok(Ok(_)) => back_to(&back, "relearning"),
        Ok(Err(e)) => error_page(Some(&who), StatusCode::NOT_FOUND, e),
        Err(e) => e.into_response(),
    }
}

/// A number for a table: short, and `–` for none.
fn short(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let a = v.abs();
            if a != 0.0 && !(0.001..100_000.0).contains(&a) {
                format!("{v:.3e}")
            } else {
                format!("{v:.4}")
            }
        }
        _ => "–".to_owned(),
    }
}

/// The training reference of a feature (`[training.reference."<feature>"]` of model.toml).
fn reference(training: Option<&toml::Table>, feature: &str, key: &str) -> Option<f64> {
    let r = training?.get("reference")?.as_table()?.get(feature)?.as_table()?.get(key)?;
    r.as_float().or_else(|| r.as_integer().map(|i| i as f64))
}

/// `GET /devices/{id}`: charts of the recent windows, the model input, the alert history.
pub async fn device(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Path(id): Path<String>,
    q: Result<Query<DeviceQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let live = s.view.devices.read().unwrap_or_else(|e| e.into_inner()).get(id.as_str()).cloned();
    let mut windows = match s.store.windows(&id, CHART_WINDOWS) {
        Ok(w) => w,
        Err(e) => return error_page(Some(&who), StatusCode::INTERNAL_SERVER_ERROR, super::internal(e).to_string()),
    };
    if live.is_none() && windows.is_empty() {
        return error_page(Some(&who), StatusCode::NOT_FOUND, format!("No device {id:?} has closed a window."));
    }
    // Oldest first for the charts; a late update replaces its window.
    windows.reverse();
    windows.dedup_by(|later, earlier| later.start_ms == earlier.start_ms && later.update);
    let times: Vec<i64> = windows.iter().map(|w| w.end_ms).collect();
    let model = s.model.as_ref().map(|m| m.current());
    let threshold = model.as_ref().and_then(|m| m.package.threshold);
    let level_label = threshold.map(|t| format!("threshold {t}"));
    let probability_chart = Chart {
        title: &format!("fault probability of {id}"),
        times: times.clone(),
        values: windows.iter().map(|w| w.score.is_finite().then_some(f64::from(w.score))).collect(),
        band: None,
        y_range: Some((0.0, 1.0)),
        level: threshold.zip(level_label.as_deref()),
        small: false,
    }
    .svg();
    let mut names: Vec<&str> = Vec::new();
    for w in &windows {
        for (n, _, _) in &w.signals {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let signal_charts = names
        .iter()
        .map(|name| {
            let stat = |w: &crate::state::WindowRecord| {
                w.signals.iter().find(|(n, _, _)| n == name).map(|(_, m, sd)| (*m, *sd))
            };
            let chart = Chart {
                title: name,
                times: times.clone(),
                values: windows.iter().map(|w| stat(w).map(|(m, _)| m).filter(|m| m.is_finite())).collect(),
                band: Some(
                    windows
                        .iter()
                        .map(|w| {
                            stat(w).filter(|(m, sd)| m.is_finite() && sd.is_finite()).map(|(m, sd)| (m - sd, m + sd))
                        })
                        .collect(),
                ),
                y_range: None,
                level: None,
                small: true,
            };
            ((*name).to_owned(), chart.svg())
        })
        .collect();

    let history: Vec<Alert> =
        s.store.alerts_page(|h| h.device_id == id, 0, ALERTS_PER_PAGE).map(|(_, l)| l).unwrap_or_default();
    // The model input: the latest window's, or else the latest alert's.
    let mut features = Vec::new();
    let mut features_from = String::new();
    if let Some(m) = &model {
        let training = m.package.training.as_ref();
        let named: Option<Vec<(String, f64)>> = match live.as_ref().and_then(|d| d.features.clone()) {
            Some(row) if row.len() == m.package.features.len() => {
                features_from = "the latest window".to_owned();
                Some(m.package.features.iter().zip(row.iter()).map(|(f, v)| (f.name.clone(), f64::from(*v))).collect())
            }
            _ => history.first().filter(|a| !a.features.is_empty()).map(|a| {
                features_from = format!("the window behind alert {}", a.alert_id);
                a.features.iter().map(|(k, v)| (k.to_owned(), v)).collect()
            }),
        };
        for (name, v) in named.unwrap_or_default() {
            let (p05, p50, p95) = (
                reference(training, &name, "p05"),
                reference(training, &name, "p50"),
                reference(training, &name, "p95"),
            );
            let outside = matches!((p05, p95), (Some(lo), Some(hi)) if v < lo || v > hi);
            features.push(FeatureRow {
                value: short(Some(v)),
                p05: short(p05),
                p50: short(p50),
                p95: short(p95),
                outside,
                name,
            });
        }
    }
    let p = live.as_ref().and_then(|d| d.fault_probability);
    let open = live.as_ref().is_some_and(|d| d.open_alert.is_some());
    let class = class_of(open, p);
    let page = DevicePage {
        nav: Nav::new(Some(&who), "", "device", q.note.as_deref()),
        class,
        state: match class {
            "critical" => "alert open",
            "warning" => "elevated",
            _ => "ok",
        },
        probability: fmt_p(p),
        last_window_end: live.as_ref().and_then(|d| d.last_window_end).map(format_rfc3339).unwrap_or_default(),
        windows: windows.len(),
        probability_chart,
        signal_charts,
        features,
        features_from,
        alerts: history.iter().map(alert_row).collect(),
        actions: who.may_change(),
        back: format!("/devices/{}", enc(&id)),
        baseline: live.as_ref().and_then(|d| d.baseline.as_ref()).map(|b| BaselineInfo {
            state: b.state,
            have: b.have,
            need: b.need,
            version: b.version,
            since: b.since_ms.map(format_rfc3339).unwrap_or_default(),
            latest: b.t2_ratio.zip(b.q_ratio).map(|(t, q)| (format!("{t:.2}"), format!("{q:.2}"))),
        }),
        device_id: id,
    };
    render(&page)
}

// ---------------------------------------------------------------- models

struct ModelFeature {
    name: String,
    signal: String,
    fill: String,
    mean: String,
    p05: String,
    p95: String,
}

struct ModelInfo {
    name: String,
    version: String,
    dir: String,
    input: String,
    output: String,
    threshold: String,
    previous: Option<String>,
    training: Vec<(String, String)>,
    features: Vec<ModelFeature>,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    model: Option<ModelInfo>,
}

/// `GET /models`: the active package.
pub async fn models(State(s): State<AppState>, Extension(who): Extension<Who>) -> Response {
    let model = s.model.as_ref().map(|h| {
        let m = h.current();
        let p = &m.package;
        let training = p.training.as_ref();
        ModelInfo {
            name: p.name.clone(),
            version: p.version.clone(),
            dir: h.dir().display().to_string(),
            input: p.input.clone(),
            output: p.output.clone(),
            threshold: p.threshold.map_or_else(|| "from [alerts] threshold".to_owned(), |t| t.to_string()),
            previous: h.previous().map(|m| format!("{} version {}", m.package.name, m.package.version)),
            training: training
                .map(|t| {
                    t.iter()
                        .filter(|(k, _)| k.as_str() != "reference")
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| serde_json::to_string(v).unwrap_or_default(), str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            features: p
                .features
                .iter()
                .map(|f| ModelFeature {
                    name: f.name.clone(),
                    signal: f.signal.clone(),
                    fill: short(Some(f64::from(f.fill))),
                    mean: short(reference(training, &f.name, "mean")),
                    p05: short(reference(training, &f.name, "p05")),
                    p95: short(reference(training, &f.name, "p95")),
                })
                .collect(),
        }
    });
    render(&ModelsPage { nav: Nav::new(Some(&who), "models", "", None), model })
}

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    csrf: String,
    next: String,
    error: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

fn login_page(s: &AppState, next: &str, error: Option<&'static str>) -> Response {
    let token = super::auth::random_token();
    let page = LoginPage {
        nav: Nav::new(None, "", "", None),
        csrf: token.clone(),
        next: local(next).unwrap_or("/").to_owned(),
        error,
    };
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let cookie = s.auth.set_cookie(LOGIN_COOKIE, &token, "/login");
    (status, [(header::SET_COOKIE, cookie)], render(&page)).into_response()
}

/// `GET /login`.
pub async fn login_form(State(s): State<AppState>, q: Result<Query<NextQuery>, QueryRejection>) -> Response {
    if !s.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    login_page(&s, &q.next, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    csrf: String,
    name: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a session cookie, or the form again.
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !s.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let Ok(Form(f)) = form else {
        return login_page(&s, "/", Some("Fill in your name and password."));
    };
    // The form must come from a sign-in page this browser fetched.
    let bound = super::auth::cookie(&headers, LOGIN_COOKIE).is_some_and(|c| !c.is_empty() && c == f.csrf);
    if !bound {
        return login_page(&s, &f.next, Some("The sign-in form expired: try again."));
    }
    if f.name.len() > 100 || f.password.len() > 1000 {
        return login_page(&s, &f.next, Some("Wrong name or password."));
    }
    match s.auth.sign_in(&f.name, &f.password).await {
        Some(id) => {
            tracing::info!(user = %f.name, "signed in");
            let next = local(&f.next).unwrap_or("/").to_owned();
            let mut r = Redirect::to(&next).into_response();
            let h = r.headers_mut();
            for c in [s.auth.set_cookie(SESSION_COOKIE, &id, "/"), s.auth.set_cookie(LOGIN_COOKIE, "", "/login")] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            r
        }
        None => {
            tracing::warn!(user = %f.name, "sign-in refused");
            login_page(&s, &f.next, Some("Wrong name or password."))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| who.csrf_ok(&f.csrf)) {
        return error_page(Some(&who), StatusCode::FORBIDDEN, "The form's security token does not match your session.");
    }
    s.auth.sign_out(&headers);
    ([(header::SET_COOKIE, s.auth.set_cookie(SESSION_COOKIE, "", "/"))], Redirect::to("/login")).into_response()
}

// ---------------------------------------------------------------- live

/// `GET /events`: Server-Sent Events — `device` (a device's new latest
/// window), `alert` (an alert record), `counts` (open and acknowledged
/// alerts), `rate` (readings per second, every 2 s).
pub async fn events(State(s): State<AppState>) -> Response {
    let Ok(permit) = s.live.clone().try_acquire_owned() else {
        return super::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many live pages open; reload later")
            .into_response();
    };
    let rx = s.view.subscribe();
    let (open, acknowledged) = s.view.counts();
    let first = Event::default()
        .event("counts")
        .data(serde_json::json!({"open": open, "acknowledged": acknowledged}).to_string());
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (rx, tick, s.view.clone(), s.stop.clone(), permit);
    let rest = futures_util::stream::unfold(state, |(mut rx, mut tick, view, mut stop, permit)| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = tokio::select! {
            m = rx.recv() => match m {
                Ok((name, data)) => Event::default().event(name).data(&*data),
                // Too slow a reader: the page reloads what it missed.
                Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
                Err(RecvError::Closed) => return None,
            },
            _ = tick.tick() => Event::default().event("rate").data(serde_json::json!({"readings_per_s": view.rate()}).to_string()),
            _ = stop.wait_for(|s| *s) => return None,
        };
        Some((Ok::<_, Infallible>(event), (rx, tick, view, stop, permit)))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(first) }), rest);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

// ---------------------------------------------------------------- assets

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("../../web/assets/style.css"))
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../../web/assets/app.js"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_keeps_redirects_local() {
        assert_eq!(enc("pump 7/a<b>"), "pump%207%2Fa%3Cb%3E");
        assert_eq!(local("/alerts?x=1"), Some("/alerts?x=1"));
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "alerts", "/a\r\nSet-Cookie: x"] {
            assert_eq!(local(bad), None, "{bad}");
        }
        assert_eq!(filter_time("2026-11-22T08:00"), Ok(Some(1_795_334_400_000)));
        assert_eq!(filter_time(""), Ok(None));
        assert!(filter_time("soon").is_err());
    }
}
