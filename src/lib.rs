//! faultline: a predictive-maintenance daemon for factory hosts.
//!
//! Data flows one way:
//!
//! ```text
//! sources → decode → clean → window (per device) → features → model → alerts → store/sinks
//! ```
//!
//! - [`model`]: model packages and the tract runtime (SPEC 3).
//! - [`alerts`]: the alert policy (SPEC 4).
//! - [`scoring`]: closed windows → model scores → alert records.
//! - [`reading`]: `Reading`, the one type every source produces, and the rejection reasons.
//! - [`decode`]: JSON payloads (SPEC 1) → readings.
//! - [`clean`]: per-signal range rules.
//! - [`window`]: event-time tumbling windows and their statistics (SPEC 2).
//! - [`pipeline`]: decode + clean + window for one payload, with counters and quarantine.
//! - [`sources`]: where readings come from (CSV files for `features` and `replay`).
//! - [`features`]: the same windows computed offline from CSV (`faultline features`).
//! - [`config`]: the TOML configuration (SPEC 6) and its validation.
//! - [`metrics`]: every metric name in one place.
//! - [`time`]: RFC 3339 / epoch-millisecond event times.
//! - [`state`]: the sled database: checkpoints of window and alert state, source positions, the alert outbox.
//! - [`daemon`]: `faultline run`: sources (MQTT, Kafka), the processing loop, checkpoints, the alert sink.
//! - [`demo`]: `faultline demo`: the bundled model and sample, streamed in-process.
//! - [`http`]: health, readiness and the JSON API (SPEC 7).
//! - [`replay`]: `faultline replay`: a data set published as readings over MQTT or Kafka.
//! - [`synth`]: synthetic plants of many devices for load runs (`replay --devices`).

pub mod alerts;
pub mod baseline;
pub mod bounded;
pub mod clean;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod demo;
pub mod evaluate;
pub mod features;
pub mod http;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod reading;
pub mod replay;
pub mod scoring;
pub mod sources;
pub mod state;
pub mod synth;
pub mod time;
pub mod window;

/// An error and its causes as one line, `outer: inner: innermost`, for
/// messages that are not printed through the command line's error chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
