//! The SKAB sample run through the daemon and through the library, for
//! comparing the two.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::brokers::Daemon;
use super::SKAB_SIGNALS;
use faultline::config::Config;
use faultline::scoring::{default_threshold, policy_config, Baselines, Scorer};
use faultline::sources::file::{CsvOptions, CsvReader, DeviceFrom};
use faultline::state::Store;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample() -> PathBuf {
    root().join("models/pump-skab/sample/valve1-1.csv")
}

pub const ROWS: u64 = 1145;

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("faultline.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Windows and alerts from the library over the whole file in order.
pub fn expected(config_text: &str) -> Expected {
    let config = Config::from_toml(config_text).unwrap_or_else(|p| panic!("{p:?}"));
    let mut engine = config.engine();
    let model = config.model.as_ref().map(|m| Arc::new(faultline::model::Model::load(&m.path).expect("model loads")));
    let policy = policy_config(&config.alerts, default_threshold(model.as_deref())).expect("policy");
    let baselines = config.baseline.as_ref().map(|b| Baselines::new(b.baseline()));
    let mut scorer = Scorer::with(model, policy, baselines, config.alerts_from());
    let opts = CsvOptions {
        time_column: Some("datetime".into()),
        device: DeviceFrom::Fixed("pump-1".into()),
        delimiter: b';',
        signals: Some(SKAB_SIGNALS.iter().map(|s| s.to_string()).collect()),
        label_column: None,
    };
    let mut r = CsvReader::open(&sample(), &opts).expect("sample opens");
    let names = r.signals().to_vec();
    let mut windows = BTreeMap::new();
    let mut alerts = BTreeMap::new();
    let mut records = BTreeSet::new();
    while let Some(row) = r.next_row().expect("row") {
        let mut closed = Vec::new();
        let values = row.values.iter().map(|(i, v)| (names[*i].as_str(), *v));
        engine.record(&row.device_id, row.ts_ms, values, 0, &mut closed);
        let batch = scorer.process(&closed, 0).expect("scores");
        for w in &closed {
            let n = w.signals.iter().map(|(_, s)| s[0] as u64).max().unwrap_or(0);
            windows.insert((w.device_id.to_string(), w.start_ms), n);
        }
        for (_, a) in batch.alerts {
            alerts.insert(a.alert_id.clone(), format!("{:?}", a.status));
            records.insert((a.alert_id.clone(), format!("{:?}", a.status).to_lowercase()));
        }
    }
    Expected { windows, alerts, records }
}

/// What an uninterrupted run gives.
pub struct Expected {
    /// (device, window start) → readings.
    pub windows: BTreeMap<(String, i64), u64>,
    /// alert id → latest status.
    pub alerts: BTreeMap<String, String>,
    /// Every alert record as (alert id, status as on the topic).
    pub records: BTreeSet<(String, String)>,
}

/// What the daemon left in its state directory.
/// Windows, latest alert statuses, and readings still in open windows.
pub type Stored = (BTreeMap<(String, i64), u64>, BTreeMap<String, String>, u64);

pub fn stored(state: &Path) -> Stored {
    let store = Store::open(state).expect("state opens");
    let windows =
        store.all_windows().expect("windows").into_iter().map(|w| ((w.device_id, w.start_ms), w.readings)).collect();
    let alerts = store.alerts().expect("alerts").into_iter().map(|a| (a.alert_id, format!("{:?}", a.status))).collect();
    // Readings still in open windows.
    let open: u64 = store
        .restore()
        .expect("restore")
        .devices()
        .map(|d| d.expect("device").0)
        .map(|d| d.open.iter().map(|w| w.stats.iter().map(|s| s.count()).max().unwrap_or(0)).sum::<u64>())
        .sum();
    (windows, alerts, open)
}

/// `faultline replay` arguments for the sample; `target` is `["--mqtt", URL]` or `["--kafka", BROKERS]`.
pub fn replay_args<'a>(target: [&'a str; 2], topic: &'a str, speed: &'a str, sample: &'a str) -> Vec<&'a str> {
    vec![
        "--input",
        sample,
        "--delimiter",
        ";",
        "--time-column",
        "datetime",
        "--device",
        "pump-1",
        "--signals",
        "Accelerometer1RMS,Accelerometer2RMS,Current,Pressure,Temperature,Thermocouple,Voltage,Volume Flow RateRMS",
        target[0],
        target[1],
        "--topic",
        topic,
        "--omit-device-id",
        "--speed",
        speed,
    ]
}

