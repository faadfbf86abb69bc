//! Every metric name faultline emits, with its help text, in one place
//! (SPEC 8).
//!
//! The hot path never touches the metrics registry: the pipeline keeps
//! plain counters, and [`publish_pipeline`] copies them into the registry
//! from one call site (about once a second, and before a scrape), so there
//! is no label lookup per reading.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use crate::pipeline::Pipeline;
use crate::scoring::Scorer;
use crate::window::Limit;

pub const READINGS_TOTAL: &str = "faultline_readings_total";
pub const READINGS_REJECTED_TOTAL: &str = "faultline_readings_rejected_total";
pub const READINGS_LATE_TOTAL: &str = "faultline_readings_late_total";
pub const PAYLOADS_TOTAL: &str = "faultline_payloads_total";
pub const VALUES_DROPPED_TOTAL: &str = "faultline_values_dropped_total";
pub const WINDOWS_CLOSED_TOTAL: &str = "faultline_windows_closed_total";
pub const WINDOWS_UPDATED_TOTAL: &str = "faultline_windows_updated_total";
pub const LIMIT_HITS_TOTAL: &str = "faultline_limit_hits_total";
pub const DEVICES: &str = "faultline_devices";
pub const DEVICES_FORGOTTEN_TOTAL: &str = "faultline_devices_forgotten_total";
pub const OPEN_WINDOWS: &str = "faultline_open_windows";
pub const LATE_STORE_SIZE: &str = "faultline_late_store_size";
pub const QUARANTINE_SIZE: &str = "faultline_quarantine_size";
pub const INFERENCE_SECONDS: &str = "faultline_inference_seconds";
pub const ALERTS_TOTAL: &str = "faultline_alerts_total";
pub const ALERTS_CLEARED_TOTAL: &str = "faultline_alerts_cleared_total";
pub const WINDOWS_UNSCORED_TOTAL: &str = "faultline_windows_unscored_total";
pub const MODEL_INFO: &str = "faultline_model_info";
pub const ALERT_OUTBOX_PENDING: &str = "faultline_alert_outbox_pending";
pub const ALERT_OUTBOX_DROPPED_TOTAL: &str = "faultline_alert_outbox_dropped_total";
pub const CHECKPOINTS_TOTAL: &str = "faultline_checkpoints_total";
pub const CHECKPOINT_FAILURES_TOTAL: &str = "faultline_checkpoint_failures_total";
pub const CHECKPOINT_SECONDS: &str = "faultline_checkpoint_seconds";
pub const CHECKPOINT_BYTES: &str = "faultline_checkpoint_bytes";
pub const SOURCE_CONNECTED: &str = "faultline_source_connected";
pub const SOURCE_RECONNECTS_TOTAL: &str = "faultline_source_reconnects_total";
pub const SOURCE_BACKLOG: &str = "faultline_source_backlog";
pub const SOURCE_BACKLOG_BYTES: &str = "faultline_source_backlog_bytes";
pub const UNACKNOWLEDGED: &str = "faultline_unacknowledged_messages";
pub const KAFKA_CONSUMER_LAG: &str = "faultline_kafka_consumer_lag";
pub const REDELIVERED_SKIPPED_TOTAL: &str = "faultline_redelivered_skipped_total";
pub const FALSE_ALERTS_TOTAL: &str = "faultline_false_alerts_total";
pub const BUILD_INFO: &str = "faultline_build_info";
pub const WINDOW_CLOSE_DELAY_SECONDS: &str = "faultline_window_close_delay_seconds";
pub const ALERT_DELIVERY_SECONDS: &str = "faultline_alert_delivery_seconds";
pub const STATE_BYTES: &str = "faultline_state_bytes";
pub const CONFIG_RELOADS_TOTAL: &str = "faultline_config_reloads_total";
pub const BASELINES: &str = "faultline_baselines";
pub const BASELINE_FITS_TOTAL: &str = "faultline_baseline_fits_total";
pub const BASELINE_RESETS_TOTAL: &str = "faultline_baseline_resets_total";

