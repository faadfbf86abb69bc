//! Closed windows → fault probabilities → alert records: the stage after
//! the window engine. Synchronous and I/O-free; the daemon, the demo and
//! the tests drive it with the windows the engine emits.
//!
//! All windows that close together are scored in one tract run. Every
//! result carries the name and version of the model that scored it, so a
//! hot swap between batches is visible in the results.
//!
//! With `[baseline]`, each device's own baseline of normal
//! ([`crate::baseline`]) scores the window too, on the policy's
//! probability scale ([`crate::baseline::Score::probability`]); which of
//! the two scores the alert policy judges is `baseline.alerts_from`'s
//! choice (both: the higher one, with its origin).

use std::collections::HashMap;
use std::sync::Arc;

use crate::alerts::{Alert, Features, Origin, Policy, PolicyConfig, WindowScore};
use crate::baseline::{BaselineConfig, DeviceBaseline, Observed, Phase, Score};
use crate::config::{AlertsConfig, AlertsFrom};
use crate::model::{Model, ModelError, OutputKind};
use crate::window::{ClosedWindow, Trigger};

/// The alert threshold of a configuration with baselines and no model,
/// when `alerts.threshold` is not set (a baseline's limit sits at it).
pub const BASELINE_THRESHOLD: f64 = 0.8;

/// Contributing features an alert names, largest share first.
pub const CONTRIBUTIONS: usize = 5;

/// One window's score.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub device_id: Arc<str>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// A re-emission of an already scored window after late readings.
    pub update: bool,
    /// Probability (or value, for a value model); NaN when it could not be scored.
    pub score: f32,
    pub model: Arc<str>,
    pub model_version: Arc<str>,
}

/// What one batch of closed windows produced.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<WindowResult>,
    /// Alert records, each with the index in `results` of the window behind it.
    pub alerts: Vec<(usize, Alert)>,
}

/// The threshold `[alerts]` falls back on: the package's, or with no
/// model (baselines only) [`BASELINE_THRESHOLD`].
pub fn default_threshold(model: Option<&Model>) -> Option<f64> {
    match model {
        Some(m) => m.package.threshold,
        None => Some(BASELINE_THRESHOLD),
    }
}

/// The alert policy's settings from `[alerts]` and the package's default threshold.
pub fn policy_config(a: &AlertsConfig, package_threshold: Option<f64>) -> Result<PolicyConfig, String> {
    let threshold = a
        .threshold
        .or(package_threshold)
        .ok_or("no alert threshold: set alerts.threshold or the package's [alert] threshold")?;
    if a.warning.is_some_and(|w| w > threshold) {
        return Err(format!("alerts.warning is above the threshold {threshold}"));
    }
    Ok(PolicyConfig {
        threshold,
        warning: a.warning,
        raise_after: a.raise_after,
        clear_after: a.clear_after,
        hysteresis: a.hysteresis,
    })
}

/// Every device's baseline, and what they learn from.
#[derive(Debug)]
pub struct Baselines {
    cfg: BaselineConfig,
    /// `cfg.features`, shared by the alerts' feature lists.
    names: Arc<[String]>,
    devices: HashMap<Arc<str>, DeviceBaseline>,
    /// Each active device's latest window: T² and Q over their limits.
    latest: HashMap<Arc<str>, (f64, f64)>,
    /// Fits and resets since start, for metrics.
    pub fitted: u64,
    pub resets: u64,
}

/// A device's baseline as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BaselineStatus {
    /// `learning` or `active`.
    pub state: &'static str,
    /// Warm-up windows collected and needed (while learning).
    pub have: usize,
    pub need: usize,
    /// Baselines fitted so far (0 before the first).
    pub version: u32,
    /// End of the last warm-up window of the active baseline (epoch ms).
    pub since_ms: Option<i64>,
    /// The anomaly score of the latest window since the daemon started: T²
    /// and Q over their limits (above 1: past a limit).
    pub t2_ratio: Option<f64>,
    pub q_ratio: Option<f64>,
}

impl Baselines {
    pub fn new(cfg: BaselineConfig) -> Self {
        let names: Arc<[String]> = cfg.features.iter().cloned().collect();
        Baselines { cfg, names, devices: HashMap::new(), latest: HashMap::new(), fitted: 0, resets: 0 }
    }

    pub fn config(&self) -> &BaselineConfig {
        &self.cfg
    }

