//! Alerts (SPEC 4): when a device's scored windows open, escalate, clear
//! or acknowledge an alert. Pure logic, no I/O: the daemon feeds it window
//! results and stores what it returns.
//!
//! - A window is *bad* at or above the lowest band (`alerts.warning` if set,
//!   else `alerts.threshold`); `raise_after` consecutive bad windows open an
//!   alert, with the severity of the band reached (critical at or above the
//!   threshold). A worse window raises the severity in place.
//! - A window is *good* below the lowest band minus `hysteresis`;
//!   `clear_after` consecutive good windows clear the alert. Windows between
//!   the two break both streaks, so a score hovering at the threshold does
//!   not flap.
//! - At most one alert per device is not cleared. Acknowledging keeps it
//!   open until it clears.
//! - Streaks are counted over the device's last windows in window order,
//!   so a late update that changes a window's score counts as if it had
//!   come in time; what was already emitted stays emitted.
//! - A device silent past `idle_timeout` gets an alert "device silent"
//!   (warning), cleared when it reports again.
//! - `alert_id` = `<device>/<start of the window that opened it>`: the
//!   same alert after a restart or a redelivery is recognisably the same.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Alert status (SPEC 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Acknowledged,
    Cleared,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Cleared => "cleared",
        }
    }
}

/// Severity, in rising order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The ONNX model's fault probability.
    Model,
    /// The device stopped reporting.
    Silence,
    /// The device's own baseline of normal ([`crate::baseline`]).
    Baseline,
}

/// A window's feature values by name. The names are shared with the model
/// that scored the window (one allocation per model, not per alert):
/// 10,000 open alerts of 56 features held ~36 MB as `Vec<(String, f64)>`,
/// 4.5 MB like this. Serialised as a sequence of `(name, value)` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    names: std::sync::Arc<[String]>,
    values: Vec<f64>,
}

impl Features {
    /// Pairs `names` with `values`; extra entries of either are left out.
    pub fn new(names: std::sync::Arc<[String]>, values: impl IntoIterator<Item = f64>) -> Features {
        let mut values: Vec<f64> = values.into_iter().take(names.len()).collect();
        values.shrink_to_fit();
        Features { names, values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The names, shared with the model (more than the values when fewer were given).
    pub fn names(&self) -> &std::sync::Arc<[String]> {
        &self.names
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.names.iter().map(String::as_str).zip(self.values.iter().copied())
    }
}

impl FromIterator<(String, f64)> for Features {
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(pairs: I) -> Features {
        let (names, values): (Vec<String>, Vec<f64>) = pairs.into_iter().unzip();
        Features { names: names.into(), values }
    }
}

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Features, D::Error> {
        Ok(Vec::<(String, f64)>::deserialize(d)?.into_iter().collect())
    }
}

/// One alert record: every change of an alert is a new record with the same `alert_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub device_id: String,
    pub status: Status,
    pub severity: Severity,
    pub origin: Origin,
    /// The probability of the window behind this record.
    pub fault_probability: f64,
    /// The band's level the alert's severity stands for.
    pub threshold: f64,
    /// The window that opened the alert (epoch ms).
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub model: String,
    pub model_version: String,
    pub message: String,
    /// When the alert opened (processing time, epoch ms).
    pub raised_at_ms: i64,
    /// When this record was made.
    pub updated_at_ms: i64,
    pub acknowledged_by: Option<String>,
    pub comment: Option<String>,
    /// The feature values of the window behind this record.
    pub features: Features,
    /// For a baseline alert, the features that moved the window away from
    /// the device's normal, each with its share of the score, largest
    /// first. Last, and read as empty when absent: records stored before
    /// it existed still decode.
    #[serde(default, deserialize_with = "trailing_features")]
    pub contributions: Features,
}

/// The fields of a stored [`Alert`] record before its feature lists,
/// borrowed from the record's bytes: enough to filter, count and order the
/// alert history without decoding the features (two lists of names and
/// values, most of a record). Postcard stores fields in order, without
/// names, so these must be [`Alert`]'s first fields in its order; a test
/// holds the two together.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct AlertHead<'a> {
    pub alert_id: &'a str,
    pub device_id: &'a str,
    pub status: Status,
    pub severity: Severity,
    pub origin: Origin,
    pub fault_probability: f64,
    pub threshold: f64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub model: &'a str,
    pub model_version: &'a str,
    pub message: &'a str,
    pub raised_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A trailing field added to a stored (postcard) record: the end of an
/// older record reads as empty instead of failing.
fn trailing_features<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Features, D::Error> {
    Ok(Features::deserialize(d).unwrap_or_default())
}