/// Histogram buckets (upper bounds, seconds), chosen for what each measures.
const BUCKETS: &[(&str, &[f64])] = &[
    // One batch of windows through tract: microseconds to tens of milliseconds.
    (INFERENCE_SECONDS, &[5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1]),
    // One sled transaction + flush.
    (CHECKPOINT_SECONDS, &[1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
    // A window's end (event time) to its emission (wall clock): out-of-orderness, idle timeouts, replays.
    (
        WINDOW_CLOSE_DELAY_SECONDS,
        &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0],
    ),
    // An alert record made to Kafka's acknowledgement of it; finer around
    // issue 7's goal of a p99 under 20 ms.
    (
        ALERT_DELIVERY_SECONDS,
        &[
            1e-3, 2.5e-3, 5e-3, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0, 30.0, 60.0,
        ],
    ),
];

static EXPORTER: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls get the
/// same handle) with the buckets above, the help texts and build info.
pub fn exporter() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    EXPORTER
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let mut b = PrometheusBuilder::new();
            for (name, buckets) in BUCKETS {
                b = match b.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!("metrics: buckets of {name}: {e}");
                        return None;
                    }
                };
            }
            match b.install_recorder() {
                Ok(h) => {
                    describe();
                    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(h)
                }
                Err(e) => {
                    tracing::error!("metrics: cannot install the Prometheus recorder: {e}");
                    None
                }
            }
        })
        .clone()
}

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_counter!(READINGS_TOTAL, "Readings decoded and handed to the window engine, by source.");
    describe_counter!(PAYLOADS_TOTAL, "Payloads (MQTT messages, Kafka records) received, by source.");
    describe_counter!(READINGS_REJECTED_TOTAL, "Payloads or readings refused, by reason.");
    describe_counter!(READINGS_LATE_TOTAL, "Readings later than the allowed lateness, kept in the late store.");
    describe_counter!(VALUES_DROPPED_TOTAL, "Values dropped by cleaning rules, by signal and reason.");
    describe_counter!(WINDOWS_CLOSED_TOTAL, "Windows closed (by watermark, idle timeout, limit or flush).");
    describe_counter!(WINDOWS_UPDATED_TOTAL, "Closed windows re-emitted after a late reading.");
    describe_counter!(LIMIT_HITS_TOTAL, "Times a state bound was hit, by limit.");
    describe_gauge!(DEVICES, "Devices with state in the window engine.");
    describe_counter!(DEVICES_FORGOTTEN_TOTAL, "Devices dropped after limits.device_ttl of silence.");
    describe_gauge!(OPEN_WINDOWS, "Windows open over all devices.");
    describe_gauge!(LATE_STORE_SIZE, "Late readings held in the late store.");
    describe_gauge!(QUARANTINE_SIZE, "Refused payloads held in the quarantine.");
    describe_histogram!(
        INFERENCE_SECONDS,
        Unit::Seconds,
        "Time to assemble the features of a batch of closed windows and run the model on it."
    );
    describe_counter!(ALERTS_TOTAL, "Alerts raised (opened or escalated), by severity.");
    describe_counter!(ALERTS_CLEARED_TOTAL, "Alerts cleared.");
    describe_counter!(WINDOWS_UNSCORED_TOTAL, "Windows whose score was NaN (missing features and no fill).");
    describe_gauge!(MODEL_INFO, "The running model package: 1 for its name and version.");
    describe_gauge!(ALERT_OUTBOX_PENDING, "Alert records in the outbox, not yet confirmed by Kafka.");
    describe_counter!(ALERT_OUTBOX_DROPPED_TOTAL, "Alert records dropped from a full outbox (limits.outbox).");
    describe_counter!(CHECKPOINTS_TOTAL, "Checkpoints written.");
    describe_counter!(CHECKPOINT_FAILURES_TOTAL, "Checkpoints that failed (nothing acknowledged then).");
    describe_histogram!(CHECKPOINT_SECONDS, Unit::Seconds, "Time to write and flush a checkpoint.");
    describe_gauge!(CHECKPOINT_BYTES, "Bytes of records written by the last checkpoint.");
    describe_gauge!(SOURCE_CONNECTED, "1 while a source is connected (Kafka: has partitions), by source.");
    describe_counter!(SOURCE_RECONNECTS_TOTAL, "Connection losses of a source, by source.");
    describe_gauge!(SOURCE_BACKLOG, "Messages waiting between the sources and the processing loop.");
    describe_gauge!(
        SOURCE_BACKLOG_BYTES,
        "Payload bytes waiting between the sources and the processing loop (at most 4 MiB; full: the sources stop reading)."
    );
    describe_gauge!(
        UNACKNOWLEDGED,
        "Messages processed but not yet covered by a checkpoint: their MQTT acknowledgements and Kafka commits wait."
    );
    describe_gauge!(KAFKA_CONSUMER_LAG, "Records between a partition's end and the group's committed offset.");
    describe_counter!(
        REDELIVERED_SKIPPED_TOTAL,
        "Messages a broker delivered again that a checkpoint already covered."
    );
    describe_counter!(FALSE_ALERTS_TOTAL, "Alerts that maintenance feedback called false alarms.");
    describe_gauge!(BUILD_INFO, "1, labelled with the faultline version.");
    describe_histogram!(
        WINDOW_CLOSE_DELAY_SECONDS,
        Unit::Seconds,
        "Wall-clock time from a window's end (event time) to its emission."
    );
    describe_histogram!(
        ALERT_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time from an alert record being made to Kafka acknowledging it."
    );
    describe_gauge!(STATE_BYTES, "Size of the state database (sled) on disk.");
    describe_counter!(CONFIG_RELOADS_TOTAL, "Configuration reloads on SIGHUP, by result (applied, refused).");
    describe_gauge!(BASELINES, "Devices' baselines of normal, by state (learning, active).");
    describe_counter!(BASELINE_FITS_TOTAL, "Baselines fitted at the end of a warm-up since start.");
    describe_counter!(BASELINE_RESETS_TOTAL, "Baselines reset to learn again since start (machine serviced).");
}

