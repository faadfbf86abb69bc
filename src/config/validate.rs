//! Checks that need more than types: ranges, cross-field rules, addresses,
//! topic syntax, files that must exist. Every problem is collected.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::load::problem;
use super::{Config, Problem, SinkConfig, SourceConfig};

pub(super) fn validate(c: &Config, failed: &[String], p: &mut Vec<Problem>) {
    let ok = |section: &str| !failed.iter().any(|f| f == section);
    if ok("state") && c.state.dir.as_os_str().is_empty() {
        problem(p, "state.dir", "must not be empty");
    }
    if ok("state") && c.state.dir.exists() && !c.state.dir.is_dir() {
        problem(p, "state.dir", format!("{} exists and is not a directory", c.state.dir.display()));
    }
    if ok("state") && !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&c.state.checkpoint_interval) {
        problem(p, "state.checkpoint_interval", "must be between 10ms and 1h");
    }
    if ok("http") {
        http(&c.http, p);
    }
    if ok("window") {
        let w = &c.window;
        if w.size < Duration::from_millis(1) {
            problem(p, "window.size", "must be at least 1ms");
        }
        if !w.size.subsec_nanos().is_multiple_of(1_000_000) {
            problem(p, "window.size", "must be a whole number of milliseconds");
        }
        if w.size > Duration::from_secs(366 * 86_400) {
            problem(p, "window.size", "must be at most a year");
        }
        if w.idle_timeout < Duration::from_millis(1) {
            problem(p, "window.idle_timeout", "must be at least 1ms");
        }
    }
    if ok("ingest") {
        if c.ingest.max_payload_bytes == 0 {
            problem(p, "ingest.max_payload_bytes", "must be at least 1");
        }
        if c.ingest.max_signals_per_reading == 0 {
            problem(p, "ingest.max_signals_per_reading", "must be at least 1");
        }
    }
    if ok("limits") {
        let l = &c.limits;
        for (key, v) in [
            ("limits.max_devices", l.max_devices),
            ("limits.max_signals_per_device", l.max_signals_per_device),
            ("limits.max_open_windows_per_device", l.max_open_windows_per_device),
        ] {
            if v == 0 {
                problem(p, key, "must be at least 1");
            }
        }
        if ok("window") && l.device_ttl < c.window.idle_timeout + c.window.allowed_lateness {
            problem(p, "limits.device_ttl", "must be at least window.idle_timeout + window.allowed_lateness");
        }
    }
    if ok("cleaning") {
        for (name, r) in &c.cleaning.signals {
            let key = |k: &str| format!("cleaning.signals.{name}.{k}");
            for (k, v) in [("min", r.min), ("max", r.max)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    problem(p, key(k), "must be a finite number");
                }
            }
            if let (Some(min), Some(max)) = (r.min, r.max) {
                if min > max {
                    problem(p, key("min"), format!("{min} is above max {max}"));
                }
            }
        }
    }
    if ok("model") {
        if let Some(m) = &c.model {
            if let Some(model) = check_model_dir(&m.path, p) {
                // Features of another window length are other features: the
                // scores would be meaningless without any error.
                if let Some(w) = model.package.training_window().filter(|w| ok("window") && *w != c.window.size) {
                    problem(
                        p,
                        "window.size",
                        format!(
                            "{} but the model was trained on {} windows; set window.size = {:?}",
                            humantime::format_duration(c.window.size),
                            humantime::format_duration(w),
                            humantime::format_duration(w).to_string()
                        ),
                    );
                }
                if ok("alerts") {
                    if let Err(e) = crate::scoring::policy_config(&c.alerts, model.package.threshold) {
                        problem(p, "alerts.threshold", e);
                    }
                }
            }
        }
    }
    if ok("alerts") {
        let a = &c.alerts;
        if let Some(t) = a.threshold {
            if !(0.0..=1.0).contains(&t) {
                problem(p, "alerts.threshold", "must be between 0 and 1");
            }
        }
        if let Some(w) = a.warning {
            if !(0.0..=1.0).contains(&w) {
                problem(p, "alerts.warning", "must be between 0 and 1");
            } else if a.threshold.is_some_and(|t| w > t) {
                problem(p, "alerts.warning", "must not be above alerts.threshold");
            }
        }
        if !(0.0..1.0).contains(&a.hysteresis) {
            problem(p, "alerts.hysteresis", "must be at least 0 and below 1");
        }
        if a.raise_after == 0 {
            problem(p, "alerts.raise_after", "must be at least 1");
        }
        if a.clear_after == 0 {
            problem(p, "alerts.clear_after", "must be at least 1");
        }
    }
    if let Some(b) = c.baseline.as_ref().filter(|_| ok("baseline")) {
        baseline(c, b, ok("model"), p);
    }
    if ok("source") {
        if c.sources.is_empty() {
            problem(p, "source", "no [[source]]: faultline needs at least one place to read from");
        }
        for (i, s) in c.sources.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            match s {
                SourceConfig::Mqtt(m) => {
                    if let Err(e) = check_mqtt_url(&m.url) {
                        problem(p, key("url"), e);
                    }
                    if m.topics.is_empty() {
                        problem(p, key("topics"), "must list at least one topic");
                    }
                    for (j, t) in m.topics.iter().enumerate() {
                        if let Err(e) = check_topic_filter(t) {
                            problem(p, format!("source[{i}].topics[{j}]"), e);
                        }
                    }
                    if let Some(t) = &m.device_from_topic {
                        if let Err(e) = check_device_template(t) {
                            problem(p, key("device_from_topic"), e);
                        }
                    }
                    if m.client_id.is_empty() || m.client_id.len() > 65_535 {
                        problem(p, key("client_id"), "must be 1 to 65535 bytes");
                    }
                    if m.password.is_some() && m.username.is_none() {
                        problem(p, key("password"), "a password needs a username");
                    }
                    let tls = m.url.starts_with("mqtts://");
                    for (k, f) in [
                        ("ca_file", &m.ca_file),
                        ("client_cert_file", &m.client_cert_file),
                        ("client_key_file", &m.client_key_file),
                    ] {
                        if let Some(f) = f {
                            if !tls {
                                problem(p, key(k), "only used with an mqtts:// url");
                            } else if !f.is_file() {
                                problem(p, key(k), format!("{} is not a readable file", f.display()));
                            }
                        }
                    }
                    if m.client_cert_file.is_some() != m.client_key_file.is_some() {
                        problem(p, key("client_cert_file"), "client_cert_file and client_key_file go together");
                    }
                }
                SourceConfig::Kafka(k) => {
                    if let Err(e) = check_brokers(&k.brokers) {
                        problem(p, key("brokers"), e);
                    }
                    if k.topics.is_empty() {
                        problem(p, key("topics"), "must list at least one topic");
                    }
                    for (j, t) in k.topics.iter().enumerate() {
                        if let Err(e) = check_kafka_topic(t) {
                            problem(p, format!("source[{i}].topics[{j}]"), e);
                        }
                    }
                    if k.group_id.is_empty() {
                        problem(p, key("group_id"), "must not be empty");
                    }
                    check_kafka_options(&k.options, &format!("source[{i}].options"), p);
                }
            }
        }
    }
    if ok("sink") {
        if c.sinks.len() > 1 {
            problem(p, "sink[1]", "one [[sink]] is supported: alerts go to one Kafka topic");
        }
        for (i, s) in c.sinks.iter().enumerate() {
            match s {
                SinkConfig::Kafka(k) => {
                    if let Err(e) = check_brokers(&k.brokers) {
                        problem(p, format!("sink[{i}].brokers"), e);
                    }
                    if let Err(e) = check_kafka_topic(&k.topic) {
                        problem(p, format!("sink[{i}].topic"), e);
                    }
                    check_kafka_options(&k.options, &format!("sink[{i}].options"), p);
                }
            }
        }
    }
}