impl Alert {
    /// The record as SPEC 4's JSON (RFC 3339 times; our extra fields
    /// alongside), for the HTTP side.
    pub fn to_json(&self) -> serde_json::Value {
        // Cannot fail: every key is a string and every part serialises.
        serde_json::to_value(AlertJson::of(self)).unwrap_or_default()
    }

    /// [`Alert::to_json`] as text, written straight from the record: the
    /// payload of the alert topic's records. Building the `Value` first
    /// (a map entry and a string per feature) took 2.5 times as long:
    /// 1.7-4.1 ms for a batch of 64 in the daemon under load, before the
    /// first of them went to Kafka (benches/RESULTS.md).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&AlertJson::of(self)).unwrap_or_default()
    }
}

/// An [`Alert`] as its JSON, borrowed. The fields are in the order of
/// their names, and so are the features: the text is what `Value`'s
/// sorted maps gave before (a test holds the two together).
#[derive(Serialize)]
struct AlertJson<'a> {
    acknowledged_by: &'a Option<String>,
    alert_id: &'a str,
    comment: &'a Option<String>,
    /// A baseline alert's shares; absent on other alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    contributions: Option<FeatureMap<'a>>,
    device_id: &'a str,
    /// `null` when not finite (a silence alert's), as is `threshold`.
    fault_probability: f64,
    features: FeatureMap<'a>,
    message: &'a str,
    model: &'a str,
    model_version: &'a str,
    origin: Origin,
    raised_at: String,
    severity: Severity,
    status: Status,
    threshold: f64,
    updated_at: String,
    window_end: String,
    window_start: String,
}

impl<'a> AlertJson<'a> {
    fn of(a: &'a Alert) -> AlertJson<'a> {
        use crate::time::format_rfc3339 as t;
        AlertJson {
            acknowledged_by: &a.acknowledged_by,
            alert_id: &a.alert_id,
            comment: &a.comment,
            contributions: (!a.contributions.is_empty())
                .then_some(FeatureMap { features: &a.contributions, finite_only: false }),
            device_id: &a.device_id,
            fault_probability: a.fault_probability,
            features: FeatureMap { features: &a.features, finite_only: true },
            message: &a.message,
            model: &a.model,
            model_version: &a.model_version,
            origin: a.origin,
            raised_at: t(a.raised_at_ms),
            severity: a.severity,
            status: a.status,
            threshold: a.threshold,
            updated_at: t(a.updated_at_ms),
            window_end: t(a.window_end_ms),
            window_start: t(a.window_start_ms),
        }
    }
}

/// Features as a JSON object, by name; a name given twice keeps its last
/// value. `finite_only` leaves out values that are not finite (else `null`).
struct FeatureMap<'a> {
    features: &'a Features,
    finite_only: bool,
}

impl Serialize for FeatureMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut pairs: Vec<(&str, f64)> =
            self.features.iter().filter(|(_, v)| !self.finite_only || v.is_finite()).collect();
        // Stable: of equal names, the last given ends its run and is kept.
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut map = s.serialize_map(None)?;
        for (i, (name, value)) in pairs.iter().enumerate() {
            if pairs.get(i + 1).is_some_and(|next| next.0 == *name) {
                continue;
            }
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// `[alerts]` as the policy uses it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Critical band, and the raise level when there is no warning band.
    pub threshold: f64,
    /// Optional lower band: at or above it a window is bad, severity warning.
    pub warning: Option<f64>,
    pub raise_after: u32,
    pub clear_after: u32,
    pub hysteresis: f64,
}

impl PolicyConfig {
    /// The lowest band: at or above it a window is bad.
    pub fn raise_level(&self) -> f64 {
        self.warning.map_or(self.threshold, |w| w.min(self.threshold))
    }

    fn severity(&self, p: f64) -> Severity {
        if p >= self.threshold {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    fn level_of(&self, s: Severity) -> f64 {
        match s {
            Severity::Critical => self.threshold,
            Severity::Warning => self.raise_level(),
        }
    }
}

/// A scored window, as the policy sees it.
#[derive(Clone, Copy)]
pub struct WindowScore<'a> {
    pub device_id: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub probability: f64,
    /// What the probability comes from: the model or the device's baseline.
    pub origin: Origin,
    /// The model (or `baseline`) and its version behind the probability.
    pub model: &'a str,
    pub model_version: &'a str,
    /// The window's feature values, asked for only when a record is made.
    pub features: &'a dyn Fn() -> Features,
    /// A baseline's contributing features, likewise ([`Alert::contributions`]).
    pub contributions: &'a dyn Fn() -> Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Scored {
    start_ms: i64,
    end_ms: i64,
    p: f64,
}

/// A device's alert state; serialisable so the daemon can keep it in sled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The last windows by start, at most `max(raise_after, clear_after)`.
    recent: Vec<Scored>,
    /// The alert that is not cleared, if any, without its feature values
    /// and contributions: the records the policy makes carry them, and
    /// the alert's latest record in the store has them. They do not change
    /// while the state does at every window; 10,000 open alerts held
    /// ~4.5 MB of them, and at a window close they were most of a
    /// checkpoint. Boxed: the policy's table of 10,000 device states held
    /// a whole alert in every slot, with or without one (5.8 MB at its
    /// resize).
    current: Option<Box<Alert>>,
}

