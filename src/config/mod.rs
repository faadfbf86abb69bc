//! The configuration file (SPEC 6): TOML, durations like `"30s"` / `"5m"`,
//! unknown keys are errors.
//!
//! The structs are the documentation: every field says what it does and
//! its default. [`Config::from_toml`] reports *every* problem it finds, each
//! with its key (`window.size`, `source[1].topics`), never just the first.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::Problem;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub state: StateConfig,
    pub http: HttpConfig,
    pub window: WindowConfig,
    pub ingest: IngestConfig,
    pub limits: LimitsConfig,
    /// `[[source]]`: where readings come from.
    pub sources: Vec<SourceConfig>,
    pub cleaning: CleaningConfig,
    /// `[model]`: the ONNX model package; without it windows are computed but not scored.
    pub model: Option<ModelConfig>,
    pub alerts: AlertsConfig,
    /// `[baseline]`: each device's own baseline of normal; without it, none.
    pub baseline: Option<BaselineSection>,
    /// `[[sink]]`: where alerts go.
    pub sinks: Vec<SinkConfig>,
}

/// `[state]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the sled database (default `/var/lib/faultline`).
    pub dir: PathBuf,
    /// How often window and alert state and source positions are written
    /// (default `1s`). MQTT messages are acknowledged and Kafka offsets
    /// committed only once a checkpoint covers them; a checkpoint is also
    /// written early when input pauses with acknowledgements owed.
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the dashboard, API and `/metrics` (default `127.0.0.1:8080`).
    /// An address beyond loopback needs `[http.auth]`.
    pub listen: String,
    /// PEM certificate chain and private key: with both, serve HTTPS only
    /// (and mark the session cookie `Secure`).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// `[http.auth]`: sign-in for the pages and bearer tokens for the API.
    /// Without it every caller may do everything, so only loopback is allowed.
    pub auth: Option<AuthConfig>,
}

/// `[http.auth]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[http.auth.user]]`: who may sign in to the pages.
    #[serde(default)]
    pub user: Vec<UserConfig>,
    /// `[[http.auth.token]]`: bearer tokens for the API (`Authorization: Bearer ...`).
    #[serde(default)]
    pub token: Vec<TokenConfig>,
    /// A TOML file with more `[[user]]` and `[[token]]` entries, so that hashes
    /// can live in a file only the daemon's user reads.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// How long a sign-in lasts without use (default `12h`).
    #[serde(default = "default_session_ttl", with = "duration")]
    pub session_ttl: Duration,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}

/// One user of the pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Argon2 hash in PHC form (`$argon2id$v=19$...`), as `faultline auth hash-password` prints.
    pub password_hash: String,
    pub role: Role,
}

/// One API token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who uses it; recorded as the acknowledger of alerts it acknowledges.
    pub name: String,
    /// SHA-256 of the token, hex, as `faultline auth new-token` prints.
    pub sha256: String,
    pub role: Role,
}

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything; change nothing.
    Viewer,
    /// Also acknowledge alerts and record maintenance feedback.
    Operator,
}

/// The entries of `http.auth.users_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserConfig>,
    #[serde(default)]
    token: Vec<TokenConfig>,
}

impl AuthConfig {
    /// The users and tokens of the config and of `users_file` together.
    pub fn entries(&self) -> Result<(Vec<UserConfig>, Vec<TokenConfig>), String> {
        let (mut users, mut tokens) = (self.user.clone(), self.token.clone());
        if let Some(f) = &self.users_file {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let more: UsersFile = toml::from_str(&text).map_err(|e| format!("{}: {}", f.display(), e.message()))?;
            users.extend(more.user);
            tokens.extend(more.token);
        }
        Ok((users, tokens))
    }
}

/// `[window]`: event-time tumbling windows (SPEC 2).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window length, aligned to the epoch (default `5m`).
    #[serde(with = "duration")]
    pub size: Duration,
    /// How far behind a device's newest reading another may arrive and still
    /// count as on time (default `10s`).
    #[serde(with = "duration")]
    pub max_out_of_orderness: Duration,
    /// How long after a window closed a reading may still update it (default `1m`).
    #[serde(with = "duration")]
    pub allowed_lateness: Duration,
    /// Processing time after which a silent device's open windows close (default `10m`).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

