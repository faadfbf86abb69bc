//! Closed windows → fault probabilities → alert records: the stage after
//! the window engine. Synchronous and I/O-free; the daemon, the demo and
//! the tests drive it with the windows the engine emits.
//!
//! All windows that close together are scored in one tract run. Every
//! result carries the name and version of the model that scored it, so a
//! hot swap between batches is visible in the results.

use std::sync::Arc;

use crate::alerts::{Alert, Features, Policy, PolicyConfig, WindowScore};
use crate::config::AlertsConfig;
use crate::model::{Model, ModelError, OutputKind};
use crate::window::{ClosedWindow, Trigger};

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

/// The model and the alert policy.
#[derive(Debug)]
pub struct Scorer {
    model: Arc<Model>,
    name: Arc<str>,
    version: Arc<str>,
    policy: Policy,
    rows: Vec<f32>,
    /// Models swapped out, newest last (a few), so their info series can go to 0.
    retired: Vec<(Arc<str>, Arc<str>)>,
}

impl Scorer {
    pub fn new(model: Arc<Model>, policy: PolicyConfig) -> Self {
        let (name, version) = (Arc::from(model.package.name.as_str()), Arc::from(model.package.version.as_str()));
        Scorer { model, name, version, policy: Policy::new(policy), rows: Vec::new(), retired: Vec::new() }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Swaps the model between batches (hot reload, rollback).
    pub fn set_model(&mut self, model: Arc<Model>) {
        if Arc::ptr_eq(&model, &self.model) {
            return;
        }
        self.retired.push((self.name.clone(), self.version.clone()));
        if self.retired.len() > 8 {
            self.retired.remove(0);
        }
        self.name = Arc::from(model.package.name.as_str());
        self.version = Arc::from(model.package.version.as_str());
        self.model = model;
    }

    /// Models this scorer ran before the current one (name, version).
    pub fn retired(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.retired
    }

    /// The feature row of window `i` of the last [`Scorer::process`] call.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let width = self.model.width();
        self.rows.get(i * width..(i + 1) * width)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// Scores `windows` in one run and feeds the scores to the alert policy
    /// (a value model's scores are not alerted on) at processing time `now_ms`.
    pub fn process(&mut self, windows: &[ClosedWindow], now_ms: i64) -> Result<Batch, ModelError> {
        let mut batch = Batch::default();
        if windows.is_empty() {
            return Ok(batch);
        }
        let m = &self.model;
        let started = std::time::Instant::now();
        let scores = m.score_rows(windows, &mut self.rows)?;
        metrics::histogram!(crate::metrics::INFERENCE_SECONDS).record(started.elapsed().as_secs_f64());
        let width = m.width();
        for (i, (w, score)) in windows.iter().zip(scores).enumerate() {
            batch.results.push(WindowResult {
                device_id: w.device_id.clone(),
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                update: w.update,
                score,
                model: self.name.clone(),
                model_version: self.version.clone(),
            });
            if m.package.kind != OutputKind::Probability {
                continue;
            }
            let row = &self.rows[i * width..(i + 1) * width];
            let features = || Features::new(m.feature_names().clone(), row.iter().map(|v| f64::from(*v)));
            let ws = WindowScore {
                device_id: &w.device_id,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                probability: f64::from(score),
                model: &self.name,
                model_version: &self.version,
                features: &features,
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