    /// New settings (config reload): they apply from the next window; new
    /// features make every device learn again (a fitted baseline is of the
    /// old ones).
    pub fn set_config(&mut self, cfg: BaselineConfig) {
        if cfg.features != self.cfg.features {
            for b in self.devices.values_mut() {
                b.reset();
            }
        }
        self.names = cfg.features.iter().cloned().collect();
        self.cfg = cfg;
    }

    /// The devices with a baseline (learning or active).
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(|k| &**k)
    }

    pub fn device(&self, id: &str) -> Option<&DeviceBaseline> {
        self.devices.get(id)
    }

    /// Devices learning and active.
    pub fn counts(&self) -> (usize, usize) {
        let learning = self.devices.values().filter(|b| b.learning().is_some()).count();
        (learning, self.devices.len() - learning)
    }

    pub fn status(&self, id: &str) -> Option<BaselineStatus> {
        let b = self.devices.get(id)?;
        let need = self.cfg.warmup_needed();
        let (state, have, since_ms) = match &b.phase {
            Phase::Learning { rows } => ("learning", rows.len(), None),
            Phase::Active { since_ms, .. } => ("active", need, Some(*since_ms)),
        };
        let latest = self.latest.get(id);
        Some(BaselineStatus {
            state,
            have,
            need,
            version: b.version,
            since_ms,
            t2_ratio: latest.map(|l| l.0),
            q_ratio: latest.map(|l| l.1),
        })
    }

    /// Restores a device's persisted baseline.
    pub fn restore(&mut self, id: &str, b: DeviceBaseline) {
        self.devices.insert(Arc::from(id), b);
    }

    /// Learns the device's normal again from its next windows ("machine
    /// serviced"); the next fit is a new version. Its status after, or
    /// `None` for a device without a baseline yet.
    pub fn reset(&mut self, id: &str) -> Option<BaselineStatus> {
        self.devices.get_mut(id)?.reset();
        self.latest.remove(id);
        self.resets += 1;
        self.status(id)
    }

    /// Drops a device the engine forgot.
    pub fn forget(&mut self, id: &str) {
        self.devices.remove(id);
        self.latest.remove(id);
    }

    /// The window's features in the configured order.
    fn features_of(&self, w: &ClosedWindow) -> Vec<f64> {
        self.cfg.features.iter().map(|f| w.feature(f).unwrap_or(f64::NAN)).collect()
    }

    /// Takes one closed window: learns from it or scores it. A late update
    /// of a window already taken is scored, never learnt from twice.
    fn observe(&mut self, w: &ClosedWindow) -> (Vec<f64>, Option<(Score, u32)>) {
        let x = self.features_of(w);
        if w.update {
            let scored = self.devices.get(&*w.device_id).and_then(|b| b.score(&x).map(|s| (s, b.version)));
            return (x, scored);
        }
        let b = self.devices.entry(w.device_id.clone()).or_default();
        let out = match b.observe(&self.cfg, x.clone(), w.end_ms) {
            Observed::Scored(s) => {
                self.latest.insert(w.device_id.clone(), (s.t2_ratio, s.q_ratio));
                Some((s, b.version))
            }
            Observed::Fitted { version } => {
                self.fitted += 1;
                tracing::info!(device = %w.device_id, version, "baseline fitted");
                None
            }
            Observed::Learning { .. } | Observed::Incomplete => None,
        };
        (x, out)
    }
}

/// The top [`CONTRIBUTIONS`] features by share.
fn contributions(names: &Arc<[String]>, shares: &[f64]) -> Features {
    let mut order: Vec<usize> = (0..shares.len().min(names.len())).filter(|&i| shares[i].is_finite()).collect();
    order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
    order.truncate(CONTRIBUTIONS);
    order.into_iter().map(|i| (names[i].clone(), shares[i])).collect()
}

/// The model, the baselines and the alert policy.
#[derive(Debug)]
pub struct Scorer {
    model: Option<Arc<Model>>,
    name: Arc<str>,
    version: Arc<str>,
    policy: Policy,
    rows: Vec<f32>,
    /// Models swapped out, newest last (a few), so their info series can go to 0.
    retired: Vec<(Arc<str>, Arc<str>)>,
    baselines: Option<Baselines>,
    alerts_from: AlertsFrom,
}

const BASELINE: &str = "baseline";