fn check_model_dir(dir: &Path, p: &mut Vec<Problem>) -> Option<crate::model::Model> {
    if !dir.is_dir() {
        problem(p, "model.path", format!("{} is not a directory", dir.display()));
        return None;
    }
    for f in ["model.toml", "model.onnx"] {
        if !dir.join(f).is_file() {
            problem(p, "model.path", format!("{} has no {f}", dir.display()));
            return None;
        }
    }
    // The daemon would refuse it at start: say so now, with the reason.
    crate::model::Model::load(dir)
        .map_err(|e| problem(p, "model.path", format!("the package is refused: {}", crate::error_chain(&e))))
        .ok()
}

fn check_host_port(hp: &str) -> Result<(), String> {
    let (host, port) = hp.rsplit_once(':').ok_or_else(|| format!("{hp:?} needs a port, like host:1883"))?;
    if host.is_empty() {
        return Err(format!("{hp:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{hp:?} has no valid port")),
    }
}

fn check_mqtt_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("mqtts://"))
        .ok_or_else(|| format!("{url:?} must start with mqtt:// or mqtts://"))?;
    check_host_port(rest.trim_end_matches('/'))
}

fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("must list at least one host:port".to_owned());
    }
    brokers.split(',').try_for_each(|b| check_host_port(b.trim()))
}