/// `a` without its feature values and contributions, as the policy keeps it.
fn head_of(a: &Alert) -> Box<Alert> {
    Box::new(Alert { features: Features::default(), contributions: Features::default(), ..a.clone() })
}

impl DeviceState {
    /// The device's alert that is not cleared, if any.
    pub fn current(&self) -> Option<&Alert> {
        self.current.as_deref()
    }

    /// The latest window scored: its end and fault probability.
    pub fn latest(&self) -> Option<(i64, f64)> {
        self.recent.last().map(|s| (s.end_ms, s.p))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no alert {0:?} is open")]
    NotOpen(String),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Records emitted by severity (open or escalated), `[warning, critical]`.
    pub raised: [u64; 2],
    pub cleared: u64,
    pub acknowledged: u64,
    /// Windows with a NaN score (not evaluated).
    pub unscored: u64,
    /// Late results for windows older than the streaks look at.
    pub stale: u64,
}

/// The alert state of every device.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyConfig,
    devices: HashMap<String, DeviceState>,
    counters: PolicyCounters,
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Self {
        Policy { cfg, devices: HashMap::new(), counters: PolicyCounters::default() }
    }

    /// New thresholds (config reload, new model); open alerts stay.
    pub fn set_config(&mut self, cfg: PolicyConfig) {
        self.cfg = cfg;
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &PolicyCounters {
        &self.counters
    }

    fn keep(&self) -> usize {
        self.cfg.raise_after.max(self.cfg.clear_after).max(1) as usize
    }

    /// Takes one scored window (new, or an update of an earlier one) at
    /// processing time `now_ms`; returns the records it causes.
    pub fn observe(&mut self, w: &WindowScore<'_>, now_ms: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        if !w.probability.is_finite() {
            self.counters.unscored += 1;
            return out;
        }
        let cfg = self.cfg;
        let keep = self.keep();
        let st = self.devices.entry(w.device_id.to_owned()).or_default();

        // A device that reports is not silent.
        if let Some(a) = st.current.as_mut().filter(|a| a.origin == Origin::Silence) {
            a.status = Status::Cleared;
            a.updated_at_ms = now_ms;
            a.message = "device reporting again".into();
            // The alert leaves the state: its last record moves out, no copy.
            out.extend(st.current.take().map(|a| *a));
            self.counters.cleared += 1;
        }

        let scored = Scored { start_ms: w.start_ms, end_ms: w.end_ms, p: w.probability };
        match st.recent.binary_search_by_key(&w.start_ms, |s| s.start_ms) {
            Ok(i) => st.recent[i] = scored,
            Err(0) if st.recent.len() >= keep => {
                self.counters.stale += 1;
                return out;
            }
            Err(i) => st.recent.insert(i, scored),
        }
        if st.recent.len() > keep {
            let excess = st.recent.len() - keep;
            st.recent.drain(..excess);
        }
        let latest = *st.recent.last().unwrap_or(&scored);
        let bad = |s: &Scored| s.p >= cfg.raise_level();
        let good = |s: &Scored| s.p < cfg.raise_level() - cfg.hysteresis;
        let bad_run = st.recent.iter().rev().take_while(|s| bad(s)).count();
        let good_run = st.recent.iter().rev().take_while(|s| good(s)).count();

        match st.current.as_mut() {
            None if bad_run >= cfg.raise_after as usize => {
                let severity = cfg.severity(latest.p);
                let a = Alert {
                    alert_id: format!("{}/{}", w.device_id, crate::time::format_rfc3339(latest.start_ms)),
                    device_id: w.device_id.to_owned(),
                    status: Status::Open,
                    severity,
                    origin: w.origin,
                    fault_probability: latest.p,
                    threshold: cfg.level_of(severity),
                    window_start_ms: latest.start_ms,
                    window_end_ms: latest.end_ms,
                    model: w.model.to_owned(),
                    model_version: w.model_version.to_owned(),
                    message: message(severity, w.origin),
                    raised_at_ms: now_ms,
                    updated_at_ms: now_ms,
                    acknowledged_by: None,
                    comment: None,
                    features: (w.features)(),
                    contributions: (w.contributions)(),
                };
                self.counters.raised[severity as usize] += 1;
                st.current = Some(head_of(&a));
                out.push(a);
            }
            Some(a) if good_run >= cfg.clear_after as usize => {
                a.status = Status::Cleared;
                a.fault_probability = latest.p;
                a.updated_at_ms = now_ms;
                a.message = "Cleared: the machine is back to normal".into();
                a.features = (w.features)();
                a.contributions = (w.contributions)();
                // The alert leaves the state: its last record moves out.
                out.extend(st.current.take().map(|a| *a));
                self.counters.cleared += 1;
            }
            Some(a) if bad(&latest) && cfg.severity(latest.p) > a.severity => {
                a.severity = cfg.severity(latest.p);
                a.threshold = cfg.level_of(a.severity);
                a.fault_probability = latest.p;
                a.updated_at_ms = now_ms;
                a.message = message(a.severity, w.origin);
                a.origin = w.origin;
                a.model = w.model.to_owned();
                a.model_version = w.model_version.to_owned();
                self.counters.raised[a.severity as usize] += 1;
                let mut record = (**a).clone();
                record.features = (w.features)();
                record.contributions = (w.contributions)();
                out.push(record);
            }
            _ => {}
        }
        out
    }

