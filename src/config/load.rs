//! TOML text → [`Config`], collecting every problem with its key.
//!
//! serde stops at the first error, so each section is deserialized on its
//! own, and within a section an offending key is reported, taken out of
//! the table, and the section tried again, until it parses or the problem
//! is one that removing a key cannot get past (a missing field). That
//! way two unknown keys and a bad duration in one file are three lines of
//! output, each naming its key, while the structs keep
//! `deny_unknown_fields` as their contract.

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{
    AlertsConfig, BaselineSection, CleaningConfig, Config, HttpConfig, IngestConfig, KafkaSink, KafkaSource,
    LimitsConfig, ModelConfig, MqttSource, SinkConfig, SourceConfig, StateConfig, WindowConfig,
};

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `window.size` or `source[0].url`; empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

pub(super) fn problem(problems: &mut Vec<Problem>, key: impl Into<String>, message: impl Into<String>) {
    problems.push(Problem { key: key.into(), message: message.into() });
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (_, true) => prefix.to_owned(),
        (true, false) => path.to_owned(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Removes the value at `path` (serde_path_to_error segments) from `v`.
fn remove_path(v: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segs.split_last() else { return false };
    let mut cur = v;
    for s in parents {
        cur = match (s, cur) {
            (Segment::Map { key }, Value::Table(t)) => match t.get_mut(key.as_str()) {
                Some(next) => next,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// Deserializes `value` as `T`, reporting each problem under `prefix`.
/// Returns `None` if there was any problem.
fn section<T: DeserializeOwned>(mut value: Value, prefix: &str, problems: &mut Vec<Problem>) -> Option<T> {
    let mut clean = true;
    // Each round removes one key, so this ends; the bound is a guard only.
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return clean.then_some(t),
            Err(e) => {
                clean = false;
                let path = e.path().clone();
                let message = e.into_inner().message().to_owned();
                problem(problems, join(prefix, &path.to_string()), message);
                if !remove_path(&mut value, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// Splits an array of `type`-tagged tables and hands each to `f` with its
/// key prefix and type name.
fn tagged<T>(
    value: Value,
    name: &str,
    problems: &mut Vec<Problem>,
    mut f: impl FnMut(&str, &str, Value, &mut Vec<Problem>) -> Option<T>,
) -> Vec<T> {
    let Value::Array(items) = value else {
        problem(problems, name, format!("expected an array of tables: write [[{name}]]"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("{name}[{i}]");
        let Value::Table(mut t) = item else {
            problem(problems, prefix, "expected a table");
            continue;
        };
        match t.remove("type") {
            Some(Value::String(kind)) => {
                if let Some(x) = f(&prefix, &kind, Value::Table(t), problems) {
                    out.push(x);
                }
            }
            Some(_) => problem(problems, format!("{prefix}.type"), "expected a string"),
            None => problem(problems, format!("{prefix}.type"), "missing; say which kind this is"),
        }
    }
    out
}

/// A parsed configuration and the top-level sections that had problems
/// (validation skips those, so it does not report knock-on effects).
pub(super) struct Loaded {
    pub config: Config,
    pub failed: Vec<String>,
}

pub(super) fn load(text: &str, problems: &mut Vec<Problem>) -> Option<Loaded> {
    let table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problem(problems, "", format!("not valid TOML: {}", e.to_string().trim_end()));
            return None;
        }
    };
    let mut c = Config::default();
    let mut failed = Vec::new();
    for (key, value) in table {
        let before = problems.len();
        match key.as_str() {
            "state" => c.state = section::<StateConfig>(value, "state", problems).unwrap_or_default(),
            "http" => c.http = section::<HttpConfig>(value, "http", problems).unwrap_or_default(),
            "window" => c.window = section::<WindowConfig>(value, "window", problems).unwrap_or_default(),
            "ingest" => c.ingest = section::<IngestConfig>(value, "ingest", problems).unwrap_or_default(),
            "limits" => c.limits = section::<LimitsConfig>(value, "limits", problems).unwrap_or_default(),
            "cleaning" => c.cleaning = section::<CleaningConfig>(value, "cleaning", problems).unwrap_or_default(),
            "model" => c.model = section::<ModelConfig>(value, "model", problems),
            "alerts" => c.alerts = section::<AlertsConfig>(value, "alerts", problems).unwrap_or_default(),
            "baseline" => c.baseline = section::<BaselineSection>(value, "baseline", problems),
            "source" => {
                c.sources = tagged(value, "source", problems, |prefix, kind, v, problems| match kind {
                    "mqtt" => section::<MqttSource>(v, prefix, problems).map(SourceConfig::Mqtt),
                    "kafka" => section::<KafkaSource>(v, prefix, problems).map(SourceConfig::Kafka),
                    other => {
                        problem(problems, format!("{prefix}.type"), format!("unknown source type {other:?}; expected \"mqtt\" or \"kafka\""));
                        None
                    }
                })
            }
            "sink" => {
                c.sinks = tagged(value, "sink", problems, |prefix, kind, v, problems| match kind {
                    "kafka" => section::<KafkaSink>(v, prefix, problems).map(SinkConfig::Kafka),
                    other => {
                        problem(problems, format!("{prefix}.type"), format!("unknown sink type {other:?}; expected \"kafka\""));
                        None
                    }
                })
            }
            other => problem(
                problems,
                other,
                "unknown key; expected one of state, http, window, ingest, limits, source, cleaning, model, alerts, baseline, sink",
            ),
        }
        if problems.len() > before {
            failed.push(key);
        }
    }
    Some(Loaded { config: c, failed })
}