/// MQTT topic filter rules: `+` fills a whole level, `#` only as the last level.
pub(crate) fn check_topic_filter(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty topic".to_owned());
    }
    let levels: Vec<&str> = t.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('+') && *l != "+" {
            return Err(format!("{t:?}: + must fill a whole level"));
        }
        if l.contains('#') && (*l != "#" || i + 1 != levels.len()) {
            return Err(format!("{t:?}: # must be the whole last level"));
        }
    }
    Ok(())
}

fn check_device_template(t: &str) -> Result<(), String> {
    let levels: Vec<&str> = t.split('/').collect();
    let n = levels.iter().filter(|l| **l == "{device_id}").count();
    if n != 1 || t.matches("{device_id}").count() != 1 {
        return Err(format!("{t:?} must hold {{device_id}} exactly once, as a whole level"));
    }
    if t.contains('#') {
        return Err(format!("{t:?}: # cannot stand in a template"));
    }
    Ok(())
}

/// librdkafka properties faultline sets itself and must not be overridden.
pub(crate) const OWN_KAFKA_OPTIONS: [&str; 8] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "message.timeout.ms",
    "enable.partition.eof",
];

fn check_kafka_options(options: &std::collections::BTreeMap<String, String>, prefix: &str, p: &mut Vec<Problem>) {
    for k in options.keys() {
        if OWN_KAFKA_OPTIONS.contains(&k.as_str()) {
            problem(p, format!("{prefix}.{k}"), "faultline sets this itself (see the README); remove it");
        } else if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            problem(p, format!("{prefix}.{k}"), "not a librdkafka property name");
        }
    }
}

fn check_kafka_topic(t: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if t.is_empty() || t.len() > 249 || !t.chars().all(legal) || t == "." || t == ".." {
        return Err(format!("{t:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"));
    }
    Ok(())
}