/// `[ingest]`: what a payload may be.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Larger payloads are refused as `too_large` (default 1048576).
    pub max_payload_bytes: usize,
    /// Readings with more values are refused as `too_many_signals` (default 256).
    pub max_signals_per_reading: usize,
    /// Readings further ahead of the wall clock are refused as `future_time` (default `5m`).
    #[serde(with = "duration")]
    pub max_future: Duration,
}

/// `[limits]`: bounds on memory; each has a metric when hit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Devices tracked at once; readings of further new devices are refused (default 100000).
    pub max_devices: usize,
    /// Signals per device; values of further new signals are dropped (default 64).
    pub max_signals_per_device: usize,
    /// Open windows per device; past it the oldest closes early (default 16).
    pub max_open_windows_per_device: usize,
    /// Late readings kept for inspection, oldest dropped first (default 10000).
    pub late_store: usize,
    /// Refused payloads kept for inspection, oldest dropped first (default 1000).
    pub quarantine: usize,
    /// A device silent this long with no windows left is forgotten (default `24h`).
    #[serde(with = "duration")]
    pub device_ttl: Duration,
    /// Alert records waiting for the alert topic; past it the oldest are
    /// dropped and counted (default 100000).
    pub outbox: usize,
    /// Window starts whose closed windows are kept for the dashboard and
    /// the API, about 0.5 KB a window in `state.dir` (default 500: a device
    /// that reports all the time keeps its last 500; 0 stores none).
    pub window_history: usize,
    /// Closed windows kept over all devices (default 1000000, ~500 MB):
    /// divided by the devices tracked, it lowers `window_history`.
    pub window_history_total: usize,
}

/// `[[source]]`, chosen by `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Mqtt(MqttSource),
    Kafka(KafkaSource),
}

/// `[[source]] type = "mqtt"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSource {
    /// Broker, `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Topic filters to subscribe to; `+` and `#` wildcards allowed.
    pub topics: Vec<String>,
    /// Where the device id sits in the topic, e.g. `sensors/{device_id}/telemetry`;
    /// used when a payload has no `device_id`.
    #[serde(default)]
    pub device_from_topic: Option<String>,
    /// MQTT client id; with the persistent session it names the session (default `faultline`).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Credentials, when the broker asks for them.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `mqtts://` only: PEM file of the CA(s) to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: PEM client certificate and key, for brokers that want one.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// `[[source]] type = "kafka"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group (default `faultline`).
    #[serde(default = "default_client_id")]
    pub group_id: String,
    /// librdkafka properties passed through as they are, e.g.
    /// `"security.protocol" = "SASL_SSL"`, `"sasl.mechanism" = "SCRAM-SHA-256"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_client_id() -> String {
    "faultline".to_owned()
}

/// `[cleaning]`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleaningConfig {
    /// `[cleaning.signals.<name>]`: the valid range of a signal.
    pub signals: BTreeMap<String, SignalRange>,
}

/// A signal's valid range; values outside are dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRange {
    /// Smallest valid value (inclusive).
    pub min: Option<f64>,
    /// Largest valid value (inclusive).
    pub max: Option<f64>,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory of the model package (`model.toml` + `model.onnx`).
    pub path: PathBuf,
}

/// `[alerts]`
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Fault probability at or above which a window counts as bad; default:
    /// the model package's `[alert] threshold`.
    pub threshold: Option<f64>,
    /// Optional lower band: windows at or above it open an alert of
    /// severity warning; at or above `threshold` it is critical.
    pub warning: Option<f64>,
    /// Consecutive bad windows before an alert opens (default 1).
    pub raise_after: u32,
    /// Consecutive good windows before an alert clears (default 2).
    pub clear_after: u32,
    /// A window is good only below `threshold - hysteresis` (default 0.1).
    pub hysteresis: f64,
}

/// Which scores raise alerts (`baseline.alerts_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertsFrom {
    /// The model only; baselines learn and score alongside, shown on the
    /// dashboard but never alerting (a trial run).
    Model,
    /// The baselines only.
    Baseline,
    /// Either: a window is judged by the higher of the two.
    Both,
}