/// Waits until the daemon's checkpoints stop moving (everything sent is in).
pub fn wait_quiet(d: &Daemon) {
    let mut last = (u64::MAX, std::time::Instant::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = d.checkpointed_payloads();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(1500) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the daemon never went quiet:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn check_against_expected(state: &Path, text: &str) {
    let Expected { windows: want_windows, alerts: want_alerts, .. } = expected(text);
    let (got_windows, got_alerts, open) = stored(state);
    assert!(!want_windows.is_empty() && !want_alerts.is_empty());
    assert_eq!(got_windows, want_windows, "closed windows and their reading counts");
    assert_eq!(got_alerts, want_alerts, "alerts and their latest status");
    let closed: u64 = got_windows.values().sum();
    assert_eq!(closed + open, ROWS, "every reading counted once: {closed} in closed windows + {open} open");
}

/// A daemon configuration for the SKAB sample (2-minute windows, the
/// shipped model, checkpoints every 200 ms) with `sources` and `extra`
/// (a sink, ...) as TOML.
pub fn config_text(state: &Path, sources: &str, extra: &str) -> String {
    format!(
        r#"
[state]
dir = "{}"
checkpoint_interval = "200ms"
[http]
listen = "127.0.0.1:0"
[window]
size = "2m"
max_out_of_orderness = "10s"
allowed_lateness = "1m"
idle_timeout = "1h"
[limits]
device_ttl = "2h"
{sources}
[model]
path = "{}"
{extra}
"#,
        state.display(),
        root().join("models/pump-skab").display()
    )
}

/// A daemon started on a configuration in a temporary directory. Keep
/// `dir` bound (`dir: _dir`): dropping it deletes the daemon's state.
pub struct Run {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub text: String,
    pub d: Daemon,
}

impl Run {
    /// Writes `config_text(state, sources, extra)`, starts the daemon and
    /// waits for `ready` in its log.
    pub fn start(sources: &str, extra: &str, ready: &[&str]) -> Run {
        Run::start_with(sources, extra, ready, |t| t)
    }

    /// [`Run::start`], with the configuration text changed by `edit` first.
    pub fn start_with(sources: &str, extra: &str, ready: &[&str], edit: impl FnOnce(String) -> String) -> Run {
        Run::start_env(sources, extra, ready, edit, &[])
    }

    /// [`Run::start_with`], with more environment variables for the daemon.
    pub fn start_env(
        sources: &str,
        extra: &str,
        ready: &[&str],
        edit: impl FnOnce(String) -> String,
        env: &[(&str, &str)],
    ) -> Run {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let text = edit(config_text(&state, sources, extra));
        let d = Daemon::start_with_env(&write_config(dir.path(), &text), env);
        for r in ready {
            d.wait_for_log(r, Duration::from_secs(30));
        }
        Run { dir, state, text, d }
    }
}

/// Random waits for crash tests (xorshift, seeded by the clock; the seed is printed).
pub struct Jitter {
    pub seed: u64,
    x: u64,
}

impl Jitter {
    pub fn new() -> Jitter {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.subsec_nanos() as u64);
        Jitter { seed, x: seed | 1 }
    }

    /// A wait between `from` and `from + spread` milliseconds.
    pub fn ms(&mut self, from: u64, spread: u64) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        from + self.x % spread.max(1)
    }
}
