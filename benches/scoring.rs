//! Window close → features → inference → alert policy (and an alert
//! record's JSON for the alert topic), with the shipped
//! model (`models/pump-skab`, 56 features, HistGradientBoosting): issue 7's
//! goals are ≥ 200,000 windows/s for a batch of closed windows and a p99
//! under 50 µs for one window alone.
//!
//! The windows are real ones: a synthetic plant of 10,000 devices replaying
//! the bundled SKAB run (as `faultline replay --devices` sends it) goes
//! through the pipeline for one 2-minute window, and every device's window
//! is closed.
//!
//!     cargo bench --bench scoring

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::alerts::{Alert, PolicyConfig};
use faultline::clean::Cleaning;
use faultline::decode::DecodeLimits;
use faultline::model::Model;
use faultline::pipeline::Pipeline;
use faultline::scoring::Scorer;
use faultline::synth::Plant;
use faultline::window::{ClosedWindow, Engine, StateLimits, WindowSpec};

const DEVICES: u64 = 10_000;
/// Under `cargo test --benches` (a debug build) each benchmark runs once as
/// a check: a few devices are enough.
const TEST_DEVICES: u64 = 100;

fn devices() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        DEVICES
    } else {
        TEST_DEVICES
    }
}
const T0: i64 = 1_795_256_160_000; // 2026-11-21T10:16:00Z, a window boundary

fn windows() -> Vec<ClosedWindow> {
    let spec = WindowSpec {
        size_ms: 120_000,
        max_out_of_orderness_ms: 10_000,
        allowed_lateness_ms: 60_000,
        idle_timeout_ms: 600_000,
    };
    let limits = StateLimits { max_devices: 20_000, ..Default::default() };
    let devices = devices();
    let mut p = Pipeline::new(DecodeLimits::default(), Engine::new(spec, limits, Cleaning::new(Vec::new())), 1000);
    let src = p.source("bench");
    let plant = Plant::bundled(devices, 1000).expect("the bundled sample").starting_at(T0);
    let now = T0 + 120_000;
    let mut out = Vec::new();
    let mut payload = String::new();
    for k in 0..devices * 120 {
        payload.clear();
        plant.write(k, &mut payload);
        p.ingest(src, payload.as_bytes(), None, now, &mut out);
    }
    p.engine_mut().flush(&mut out);
    assert_eq!(out.len(), devices as usize);
    out
}

fn model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pump-skab")
}

fn scorer() -> Scorer {
    let model = Arc::new(Model::load(&model_dir()).expect("the shipped model loads"));
    let policy = PolicyConfig { threshold: 0.7, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.1 };
    Scorer::new(model, policy)
}

/// Per-window latency alone: p50 and p99 over many single-window batches.
fn single_window_percentiles(windows: &[ClosedWindow]) {
    let mut s = scorer();
    let mut t: Vec<Duration> = Vec::with_capacity(windows.len());
    for (i, w) in windows.iter().enumerate() {
        let started = Instant::now();
        black_box(s.process(std::slice::from_ref(w), T0 + i as i64).map(|b| b.results.len()).unwrap_or(0));
        t.push(started.elapsed());
    }
    t.sort();
    let q = |p: f64| t[((t.len() - 1) as f64 * p) as usize];
    eprintln!(
        "one window at a time, {} windows: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        t.len(),
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        t[t.len() - 1].as_secs_f64() * 1e6
    );
}

fn bench(c: &mut Criterion) {
    let windows = windows();
    single_window_percentiles(&windows);
    let mut g = c.benchmark_group("scoring");
    g.sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));

    g.throughput(Throughput::Elements(windows.len() as u64));
    let mut s = scorer();
    let mut now = T0;
    g.bench_function(format!("batch_of_{}_windows/pump-skab", windows.len()), |b| {
        b.iter(|| {
            now += 120_000;
            black_box(s.process(&windows, now).map(|b| b.results.len()).unwrap_or(0))
        })
    });

    g.throughput(Throughput::Elements(1));
    let mut s = scorer();
    let mut i = 0;
    g.bench_function("one_window/pump-skab", |b| {
        b.iter(|| {
            i = (i + 1) % windows.len();
            black_box(s.process(&windows[i..=i], T0 + i as i64).map(|b| b.results.len()).unwrap_or(0))
        })
    });

    // An alert record's payload for the alert topic: every window raises
    // one (threshold 0), with the model's 56 features.
    let alerts: Vec<Alert> = {
        let model = Arc::new(Model::load(&model_dir()).expect("the shipped model loads"));
        let policy = PolicyConfig { threshold: 0.0, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.0 };
        let batch = Scorer::new(model, policy).process(&windows, T0).expect("the windows score");
        batch.alerts.into_iter().map(|(_, a)| a).collect()
    };
    assert_eq!(alerts.len(), windows.len());
    let mut i = 0;
    g.bench_function("alert_json/written", |b| {
        b.iter(|| {
            i = (i + 1) % alerts.len();
            black_box(alerts[i].to_json_string())
        })
    });
    // Through a `Value` (`to_json`, what the HTTP API answers with), then
    // its text: how the payload was made before, there with `json!`.
    g.bench_function("alert_json/through_a_value", |b| {
        b.iter(|| {
            i = (i + 1) % alerts.len();
            black_box(alerts[i].to_json().to_string())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