/// `[baseline]`: per-device baselines of normal (README "Baselines").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSection {
    /// Window features each device's baseline learns, as `<signal>.<stat>`
    /// (section 2's names, e.g. `"Temperature.mean"`); at most 64.
    pub features: Vec<String>,
    /// Which scores raise alerts: `"model"`, `"baseline"` or `"both"`
    /// (default: `"both"` with a `[model]`, `"baseline"` without).
    #[serde(default)]
    pub alerts_from: Option<AlertsFrom>,
    /// Windows with every feature learnt before the baseline is fitted
    /// (default 40: SKAB's 400 training seconds at 10 s windows). The
    /// warm-up takes `warmup_windows × window.size` of normal running.
    #[serde(default = "default_warmup")]
    pub warmup_windows: usize,
    /// Principal components for T² (default 1).
    #[serde(default = "default_components")]
    pub components: usize,
    /// Quantile of the warm-up's own scores the limits start from (default 0.99).
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// T²'s limit: the quantile times this (default 2).
    #[serde(default = "default_t2_margin")]
    pub t2_margin: f64,
    /// Q's limit likewise (default 8: a short warm-up sees little of Q's tail).
    #[serde(default = "default_q_margin")]
    pub q_margin: f64,
    /// Slow adaptation: after each window judged normal the baseline's mean
    /// moves this share of the way to it (default 0.1; 0: never), so that a
    /// slow drift of a level (a fluid warming up) does not alarm.
    #[serde(default = "default_adapt_rate")]
    pub adapt_rate: f64,
    /// A window is normal for adaptation when its ratio to the limits is
    /// below this (default 0.5).
    #[serde(default = "default_adapt_below")]
    pub adapt_below: f64,
}

fn default_warmup() -> usize {
    crate::baseline::tuned::WARMUP_WINDOWS
}
fn default_components() -> usize {
    crate::baseline::tuned::COMPONENTS
}
fn default_quantile() -> f64 {
    crate::baseline::tuned::QUANTILE
}
fn default_t2_margin() -> f64 {
    crate::baseline::tuned::T2_MARGIN
}
fn default_adapt_rate() -> f64 {
    crate::baseline::tuned::ADAPT_RATE
}
fn default_q_margin() -> f64 {
    crate::baseline::tuned::Q_MARGIN
}
fn default_adapt_below() -> f64 {
    crate::baseline::tuned::ADAPT_BELOW
}

/// Features a baseline may learn: its parameters grow with their square.
pub const MAX_BASELINE_FEATURES: usize = 64;
/// Warm-up windows at most: a learning device holds them all.
pub const MAX_WARMUP_WINDOWS: usize = 1000;

impl BaselineSection {
    /// The defaults, learning `features`.
    pub fn with_features(features: Vec<String>) -> Self {
        BaselineSection {
            features,
            alerts_from: None,
            warmup_windows: default_warmup(),
            components: default_components(),
            quantile: default_quantile(),
            t2_margin: default_t2_margin(),
            q_margin: default_q_margin(),
            adapt_rate: default_adapt_rate(),
            adapt_below: default_adapt_below(),
        }
    }

    pub fn baseline(&self) -> crate::baseline::BaselineConfig {
        crate::baseline::BaselineConfig {
            features: self.features.clone(),
            warmup_windows: self.warmup_windows,
            fit: crate::baseline::FitConfig {
                components: self.components,
                quantile: self.quantile,
                t2_margin: self.t2_margin,
                q_margin: self.q_margin,
            },
            adapt_rate: self.adapt_rate,
            adapt_below: self.adapt_below,
        }
    }
}

impl Config {
    /// Which scores raise alerts (see [`AlertsFrom`]).
    pub fn alerts_from(&self) -> AlertsFrom {
        match &self.baseline {
            None => AlertsFrom::Model,
            Some(b) => {
                b.alerts_from.unwrap_or(if self.model.is_some() { AlertsFrom::Both } else { AlertsFrom::Baseline })
            }
        }
    }
}

/// `[[sink]]`, chosen by `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    Kafka(KafkaSink),
}

/// `[[sink]] type = "kafka"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSink {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Alert topic (default `alert-signals`).
    #[serde(default = "default_alert_topic")]
    pub topic: String,
    /// librdkafka properties passed through, as for a Kafka source.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_alert_topic() -> String {
    "alert-signals".to_owned()
}

