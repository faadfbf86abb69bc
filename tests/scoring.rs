//! The scoring stage: windows that close together scored in one run,
//! every result marked with the model that scored it, alerts from the
//! scores, and a silence alert when a device's last window closes idle.

mod common;

use std::sync::Arc;

use common::onnx::{logistic, package};
use faultline::alerts::{Origin, PolicyConfig, Status};
use faultline::clean::Cleaning;
use faultline::decode::DecodeLimits;
use faultline::model::Model;
use faultline::pipeline::Pipeline;
use faultline::scoring::Scorer;
use faultline::window::{Engine, StateLimits, WindowSpec};

const MIN: i64 = 60_000;

fn model(dir: &std::path::Path, version: &str, w: f32) -> Arc<Model> {
    let toml = format!(
        "name = \"temp\"\nversion = \"{version}\"\n[input]\nname = \"X\"\nfeatures = [\"t.mean\"]\n[output]\nname = \"Y\"\n[alert]\nthreshold = 0.8\n"
    );
    package(&dir.join(version), &logistic(&[w], -50.0 * w, Some(1)), &toml);
    Arc::new(Model::load(&dir.join(version)).unwrap_or_else(|e| panic!("{}", faultline::error_chain(&e))))
}

#[test]
fn windows_are_scored_together_and_alerts_follow() {
    let tmp = tempfile::tempdir().expect("tmp");
    // p = sigmoid(t - 50): hot devices are faulty.
    let m1 = model(tmp.path(), "1", 1.0);
    let cfg = PolicyConfig { threshold: 0.8, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.1 };
    let mut scorer = Scorer::new(m1, cfg);
    let spec =
        WindowSpec { size_ms: MIN, max_out_of_orderness_ms: 0, allowed_lateness_ms: 0, idle_timeout_ms: 10 * MIN };
    let mut p =
        Pipeline::new(DecodeLimits::default(), Engine::new(spec, StateLimits::default(), Cleaning::default()), 10);
    let src = p.source("test");
    let mut closed = Vec::new();
    // Two devices in one batch: the hot one alerts.
    let batch = r#"[{"device_id":"cool","ts":0,"t":20},{"device_id":"hot","ts":0,"t":90},
                    {"device_id":"cool","ts":60000,"t":20},{"device_id":"hot","ts":60000,"t":90}]"#;
    p.ingest(src, batch.as_bytes(), None, 61_000, &mut closed);
    assert_eq!(closed.len(), 2);
    let b = scorer.process(&closed, 61_000).expect("scores");
    assert_eq!(b.results.len(), 2);
    assert!(b.results.iter().all(|r| &*r.model == "temp" && &*r.model_version == "1"));
    let hot = b.results.iter().position(|r| &*r.device_id == "hot").expect("hot scored");
    assert!(b.results[hot].score > 0.99);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!(b.alerts[0].0, hot, "the alert points at the window behind it");
    assert_eq!((b.alerts[0].1.status, b.alerts[0].1.alert_id.as_str()), (Status::Open, "hot/1970-01-01T00:00:00Z"));
    assert_eq!(b.alerts[0].1.features.iter().collect::<Vec<_>>(), vec![("t.mean", 90.0)]);

    // A new model version between batches: results say which model scored them.
    scorer.set_model(model(tmp.path(), "2", 1.0));
    closed.clear();
    p.ingest(src, br#"{"device_id":"cool","ts":120000,"t":20}"#, None, 121_000, &mut closed);
    let b = scorer.process(&closed, 121_000).expect("scores");
    assert_eq!(&*b.results[0].model_version, "2");
    assert_eq!(scorer.retired().len(), 1);

    // "cool" goes quiet: its open window closes on the idle timeout, is still
    // scored, and the device gets a silence alert.
    closed.clear();
    p.tick(121_000 + 10 * MIN, &mut closed);
    assert_eq!(closed.len(), 2, "both devices' open windows close idle");
    let b = scorer.process(&closed, 121_000 + 10 * MIN).expect("scores");
    assert_eq!(b.results.len(), 2);
    let silent: Vec<_> =
        b.alerts.iter().filter(|(_, a)| a.origin == Origin::Silence).map(|(_, a)| a.device_id.as_str()).collect();
    assert_eq!(silent, ["cool"], "the hot device already has an alert open");
}