impl Scorer {
    pub fn new(model: Arc<Model>, policy: PolicyConfig) -> Self {
        Scorer::with(Some(model), policy, None, AlertsFrom::Model)
    }

    /// A scorer with a model, baselines or both, alerting on `alerts_from`.
    pub fn with(
        model: Option<Arc<Model>>,
        policy: PolicyConfig,
        baselines: Option<Baselines>,
        alerts_from: AlertsFrom,
    ) -> Self {
        let (name, version) = match &model {
            Some(m) => (Arc::from(m.package.name.as_str()), Arc::from(m.package.version.as_str())),
            None => (Arc::from(BASELINE), Arc::from("")),
        };
        Scorer {
            model,
            name,
            version,
            policy: Policy::new(policy),
            rows: Vec::new(),
            retired: Vec::new(),
            baselines,
            alerts_from,
        }
    }

    pub fn model(&self) -> Option<&Arc<Model>> {
        self.model.as_ref()
    }

    pub fn baselines(&self) -> Option<&Baselines> {
        self.baselines.as_ref()
    }

    pub fn baselines_mut(&mut self) -> Option<&mut Baselines> {
        self.baselines.as_mut()
    }

    pub fn alerts_from(&self) -> AlertsFrom {
        self.alerts_from
    }

    pub fn set_alerts_from(&mut self, a: AlertsFrom) {
        self.alerts_from = a;
    }

    /// Swaps the model between batches (hot reload, rollback).
    pub fn set_model(&mut self, model: Arc<Model>) {
        if self.model.as_ref().is_some_and(|m| Arc::ptr_eq(&model, m)) {
            return;
        }
        if self.model.is_some() {
            self.retired.push((self.name.clone(), self.version.clone()));
            if self.retired.len() > 8 {
                self.retired.remove(0);
            }
        }
        self.name = Arc::from(model.package.name.as_str());
        self.version = Arc::from(model.package.version.as_str());
        self.model = Some(model);
    }

    /// Models this scorer ran before the current one (name, version).
    pub fn retired(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.retired
    }

    /// The model's feature row of window `i` of the last [`Scorer::process`] call.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let width = self.model.as_ref()?.width();
        self.rows.get(i * width..(i + 1) * width)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// Forgets a device the engine forgot: its baseline, and its alert
    /// state unless an alert is open.
    pub fn forget(&mut self, id: &str) {
        self.policy.forget(id);
        if let Some(b) = &mut self.baselines {
            b.forget(id);
        }
    }