// Defaults, in one place.

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: PathBuf::from("/var/lib/faultline"), checkpoint_interval: Duration::from_secs(1) }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".to_owned(), tls_cert_file: None, tls_key_file: None, auth: None }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            size: Duration::from_secs(300),
            max_out_of_orderness: Duration::from_secs(10),
            allowed_lateness: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        let d = crate::decode::DecodeLimits::default();
        IngestConfig {
            max_payload_bytes: d.max_payload_bytes,
            max_signals_per_reading: d.max_signals_per_reading,
            max_future: Duration::from_millis(d.max_future_ms.unsigned_abs()),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let s = crate::window::StateLimits::default();
        LimitsConfig {
            max_devices: s.max_devices,
            max_signals_per_device: s.max_signals_per_device,
            max_open_windows_per_device: s.max_open_windows_per_device,
            late_store: s.late_store,
            quarantine: 1000,
            device_ttl: Duration::from_millis(s.device_ttl_ms.unsigned_abs()),
            outbox: 100_000,
            window_history: crate::state::WINDOWS_PER_DEVICE,
            window_history_total: crate::state::WINDOWS_TOTAL,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { threshold: None, warning: None, raise_after: 1, clear_after: 2, hysteresis: 0.1 }
    }
}

/// Milliseconds in a duration, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowConfig {
    pub fn spec(&self) -> crate::window::WindowSpec {
        crate::window::WindowSpec {
            size_ms: millis(self.size),
            max_out_of_orderness_ms: millis(self.max_out_of_orderness),
            allowed_lateness_ms: millis(self.allowed_lateness),
            idle_timeout_ms: millis(self.idle_timeout),
        }
    }
}

impl IngestConfig {
    pub fn decode_limits(&self) -> crate::decode::DecodeLimits {
        crate::decode::DecodeLimits {
            max_payload_bytes: self.max_payload_bytes,
            max_signals_per_reading: self.max_signals_per_reading,
            max_future_ms: millis(self.max_future),
            ..Default::default()
        }
    }
}

impl LimitsConfig {
    pub fn state_limits(&self) -> crate::window::StateLimits {
        crate::window::StateLimits {
            max_devices: self.max_devices,
            max_signals_per_device: self.max_signals_per_device,
            max_open_windows_per_device: self.max_open_windows_per_device,
            late_store: self.late_store,
            device_ttl_ms: millis(self.device_ttl),
        }
    }
}

impl CleaningConfig {
    pub fn cleaning(&self) -> crate::clean::Cleaning {
        crate::clean::Cleaning::new(
            self.signals
                .iter()
                .map(|(name, r)| crate::clean::Rule { signal: name.clone(), min: r.min, max: r.max })
                .collect(),
        )
    }
}

impl Config {
    /// Parses and validates a configuration; `Err` lists every problem.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(loaded) = load::load(text, &mut problems) else { return Err(problems) };
        validate::validate(&loaded.config, &loaded.failed, &mut problems);
        if problems.is_empty() {
            Ok(loaded.config)
        } else {
            Err(problems)
        }
    }

    /// Reads, parses and validates the file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Config, Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem { key: String::new(), message: format!("cannot read {}: {e}", path.display()) }]
        })?;
        Config::from_toml(&text)
    }

    /// The window engine this configuration describes.
    pub fn engine(&self) -> crate::window::Engine {
        crate::window::Engine::new(self.window.spec(), self.limits.state_limits(), self.cleaning.cleaning())
    }
}

/// Serde for durations written as `"30s"`, `"5m"`, `"1h 30m"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write it like \"30s\", \"5m\" or \"1h\""))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC 6's example, verbatim but for the model path (checked to exist).
    const SPEC_EXAMPLE: &str = r#"