    /// The device has been silent since `since_ms` (the end of its last
    /// window): opens a "device silent" alert unless one is open already.
    pub fn silent(&mut self, device_id: &str, since_ms: i64, now_ms: i64, model: &str, version: &str) -> Option<Alert> {
        let st = self.devices.entry(device_id.to_owned()).or_default();
        if st.current.is_some() {
            return None;
        }
        let a = Alert {
            alert_id: format!("{device_id}/{}", crate::time::format_rfc3339(since_ms)),
            device_id: device_id.to_owned(),
            status: Status::Open,
            severity: Severity::Warning,
            origin: Origin::Silence,
            fault_probability: f64::NAN,
            threshold: self.cfg.raise_level(),
            window_start_ms: since_ms,
            window_end_ms: since_ms,
            model: model.to_owned(),
            model_version: version.to_owned(),
            message: "device silent".into(),
            raised_at_ms: now_ms,
            updated_at_ms: now_ms,
            acknowledged_by: None,
            comment: None,
            features: Features::default(),
            contributions: Features::default(),
        };
        self.counters.raised[Severity::Warning as usize] += 1;
        st.current = Some(Box::new(a.clone()));
        Some(a)
    }

    /// Acknowledges the open alert `alert_id`; it stays until it clears.
    /// Acknowledging an acknowledged alert again records the new note. The
    /// record has no feature values (the policy keeps none, see
    /// [`DeviceState`]): the caller gives it those of the alert's latest
    /// record.
    pub fn acknowledge(
        &mut self,
        alert_id: &str,
        by: &str,
        comment: Option<&str>,
        now_ms: i64,
    ) -> Result<Alert, AckError> {
        let a = self
            .devices
            .values_mut()
            .filter_map(|d| d.current.as_mut())
            .find(|a| a.alert_id == alert_id)
            .ok_or_else(|| AckError::NotOpen(alert_id.to_owned()))?;
        a.status = Status::Acknowledged;
        a.acknowledged_by = Some(by.to_owned());
        a.comment = comment.map(str::to_owned);
        a.updated_at_ms = now_ms;
        self.counters.acknowledged += 1;
        Ok((**a).clone())
    }

    /// Alerts not cleared.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.devices.values().filter_map(|d| d.current.as_deref())
    }

    /// The devices with a state.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    /// A device's state, to persist it.
    pub fn device_state(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices.get(device_id)
    }

    /// Restores a device's persisted state.
    pub fn restore(&mut self, device_id: &str, state: DeviceState) {
        self.devices.insert(device_id.to_owned(), state);
    }

    /// Drops the state of a device with no alert open (the engine forgot it).
    pub fn forget(&mut self, device_id: &str) {
        if self.devices.get(device_id).is_some_and(|d| d.current.is_none()) {
            self.devices.remove(device_id);
        }
    }
}

fn message(s: Severity, origin: Origin) -> String {
    match (origin, s) {
        (Origin::Baseline, Severity::Critical) => "Far from this machine's learnt normal".into(),
        (Origin::Baseline, Severity::Warning) => "Departing from this machine's learnt normal".into(),
        (_, Severity::Critical) => "High risk of failure".into(),
        (_, Severity::Warning) => "Elevated risk of failure".into(),
    }
}

#[cfg(test)]
mod tests;