/// Copies the pipeline's counters into the metrics registry.
pub fn publish_pipeline(p: &Pipeline) {
    for s in p.sources() {
        counter!(READINGS_TOTAL, "source" => s.name.clone()).absolute(s.readings);
        counter!(PAYLOADS_TOTAL, "source" => s.name.clone()).absolute(s.payloads);
    }
    for (reason, n) in p.rejected() {
        counter!(READINGS_REJECTED_TOTAL, "reason" => reason.as_str()).absolute(n);
    }
    let e = p.engine();
    let c = e.counters();
    counter!(READINGS_LATE_TOTAL).absolute(c.late);
    counter!(WINDOWS_CLOSED_TOTAL).absolute(c.windows_closed);
    counter!(WINDOWS_UPDATED_TOTAL).absolute(c.windows_updated);
    counter!(DEVICES_FORGOTTEN_TOTAL).absolute(c.devices_forgotten);
    for l in Limit::ALL {
        counter!(LIMIT_HITS_TOTAL, "limit" => l.as_str()).absolute(c.limit_hits[l as usize]);
    }
    for (signal, reason, n) in e.cleaning().dropped() {
        counter!(VALUES_DROPPED_TOTAL, "signal" => signal.to_owned(), "reason" => reason.as_str()).absolute(n);
    }
    gauge!(DEVICES).set(e.device_count() as f64);
    gauge!(OPEN_WINDOWS).set(e.open_window_count() as f64);
    gauge!(LATE_STORE_SIZE).set(e.late_store().len() as f64);
    gauge!(QUARANTINE_SIZE).set(p.quarantine().len() as f64);
}

/// Copies the scoring stage's counters and the model's identity into the registry.
pub fn publish_scoring(s: &Scorer) {
    let c = s.policy().counters();
    for sev in [crate::alerts::Severity::Warning, crate::alerts::Severity::Critical] {
        counter!(ALERTS_TOTAL, "severity" => sev.as_str()).absolute(c.raised[sev as usize]);
    }
    counter!(ALERTS_CLEARED_TOTAL).absolute(c.cleared);
    counter!(WINDOWS_UNSCORED_TOTAL).absolute(c.unscored);
    for (name, version) in s.retired() {
        gauge!(MODEL_INFO, "name" => name.to_string(), "version" => version.to_string()).set(0.0);
    }
    if let Some(m) = s.model() {
        let p = &m.package;
        gauge!(MODEL_INFO, "name" => p.name.clone(), "version" => p.version.clone()).set(1.0);
    }
    if let Some(b) = s.baselines() {
        let (learning, active) = b.counts();
        gauge!(BASELINES, "state" => "learning").set(learning as f64);
        gauge!(BASELINES, "state" => "active").set(active as f64);
        counter!(BASELINE_FITS_TOTAL).absolute(b.fitted);
        counter!(BASELINE_RESETS_TOTAL).absolute(b.resets);
    }
}