[state]
dir = "/var/lib/faultline"
[http]
listen = "127.0.0.1:8080"
[window]
size = "5m"
max_out_of_orderness = "10s"
allowed_lateness = "1m"
idle_timeout = "10m"
[[source]]
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
topics = ["sensors/+/telemetry"]
device_from_topic = "sensors/{device_id}/telemetry"
client_id = "faultline"
[[source]]
type = "kafka"
brokers = "127.0.0.1:9092"
topics = ["sensor-data"]
group_id = "faultline"
[cleaning.signals.Temperature]
min = 0.0
max = 100.0
[alerts]
threshold = 0.8
raise_after = 1      # consecutive windows at or above threshold
clear_after = 2      # consecutive windows below threshold - hysteresis
hysteresis = 0.1
[[sink]]
type = "kafka"
brokers = "127.0.0.1:9092"
topic = "alert-signals"
"#;

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_spec_example_parses() {
        let c = Config::from_toml(SPEC_EXAMPLE).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(c.window.size, Duration::from_secs(300));
        assert_eq!(c.window.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.sources.len(), 2);
        let SourceConfig::Mqtt(m) = &c.sources[0] else { panic!("not mqtt") };
        assert_eq!(m.device_from_topic.as_deref(), Some("sensors/{device_id}/telemetry"));
        assert_eq!(c.cleaning.signals["Temperature"], SignalRange { min: Some(0.0), max: Some(100.0) });
        assert_eq!(c.alerts.threshold, Some(0.8));
        assert_eq!(
            c.sinks,
            vec![SinkConfig::Kafka(KafkaSink {
                brokers: "127.0.0.1:9092".into(),
                topic: "alert-signals".into(),
                options: BTreeMap::new()
            })]
        );
        assert_eq!(c.limits, LimitsConfig::default());
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = Config::from_toml("[[source]]\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopics = [\"t\"]\n").unwrap();
        assert_eq!(c.window, WindowConfig::default());
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        let SourceConfig::Kafka(k) = &c.sources[0] else { panic!("not kafka") };
        assert_eq!(k.group_id, "faultline");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[window]
size = "5 minutes please"
sise = "5m"
idle_timout = "1m"
[limits]
max_devices = 0
[alerts]
threshold = 1.5
raise_after = "two"
[cleaning.signals.Temperature]
min = 100.0
max = 0.0
[[source]]
type = "mqtt"
topics = ["a/#/b"]
[[source]]
type = "amqp"
[[source]]
type = "kafka"
brokers = "nohost"
topics = ["bad topic"]
extra = 1
[[sink]]
type = "kafka"
brokers = "k:9092"
topic = "alerts"
[surprise]
x = 1
"#;
        let got = problems(text);
        let want = [
            "window.size: invalid duration",
            "window.sise: unknown field",
            "window.idle_timout: unknown field",
            "limits.max_devices: must be at least 1",
            "alerts.raise_after: invalid type",
            "cleaning.signals.Temperature.min: 100 is above max 0",
            "source[0]: missing field `url`",
            "source[1].type: unknown source type \"amqp\"",
            "source[2].extra: unknown field",
            "surprise: unknown key",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
        }
        // alerts failed to load, so its threshold is not validated on top.
        assert!(!got.iter().any(|g| g.starts_with("alerts.threshold")), "{got:#?}");
        // The kafka source with an unknown key failed to load, so its bad brokers are not piled on.
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn semantic_problems_of_loaded_sections() {
        let text = r#"
[http]
listen = "localhost"
[window]
size = "0s"
idle_timeout = "0s"
[alerts]
threshold = 1.5
hysteresis = 1.0
clear_after = 0
[model]
path = "/nonexistent/model"
[[source]]
type = "mqtt"
url = "tcp://broker:1883"
topics = ["a/#/b", "ok/+/x", "bad+/x"]
device_from_topic = "a/{device_id}x/b"
[[source]]
type = "kafka"
brokers = "k1:9092,nohost"
topics = ["bad topic"]
group_id = ""
[[sink]]
type = "kafka"
brokers = ""
topic = ""
"#;
        let got = problems(text);
        for w in [
            "http.listen:",
            "window.size: must be at least 1ms",
            "window.idle_timeout: must be at least 1ms",
            "alerts.threshold: must be between 0 and 1",
            "alerts.hysteresis:",
            "alerts.clear_after: must be at least 1",
            "model.path: /nonexistent/model is not a directory",
            "source[0].url: \"tcp://broker:1883\" must start with mqtt://",
            "source[0].topics[0]: \"a/#/b\": # must be the whole last level",
            "source[0].topics[2]: \"bad+/x\": + must fill a whole level",
            "source[0].device_from_topic:",
            "source[1].brokers: \"nohost\" needs a port",
            "source[1].topics[0]: \"bad topic\" is not a Kafka topic name",
            "source[1].group_id: must not be empty",
            "sink[0].brokers:",
            "sink[0].topic:",
        ] {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
        }
        assert!(!got.iter().any(|g| g.starts_with("source[0].topics[1]")), "{got:#?}");
    }

    #[test]
    fn daemon_keys_are_checked() {
        let text = r#"
[state]
checkpoint_interval = "0s"
[[source]]
type = "mqtt"
url = "mqtt://b:1883"
topics = ["t"]
password = "x"
ca_file = "/etc/ca.pem"
client_cert_file = "/etc/c.pem"
[[source]]
type = "kafka"
brokers = "k:9092"
topics = ["t"]
options = { "enable.auto.commit" = "true", "fetch.min.bytes" = "1" }
[[sink]]
type = "kafka"
brokers = "k:9092"
[[sink]]
type = "kafka"
brokers = "k:9092"
"#;
        let got = problems(text);
        for w in [
            "source[0].password: a password needs a username",
            "source[0].ca_file: only used with an mqtts:// url",
            "source[0].client_cert_file: only used with an mqtts:// url",
            "source[0].client_cert_file: client_cert_file and client_key_file go together",
            "source[1].options.enable.auto.commit: faultline sets this itself",
            "sink[1]: one [[sink]] is supported",
            "state.checkpoint_interval: must be between 10ms and 1h",
        ] {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
        }
        assert_eq!(got.len(), 7, "{got:#?}");
    }

    #[test]
    fn no_sources_is_an_error_and_bad_toml_says_where() {
        assert_eq!(problems(""), vec!["source: no [[source]]: faultline needs at least one place to read from"]);
        let got = problems("[window\nsize = 1");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("not valid TOML") && got[0].contains("line 1"), "{got:?}");
    }

    #[test]
    fn wrong_shapes_for_arrays_of_tables() {
        let got = problems("source = \"mqtt\"\n");
        assert_eq!(got, vec!["source: expected an array of tables: write [[source]]"]);
        let got = problems("[[source]]\nurl = \"mqtt://a:1\"\n");
        assert_eq!(got, vec!["source[0].type: missing; say which kind this is"]);
    }

    #[test]
    fn the_baseline_section_parses_with_defaults_and_its_problems_are_named() {
        let src = "[[source]]\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopics = [\"t\"]\n";
        let c = Config::from_toml(&format!("{src}[baseline]\nfeatures = [\"T.mean\", \"P.std\"]\n")).unwrap();
        let b = c.baseline.as_ref().unwrap();
        assert_eq!((b.warmup_windows, b.components, b.quantile, b.t2_margin, b.q_margin), (40, 1, 0.99, 2.0, 8.0));
        assert_eq!((b.adapt_rate, b.adapt_below), (0.1, 0.5));
        assert_eq!(c.alerts_from(), AlertsFrom::Baseline, "no model: the baselines alert");
        assert_eq!(Config::from_toml(src).unwrap().alerts_from(), AlertsFrom::Model);
        let got = problems(&format!(
            "{src}[baseline]\nfeatures = [\"T.mean\", \"T.mean\", \"T.median\", \"nodot\"]\nwarmup_windows = 2\n\
             components = 9\nquantile = 0\nq_margin = -1\nadapt_rate = 1\nalerts_from = \"both\"\n"
        ));
        for key in [
            "baseline.features[1]",
            "baseline.features[2]",
            "baseline.features[3]",
            "baseline.warmup_windows",
            "baseline.components",
            "baseline.quantile",
            "baseline.q_margin",
            "baseline.adapt_rate",
            "baseline.alerts_from",
        ] {
            assert!(got.iter().any(|p| p.starts_with(&format!("{key}:"))), "{key} not in {got:#?}");
        }
        let got = problems(&format!("{src}[baseline]\nfeatures = [\"T.mean\"]\nalerts_from = \"sometimes\"\n"));
        assert!(got[0].starts_with("baseline.alerts_from"), "{got:?}");
    }
}
