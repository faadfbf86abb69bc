//! `faultline demo`: the daemon with nothing else on the machine. The
//! shipped model package and a SKAB run (GPL-3.0, see
//! `models/pump-skab/NOTICE.md`) are compiled into the binary; three pumps
//! replay that run, a third of it apart, at [`SPEED`] times real time
//! through an in-process source (no broker), in a loop; state lives in a
//! temporary directory removed at exit. Each pump also learns a baseline
//! of its normal from its first [`BASELINE_WARMUP`] windows, as a trial
//! (`alerts_from = "model"`): shown on its page, never alerting, since a
//! pump that starts mid-run would learn the fault as its normal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AlertsFrom, BaselineSection, Config, HttpConfig, ModelConfig, StateConfig, WindowConfig};
use crate::daemon::{Input, LocalFeed, SourceLinks};

const MODEL_ONNX: &[u8] = include_bytes!("../models/pump-skab/model.onnx");
const MODEL_TOML: &str = include_str!("../models/pump-skab/model.toml");
const SAMPLE: &str = include_str!("../models/pump-skab/sample/valve1-1.csv");

/// Event time runs this many times faster than the wall clock: the first
/// alerts come within a minute.
pub const SPEED: f64 = 20.0;

/// Windows a demo pump's baseline learns from (10 minutes of event time,
/// half a minute of the demo).
pub const BASELINE_WARMUP: usize = 5;

/// The pumps of the demo, each starting a third of the run later.
pub const DEVICES: [&str; 3] = ["pump-1", "pump-2", "pump-3"];

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo until SIGTERM or SIGINT.
pub fn run(listen: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = TempDir(std::env::temp_dir().join(format!("faultline-demo-{}", std::process::id())));
    let model = dir.0.join("models/pump-skab");
    std::fs::create_dir_all(&model).with_context(|| format!("cannot create {}", model.display()))?;
    std::fs::write(model.join("model.onnx"), MODEL_ONNX)?;
    std::fs::write(model.join("model.toml"), MODEL_TOML)?;
    let rows = Arc::new(sample()?);
    let config = Config {
        state: StateConfig { dir: dir.0.join("state"), checkpoint_interval: Duration::from_secs(1) },
        http: HttpConfig { listen: listen.to_owned(), ..HttpConfig::default() },
        window: WindowConfig {
            size: Duration::from_secs(120),
            max_out_of_orderness: Duration::from_secs(10),
            allowed_lateness: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
        },
        model: Some(ModelConfig { path: model }),
        baseline: Some(BaselineSection {
            alerts_from: Some(AlertsFrom::Model),
            warmup_windows: BASELINE_WARMUP,
            ..BaselineSection::with_features(
                crate::evaluate::SKAB_SIGNALS.iter().map(|s| format!("{s}.mean")).collect(),
            )
        }),
        ..Config::default()
    };
    eprintln!(
        "faultline demo: {} pumps replaying SKAB valve1/1 at {SPEED}x; open http://{listen}/ \
         (overview; JSON under /api/v1/). Ctrl-C to stop; state in {})",
        DEVICES.len(),
        dir.0.display()
    );
    let feed: LocalFeed = Box::new(move |source, links| tokio::spawn(feed(source, links, rows)));
    crate::daemon::run_with(config, Some(feed), None)
}

/// One row of the sample: event time and the eight signals.
pub(crate) type Row = (i64, Vec<(String, f64)>);

/// The bundled SKAB run's rows.
pub(crate) fn sample() -> anyhow::Result<Vec<Row>> {
    let mut r = csv::ReaderBuilder::new().delimiter(b';').from_reader(SAMPLE.as_bytes());
    let header: Vec<String> = r.headers()?.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let Some(ts) = rec.get(0).and_then(crate::time::parse_cell) else { continue };
        let values = header
            .iter()
            .zip(rec.iter())
            .skip(1)
            .filter(|(name, _)| *name != "anomaly" && *name != "changepoint")
            .filter_map(|(name, v)| v.parse::<f64>().ok().map(|v| (name.clone(), v)))
            .collect();
        rows.push((ts, values));
    }
    anyhow::ensure!(rows.len() > 10, "the bundled sample is empty");
    Ok(rows)
}

/// Sends each pump's readings when their (sped-up) time comes; loops the
/// run with event times moved on by its length, so time only goes forward.
async fn feed(source: usize, links: SourceLinks, rows: Arc<Vec<Row>>) {
    // The channel's bound is enough here: the demo's payloads are small.
    let SourceLinks { tx, mut stop, status, .. } = links;
    let n = rows.len();
    let span = rows[n - 1].0 - rows[0].0 + 1000;
    let started = tokio::time::Instant::now();
    // Per pump: how many readings it has sent.
    let mut sent = [0usize; DEVICES.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let elapsed_ms = (started.elapsed().as_secs_f64() * 1000.0 * SPEED) as i64;
        for (k, device) in DEVICES.iter().enumerate() {
            let offset = k * n / DEVICES.len();
            loop {
                let j = sent[k] + offset;
                let (ts, values) = &rows[j % n];
                let cycle = (j / n) as i64;
                // Event time since this pump's start.
                let since = ts - rows[offset].0 + cycle * span;
                if since > elapsed_ms {
                    break;
                }
                let event = ts + cycle * span;
                let payload = serde_json::json!({
                    "device_id": device,
                    "ts": event,
                    "values": values.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                })
                .to_string()
                .into_bytes();
                if tx.send(Input::Local { source, payload, device: None }).await.is_err() {
                    return;
                }
                status.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sent[k] += 1;
            }
        }
    }
}