fn http(h: &super::HttpConfig, p: &mut Vec<Problem>) {
    match h.listen.parse::<SocketAddr>() {
        Err(_) => problem(p, "http.listen", format!("{:?} is not an address like 127.0.0.1:8080", h.listen)),
        Ok(a) if !a.ip().is_loopback() && h.auth.is_none() => problem(
            p,
            "http.listen",
            format!("{a} is not a loopback address: configure [http.auth] before listening beyond this host"),
        ),
        Ok(_) => {}
    }
    match (&h.tls_cert_file, &h.tls_key_file) {
        (Some(_), None) => problem(p, "http.tls_key_file", "needed with http.tls_cert_file"),
        (None, Some(_)) => problem(p, "http.tls_cert_file", "needed with http.tls_key_file"),
        (Some(c), Some(k)) => {
            for (key, f) in [("http.tls_cert_file", c), ("http.tls_key_file", k)] {
                if !f.is_file() {
                    problem(p, key, format!("{} is not a readable file", f.display()));
                }
            }
        }
        (None, None) => {}
    }
    let Some(auth) = &h.auth else { return };
    if auth.session_ttl < Duration::from_secs(60) {
        problem(p, "http.auth.session_ttl", "must be at least 1m");
    }
    let (users, tokens) = match auth.entries() {
        Ok(e) => e,
        Err(e) => return problem(p, "http.auth.users_file", e),
    };
    if users.is_empty() && tokens.is_empty() {
        problem(p, "http.auth", "names no user and no token: nobody could sign in");
    }
    let mut names = std::collections::HashSet::new();
    for (i, u) in users.iter().enumerate() {
        let key = format!("http.auth.user[{i}]");
        if u.name.trim().is_empty() || u.name.len() > 100 {
            problem(p, format!("{key}.name"), "must be 1 to 100 bytes");
        } else if !names.insert(u.name.as_str()) {
            problem(p, format!("{key}.name"), format!("{:?} appears twice", u.name));
        }
        if let Err(e) = argon2::PasswordHash::new(&u.password_hash) {
            problem(
                p,
                format!("{key}.password_hash"),
                format!("not a PHC hash ({e}); make one with `faultline auth hash-password`"),
            );
        }
    }
    for (i, t) in tokens.iter().enumerate() {
        let key = format!("http.auth.token[{i}]");
        if t.name.trim().is_empty() || t.name.len() > 100 {
            problem(p, format!("{key}.name"), "must be 1 to 100 bytes");
        }
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            problem(
                p,
                format!("{key}.sha256"),
                "must be 64 hex digits (SHA-256 of the token); make one with `faultline auth new-token`",
            );
        }
    }
}

fn baseline(c: &Config, b: &super::BaselineSection, model_ok: bool, p: &mut Vec<Problem>) {
    use super::{AlertsFrom, MAX_BASELINE_FEATURES, MAX_WARMUP_WINDOWS};
    if b.features.is_empty() {
        problem(p, "baseline.features", "name at least one window feature, e.g. \"Temperature.mean\"");
    }
    if b.features.len() > MAX_BASELINE_FEATURES {
        problem(p, "baseline.features", format!("{} features: at most {MAX_BASELINE_FEATURES}", b.features.len()));
    }
    for (i, f) in b.features.iter().enumerate() {
        let known =
            f.rsplit_once('.').is_some_and(|(s, stat)| !s.is_empty() && crate::window::stat_index(stat).is_some());
        if !known {
            problem(
                p,
                format!("baseline.features[{i}]"),
                format!("{f:?} is not <signal>.<stat> with a stat of {}", crate::window::STAT_NAMES.join(", ")),
            );
        } else if b.features[..i].contains(f) {
            problem(p, format!("baseline.features[{i}]"), format!("{f:?} is named twice"));
        }
    }
    let cfg = b.baseline();
    if b.components == 0 || b.components > b.features.len().max(1) {
        problem(p, "baseline.components", format!("must be between 1 and the {} features", b.features.len()));
    }
    let least = cfg.min_warmup();
    if !(least..=MAX_WARMUP_WINDOWS).contains(&b.warmup_windows) {
        problem(p, "baseline.warmup_windows", format!("must be between {least} and {MAX_WARMUP_WINDOWS}"));
    }
    if !(b.quantile > 0.0 && b.quantile <= 1.0) {
        problem(p, "baseline.quantile", "must be above 0 and at most 1");
    }
    for (key, v) in [("baseline.t2_margin", b.t2_margin), ("baseline.q_margin", b.q_margin)] {
        if !(v.is_finite() && v > 0.0) {
            problem(p, key, "must be a number above 0");
        }
    }
    if !(0.0..1.0).contains(&b.adapt_rate) {
        problem(p, "baseline.adapt_rate", "must be at least 0 and below 1");
    }
    if !(b.adapt_below.is_finite() && b.adapt_below > 0.0) {
        problem(p, "baseline.adapt_below", "must be a number above 0");
    }
    if model_ok && c.model.is_none() && matches!(b.alerts_from, Some(AlertsFrom::Model | AlertsFrom::Both)) {
        problem(p, "baseline.alerts_from", "alerts from the model need a [model]; use \"baseline\" without one");
    }
}