/// With `alerts_from = "both"` the policy judges the higher of the model's
/// and the baseline's score, and the alert says which it was.
#[test]
fn model_and_baseline_together_either_raises_and_the_alert_names_its_origin() {
    use faultline::baseline::{BaselineConfig, FitConfig};
    use faultline::config::AlertsFrom;
    use faultline::scoring::Baselines;
    let tmp = tempfile::tempdir().expect("tmp");
    // The model: p = sigmoid(t - 50), blind to u.
    let m = model(tmp.path(), "1", 1.0);
    let cfg = PolicyConfig { threshold: 0.8, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.1 };
    let baselines = Baselines::new(BaselineConfig {
        features: vec!["t.mean".into(), "u.mean".into()],
        warmup_windows: 12,
        fit: FitConfig { components: 1, quantile: 0.99, t2_margin: 2.0, q_margin: 8.0 },
        adapt_rate: 0.0,
        adapt_below: 0.5,
    });
    let mut scorer = Scorer::with(Some(m), cfg, Some(baselines), AlertsFrom::Both);
    let spec =
        WindowSpec { size_ms: MIN, max_out_of_orderness_ms: 0, allowed_lateness_ms: 0, idle_timeout_ms: 60 * MIN };
    let mut p =
        Pipeline::new(DecodeLimits::default(), Engine::new(spec, StateLimits::default(), Cleaning::default()), 10);
    let src = p.source("test");
    let mut feed = |device: &str, i: i64, t: f64, u: f64| {
        let mut closed = Vec::new();
        let r = format!(r#"{{"device_id":"{device}","ts":{},"t":{t},"u":{u}}}"#, i * MIN);
        p.ingest(src, r.as_bytes(), None, i * MIN, &mut closed);
        scorer.process(&closed, i * MIN).expect("scores")
    };
    // Device "a" runs normally: u follows t. Scored by the model while its
    // baseline learns.
    for i in 0..13 {
        let wobble = ((i * 7919) % 11) as f64 / 11.0 - 0.5;
        let b = feed("a", i, 20.0 + wobble, 10.0 + 2.0 * wobble);
        assert!(b.alerts.is_empty(), "window {i}");
        if let Some(r) = b.results.first() {
            assert_eq!(&*r.model, "temp", "the model's score while the baseline learns");
        }
    }
    // u leaves its relation with t: the model sees nothing, the baseline does.
    feed("a", 13, 20.0, 25.0);
    let b = feed("a", 14, 20.0, 10.0);
    assert_eq!(b.alerts.len(), 1, "{:?}", b.results);
    let a = &b.alerts[0].1;
    assert_eq!((a.origin, a.model.as_str(), a.model_version.as_str()), (Origin::Baseline, "baseline", "1"));
    // (t and u move together here, so the part of u that left the line is
    // shared by both: a residual has no single owner.)
    let why: Vec<&str> = a.contributions.iter().map(|(k, _)| k).collect();
    assert!(!why.is_empty() && why.iter().all(|k| ["t.mean", "u.mean"].contains(k)), "{why:?}");
    assert_eq!(&*b.results[0].model, "baseline", "the window's record holds the score judged");
    // Device "b" is hot from its first window: its baseline is still
    // learning, the model raises.
    feed("b", 0, 90.0, 10.0);
    let b = feed("b", 1, 90.0, 10.0);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!((b.alerts[0].1.origin, b.alerts[0].1.model.as_str()), (Origin::Model, "temp"));
    assert!(b.alerts[0].1.contributions.is_empty());
}