/// Alert records waiting for the alert topic.
pub fn outbox_pending(n: u64) {
    gauge!(ALERT_OUTBOX_PENDING).set(n as f64);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;
    use crate::clean::{Cleaning, Rule};
    use crate::decode::DecodeLimits;
    use crate::window::{Engine, StateLimits, WindowSpec};

    /// Captures the last value of every series, keyed `name{label=value,...}`.
    #[derive(Default, Clone)]
    struct Capture(Arc<Mutex<BTreeMap<String, f64>>>);

    struct Series(String, Capture);

    impl Capture {
        fn set(&self, k: &str, v: f64) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(k.to_owned(), v);
        }
        fn get(&self, k: &str) -> Option<f64> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).get(k).copied()
        }
    }

    impl CounterFn for Series {
        fn increment(&self, _: u64) {}
        fn absolute(&self, v: u64) {
            self.1.set(&self.0, v as f64);
        }
    }

    impl GaugeFn for Series {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, v: f64) {
            self.1.set(&self.0, v);
        }
    }

    fn series(key: &Key) -> String {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Series(series(key), self.clone())))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Series(series(key), self.clone())))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn publishes_every_pipeline_counter_under_its_name_and_labels() {
        let spec = WindowSpec {
            size_ms: 60_000,
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            idle_timeout_ms: 600_000,
        };
        let limits = StateLimits { max_devices: 1, ..Default::default() };
        let cleaning = Cleaning::new(vec![Rule { signal: "t".into(), min: None, max: Some(100.0) }]);
        let mut p = Pipeline::new(DecodeLimits::default(), Engine::new(spec, limits, cleaning), 10);
        let src = p.source("mqtt");
        let mut out = Vec::new();
        for payload in [
            r#"{"device_id":"a","ts":0,"t":50}"#,
            r#"{"device_id":"a","ts":1,"t":500}"#,
            r#"{"device_id":"b","ts":0,"t":1}"#,
            r#"{"device_id":"a","ts":60000,"t":1}"#,
            r#"{"device_id":"a","ts":5,"t":1}"#,
            "garbage",
        ] {
            p.ingest(src, payload.as_bytes(), None, 100_000, &mut out);
        }
        let c = Capture::default();
        metrics::with_local_recorder(&c, || publish_pipeline(&p));
        assert_eq!(c.get("faultline_readings_total{source=mqtt}"), Some(4.0));
        assert_eq!(c.get("faultline_payloads_total{source=mqtt}"), Some(6.0));
        assert_eq!(c.get("faultline_readings_rejected_total{reason=malformed_json}"), Some(1.0));
        assert_eq!(c.get("faultline_readings_rejected_total{reason=device_limit}"), Some(1.0));
        assert_eq!(c.get("faultline_readings_rejected_total{reason=bad_time}"), Some(0.0), "every reason is published");
        assert_eq!(c.get("faultline_readings_late_total{}"), Some(1.0));
        assert_eq!(c.get("faultline_windows_closed_total{}"), Some(1.0));
        assert_eq!(c.get("faultline_limit_hits_total{limit=devices}"), Some(1.0));
        assert_eq!(c.get("faultline_limit_hits_total{limit=late_store}"), Some(0.0));
        assert_eq!(c.get("faultline_values_dropped_total{signal=t,reason=above_max}"), Some(1.0));
        assert_eq!(c.get("faultline_devices{}"), Some(1.0));
        assert_eq!(c.get("faultline_open_windows{}"), Some(1.0));
        assert_eq!(c.get("faultline_late_store_size{}"), Some(1.0));
        assert_eq!(c.get("faultline_quarantine_size{}"), Some(2.0));
    }
}

#[cfg(test)]
mod dashboard {
    /// Every `faultline_*` name the Grafana dashboard queries is one we emit.
    #[test]
    fn the_grafana_dashboard_uses_only_our_names() {
        let text = include_str!("../packaging/grafana-dashboard.json");
        let ours = include_str!("metrics.rs");
        let mut seen = 0;
        for (i, _) in text.match_indices("faultline_") {
            let name: String =
                text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
            let base = name.trim_end_matches("_bucket");
            assert!(ours.contains(&format!("\"{base}\"")), "{base} is not a metric of src/metrics.rs");
            seen += 1;
        }
        assert!(seen >= 20, "{seen}");
    }
}