    /// Scores `windows` in one run and feeds the scores to the alert policy
    /// (a value model's scores are not alerted on) at processing time `now_ms`.
    pub fn process(&mut self, windows: &[ClosedWindow], now_ms: i64) -> Result<Batch, ModelError> {
        let mut batch = Batch::default();
        if windows.is_empty() {
            return Ok(batch);
        }
        let scores = match &self.model {
            Some(m) => {
                let started = std::time::Instant::now();
                let scores = m.score_rows(windows, &mut self.rows)?;
                metrics::histogram!(crate::metrics::INFERENCE_SECONDS).record(started.elapsed().as_secs_f64());
                scores
            }
            None => vec![f32::NAN; windows.len()],
        };
        let level = self.policy.config().raise_level();
        let model_alerts = self.model.as_ref().is_some_and(|m| m.package.kind == OutputKind::Probability)
            && self.alerts_from != AlertsFrom::Baseline;
        let baseline_alerts = self.alerts_from != AlertsFrom::Model;
        let value_model = self.model.as_ref().is_some_and(|m| m.package.kind != OutputKind::Probability);
        let width = self.model.as_ref().map_or(0, |m| m.width());
        for (i, (w, score)) in windows.iter().zip(scores).enumerate() {
            let (x, judged) = match &mut self.baselines {
                Some(b) => b.observe(w),
                None => (Vec::new(), None),
            };
            let b_version = judged.as_ref().map(|(_, v)| Arc::<str>::from(v.to_string()));
            let b_p = judged.as_ref().map_or(f64::NAN, |(s, _)| s.probability(level));
            let m_p = if model_alerts { f64::from(score) } else { f64::NAN };
            // The score the policy judges: the model's, or the baseline's
            // when it alone alerts or is the higher.
            // (NaN: the model does not alert or could not score.)
            let baseline_wins = baseline_alerts && b_p.is_finite() && (m_p.is_nan() || b_p > m_p);
            // The window's record: the score the policy judged, but a value
            // model's output (not a probability) stays in its records.
            let (score, model, model_version) =
                if (baseline_wins && !value_model) || (self.model.is_none() && judged.is_some()) {
                    (b_p as f32, Arc::from(BASELINE), b_version.clone().unwrap_or_else(|| Arc::from("")))
                } else {
                    (score, self.name.clone(), self.version.clone())
                };
            let result = WindowResult {
                device_id: w.device_id.clone(),
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                update: w.update,
                score,
                model,
                model_version,
            };
            batch.results.push(result);
            if !model_alerts && !baseline_alerts {
                continue;
            }
            let row = self.rows.get(i * width..(i + 1) * width);
            let names = self.baselines.as_ref().map(|b| b.names.clone());
            // Feature lists are made only when a record is.
            let model_features = || match (&self.model, row) {
                (Some(m), Some(row)) => Features::new(m.feature_names().clone(), row.iter().map(|v| f64::from(*v))),
                _ => Features::default(),
            };
            let baseline_features = || names.clone().map(|n| Features::new(n, x.iter().copied())).unwrap_or_default();
            let shares = || match (&names, &judged) {
                (Some(n), Some((s, _))) => contributions(n, &s.shares),
                _ => Features::default(),
            };
            let ws = if baseline_wins {
                WindowScore {
                    device_id: &w.device_id,
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    probability: b_p,
                    origin: Origin::Baseline,
                    model: BASELINE,
                    model_version: b_version.as_deref().unwrap_or(""),
                    features: &baseline_features,
                    contributions: &shares,
                }
            } else {
                WindowScore {
                    device_id: &w.device_id,
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    probability: m_p,
                    origin: Origin::Model,
                    model: &self.name,
                    model_version: &self.version,
                    features: &model_features,
                    contributions: &Features::default,
                }
            };
            batch.alerts.extend(self.policy.observe(&ws, now_ms).into_iter().map(|a| (i, a)));
            // The engine closes a device's windows on processing time only
            // when it stopped reporting: the machine may have died.
            if w.trigger == Trigger::Idle {
                if let Some(a) = self.policy.silent(&w.device_id, w.end_ms, now_ms, &self.name, &self.version) {
                    batch.alerts.push((i, a));
                }
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Status;
    use crate::baseline::FitConfig;

    const W: i64 = 10_000;

    fn cfg() -> BaselineConfig {
        BaselineConfig {
            features: vec!["a.mean".into(), "b.mean".into()],
            warmup_windows: 20,
            fit: FitConfig { components: 1, quantile: 0.99, t2_margin: 1.5, q_margin: 3.0 },
            adapt_rate: 0.0,
            adapt_below: 0.5,
        }
    }

    /// Window `i` of device `d`: `a` and `b` move together with a small
    /// wobble; `shift` is added to `a`.
    fn window(d: &str, i: i64, shift: f64, update: bool) -> ClosedWindow {
        let wobble = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
        let mut a = [0.0; 13];
        let mut b = [0.0; 13];
        a[1] = 10.0 + wobble + shift;
        b[1] = 20.0 + 2.0 * wobble + 0.05 * (((i * 104_729) % 7) as f64 - 3.0);
        ClosedWindow {
            device_id: Arc::from(d),
            start_ms: i * W,
            end_ms: (i + 1) * W,
            update,
            trigger: Trigger::Watermark,
            signals: vec![(Arc::from("a"), a), (Arc::from("b"), b)],
        }
    }

    fn policy() -> PolicyConfig {
        PolicyConfig { threshold: 0.8, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.1 }
    }

    #[test]
    fn a_baseline_learns_then_alerts_on_a_departure_naming_the_feature() {
        let mut s = Scorer::with(None, policy(), Some(Baselines::new(cfg())), AlertsFrom::Baseline);
        for i in 0..20 {
            let b = s.process(&[window("p1", i, 0.0, false)], 0).unwrap();
            assert!(b.alerts.is_empty());
            assert!(b.results[0].score.is_nan(), "learning windows are not scored");
        }
        let st = s.baselines().unwrap().status("p1").unwrap();
        assert_eq!((st.state, st.version, st.since_ms), ("active", 1, Some(20 * W)));
        // Normal windows: scored, below the limit.
        for i in 20..30 {
            let b = s.process(&[window("p1", i, 0.0, false)], 0).unwrap();
            assert!(b.alerts.is_empty(), "window {i}: {:?}", b.results[0]);
            assert!(b.results[0].score < 0.8);
            assert_eq!((&*b.results[0].model, &*b.results[0].model_version), ("baseline", "1"));
        }
        let st = s.baselines().unwrap().status("p1").unwrap();
        assert!(st.t2_ratio.is_some_and(|r| r < 1.0) && st.q_ratio.is_some_and(|r| r < 1.0), "{st:?}");
        // `a` alone leaves its relation with `b`.
        let b = s.process(&[window("p1", 30, 5.0, false)], 0).unwrap();
        assert_eq!(b.alerts.len(), 1);
        let a = &b.alerts[0].1;
        assert_eq!(
            (a.status, a.origin, a.model.as_str(), a.model_version.as_str()),
            (Status::Open, Origin::Baseline, "baseline", "1")
        );
        assert!(a.fault_probability >= 0.8);
        let top = a.contributions.iter().next().unwrap();
        assert_eq!(top.0, "a.mean", "{:?}", a.contributions);
        assert!(a.contributions.iter().map(|(_, v)| v).sum::<f64>() <= 1.0 + 1e-9);
        assert_eq!(a.features.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a.mean", "b.mean"]);
        // Back to normal: two good windows clear it.
        let mut cleared = Vec::new();
        for i in 31..33 {
            cleared.extend(s.process(&[window("p1", i, 0.0, false)], 0).unwrap().alerts);
        }
        assert_eq!(cleared.iter().map(|(_, a)| a.status).collect::<Vec<_>>(), [Status::Cleared]);
    }

    #[test]
    fn late_updates_are_scored_but_not_learnt_and_reset_learns_again() {
        let mut s = Scorer::with(None, policy(), Some(Baselines::new(cfg())), AlertsFrom::Baseline);
        for i in 0..5 {
            s.process(&[window("p1", i, 0.0, false)], 0).unwrap();
        }
        s.process(&[window("p1", 4, 0.0, true)], 0).unwrap();
        assert_eq!(s.baselines().unwrap().status("p1").unwrap().have, 5, "an update is not a new warm-up window");
        for i in 5..25 {
            s.process(&[window("p1", i, 0.0, false)], 0).unwrap();
        }
        let b = s.baselines_mut().unwrap();
        assert_eq!(b.status("p1").unwrap().version, 1);
        let st = b.reset("p1").unwrap();
        assert_eq!(Some(&st), b.status("p1").as_ref());
        assert!(b.reset("nobody").is_none());
        assert_eq!((st.state, st.have, st.version, st.t2_ratio), ("learning", 0, 1, None));
        for i in 25..45 {
            s.process(&[window("p1", i, 0.0, false)], 0).unwrap();
        }
        assert_eq!(s.baselines().unwrap().status("p1").unwrap().version, 2);
        assert_eq!((s.baselines().unwrap().fitted, s.baselines().unwrap().resets), (2, 1));
        s.forget("p1");
        assert!(s.baselines().unwrap().status("p1").is_none());
    }

    #[test]
    fn a_baseline_in_trial_raises_nothing() {
        let mut s = Scorer::with(None, policy(), Some(Baselines::new(cfg())), AlertsFrom::Model);
        for i in 0..30 {
            let shift = if i >= 25 { 50.0 } else { 0.0 };
            let b = s.process(&[window("p1", i, shift, false)], 0).unwrap();
            assert!(b.alerts.is_empty());
        }
        assert_eq!(s.baselines().unwrap().status("p1").unwrap().state, "active");
    }

    #[test]
    fn the_baseline_probability_puts_the_limit_at_the_raise_level() {
        let score = |r: f64| Score { t2: 0.0, q: 0.0, t2_ratio: r, q_ratio: 0.0, shares: vec![] };
        assert!((score(1.0).probability(0.8) - 0.8).abs() < 1e-12);
        assert!((score(2.0).probability(0.8) - 0.96).abs() < 1e-12);
        assert_eq!(score(0.0).probability(0.8), 0.0);
        assert!(score(f64::INFINITY).probability(0.8) <= 1.0);
        let nan = Score { t2: f64::NAN, q: f64::NAN, t2_ratio: f64::NAN, q_ratio: f64::NAN, shares: vec![] };
        assert!(nan.probability(0.8).is_nan());
        assert!(score(1.0).probability(1.0) < 1.0, "a level of 1 keeps the scale finite");
    }
}
