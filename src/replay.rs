//! `faultline replay`: publish a data set as sensor readings (SPEC 1) over
//! MQTT (QoS 1) or Kafka, paced by the file's event times or as fast as
//! the broker takes them. The tool a user tries the appliance with, and
//! the one the tests and load scripts use.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::sources::file::{CsvOptions, CsvReader, FileError};

/// Where readings go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `mqtt://host:port`; credentials optional.
    Mqtt { url: String, client_id: String, username: Option<String>, password: Option<String> },
    /// `host:port[,host:port]`.
    Kafka { brokers: String },
}

/// Pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the broker acknowledges.
    Max,
    /// This many times real time, by the file's event times.
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.trim_end_matches('x').parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("{s:?}: write a positive factor like 10 or 60, or max")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// Topic; may contain `{device_id}`.
    pub topic: String,
    pub speed: Speed,
    /// Readings per message (a JSON array when more than 1).
    pub batch: usize,
    /// Leave `device_id` out of the payload (the topic or key carries it).
    pub omit_device: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: line {line}: {message}")]
    Jsonl { path: PathBuf, line: u64, message: String },
    #[error("{path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// What was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub readings: u64,
    pub messages: u64,
}

/// One reading to send.
struct Item {
    device_id: Option<String>,
    ts_ms: Option<i64>,
    value: Value,
}

/// The readings of a CSV or JSON-lines file, in file order.
enum Rows {
    Csv(Box<CsvReader>, Vec<String>),
    Jsonl(PathBuf, std::io::Lines<std::io::BufReader<std::fs::File>>, u64),
}

impl Rows {
    fn open(path: &Path, csv: &CsvOptions) -> Result<Rows, ReplayError> {
        let jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "ndjson" || e == "json");
        if jsonl {
            let f = std::fs::File::open(path).map_err(|source| ReplayError::Read { path: path.to_owned(), source })?;
            return Ok(Rows::Jsonl(path.to_owned(), std::io::BufReader::new(f).lines(), 0));
        }
        let r = CsvReader::open(path, csv)?;
        let names = r.signals().to_vec();
        Ok(Rows::Csv(Box::new(r), names))
    }

    fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        match self {
            Rows::Csv(r, names) => {
                let Some(row) = r.next_row()? else { return Ok(None) };
                let mut values = Map::new();
                for (i, v) in row.values {
                    if let Some(n) = serde_json::Number::from_f64(v) {
                        values.insert(names[i].clone(), Value::Number(n));
                    }
                }
                let mut o = Map::new();
                o.insert("device_id".into(), Value::String(row.device_id.clone()));
                o.insert("ts".into(), Value::String(crate::time::format_rfc3339(row.ts_ms)));
                o.insert("values".into(), Value::Object(values));
                Ok(Some(Item { device_id: Some(row.device_id), ts_ms: Some(row.ts_ms), value: Value::Object(o) }))
            }
            Rows::Jsonl(path, lines, n) => loop {
                let Some(line) = lines.next() else { return Ok(None) };
                *n += 1;
                let line = line.map_err(|source| ReplayError::Read { path: path.clone(), source })?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&line).map_err(|e| ReplayError::Jsonl {
                    path: path.clone(),
                    line: *n,
                    message: e.to_string(),
                })?;
                let first = match &value {
                    Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
                    v => v.clone(),
                };
                let device_id = first.get("device_id").and_then(Value::as_str).map(str::to_owned);
                let ts_ms = match first.get("ts") {
                    Some(Value::Number(n)) => n.as_i64(),
                    Some(Value::String(s)) => crate::time::parse_cell(s),
                    _ => None,
                };
                return Ok(Some(Item { device_id, ts_ms, value }));
            },
        }
    }
}

fn topic_for(template: &str, device: Option<&str>) -> String {
    if template.contains("{device_id}") {
        template.replace("{device_id}", device.unwrap_or("unknown"))
    } else {
        template.to_owned()
    }
}

/// A connection that takes messages and confirms them.
enum Publisher {
    Mqtt {
        client: rumqttc::AsyncClient,
        task: tokio::task::JoinHandle<Result<(), String>>,
        acked: tokio::sync::watch::Receiver<u64>,
    },
    Kafka {
        producer: rdkafka::producer::FutureProducer,
        inflight: VecDeque<rdkafka::producer::DeliveryFuture>,
    },
}

impl Publisher {
    async fn connect(target: &Target) -> Result<Publisher, ReplayError> {
        match target {
            Target::Mqtt { url, client_id, username, password } => {
                let (host, port, tls) = crate::daemon::mqtt::host_port(url)
                    .ok_or_else(|| ReplayError::Mqtt(format!("cannot read the url {url:?}")))?;
                let mut o = rumqttc::MqttOptions::new(client_id.clone(), host, port);
                o.set_keep_alive(Duration::from_secs(30)).set_inflight(1000).set_max_packet_size(16 << 20, 16 << 20);
                if let Some(u) = username {
                    o.set_credentials(u.clone(), password.clone().unwrap_or_default());
                }
                if tls {
                    o.set_transport(rumqttc::Transport::tls_with_default_config());
                }
                let (client, mut el) = rumqttc::AsyncClient::new(o, 4096);
                let (acked_tx, acked) = tokio::sync::watch::channel(0u64);
                let task = tokio::spawn(async move {
                    let mut n = 0u64;
                    let mut connected = false;
                    loop {
                        match el.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => connected = true,
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                                n += 1;
                                let _ = acked_tx.send(n);
                            }
                            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                            Ok(_) => {}
                            Err(e) if !connected => return Err(e.to_string()),
                            Err(e) => {
                                // rumqttc resends what was not acknowledged after reconnecting.
                                tracing::warn!("MQTT connection lost ({e}); reconnecting");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                });
                Ok(Publisher::Mqtt { client, task, acked })
            }
            Target::Kafka { brokers } => {
                let producer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .set("enable.idempotence", "true")
                    .set("linger.ms", "5")
                    .set("message.timeout.ms", "60000")
                    .create()
                    .map_err(|e| ReplayError::Kafka(e.to_string()))?;
                Ok(Publisher::Kafka { producer, inflight: VecDeque::new() })
            }
        }
    }

    async fn send(&mut self, topic: &str, key: Option<&str>, payload: Vec<u8>) -> Result<(), ReplayError> {
        match self {
            Publisher::Mqtt { client, task, .. } => {
                if task.is_finished() {
                    return Err(ReplayError::Mqtt(loop_reason(task, || "the connection ended".to_owned()).await));
                }
                if let Err(e) = client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await {
                    // The event loop ended since the check above (a refused
                    // connection): its reason says more than the closed channel.
                    return Err(ReplayError::Mqtt(loop_reason(task, || e.to_string()).await));
                }
                Ok(())
            }
            Publisher::Kafka { producer, inflight } => {
                let mut record = rdkafka::producer::FutureRecord::to(topic).payload(&payload);
                if let Some(k) = key {
                    record = record.key(k);
                }
                loop {
                    match producer.send_result(record) {
                        Ok(f) => {
                            inflight.push_back(f);
                            break;
                        }
                        Err((e, r)) => {
                            record = r;
                            // Queue full: wait for the oldest delivery.
                            match inflight.pop_front() {
                                Some(f) => check_delivery(f.await)?,
                                None => return Err(ReplayError::Kafka(e.to_string())),
                            }
                        }
                    }
                }
                while inflight.len() > 50_000 {
                    if let Some(f) = inflight.pop_front() {
                        check_delivery(f.await)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits until every message is confirmed, then disconnects.
    async fn finish(self, sent: u64) -> Result<(), ReplayError> {
        match self {
            Publisher::Mqtt { client, task, mut acked } => {
                while *acked.borrow() < sent {
                    if task.is_finished() {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), acked.changed()).await;
                }
                let _ = client.disconnect().await;
                match task.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ReplayError::Mqtt(e)),
                    Err(e) => Err(ReplayError::Mqtt(e.to_string())),
                }
            }
            Publisher::Kafka { inflight, .. } => {
                for f in inflight {
                    check_delivery(f.await)?;
                }
                Ok(())
            }
        }
    }
}

/// Why the MQTT event loop ended: its own error, or `otherwise` when it
/// ended without one (or has not ended within a second).
async fn loop_reason(
    task: &mut tokio::task::JoinHandle<Result<(), String>>,
    otherwise: impl FnOnce() -> String,
) -> String {
    match tokio::time::timeout(Duration::from_secs(1), task).await {
        Ok(Ok(Err(why))) => why,
        _ => otherwise(),
    }
}

fn check_delivery<E>(r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>) -> Result<(), ReplayError> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(ReplayError::Kafka(e.to_string())),
        Err(_) => Err(ReplayError::Kafka("the producer went away".into())),
    }
}

/// Publishes `input` as readings; returns what was sent once the broker confirmed all of it.
pub async fn run(input: &Path, csv: &CsvOptions, opts: &Options) -> Result<Summary, ReplayError> {
    let mut rows = Rows::open(input, csv)?;
    let mut publisher = Publisher::connect(&opts.target).await?;
    let mut summary = Summary::default();
    let start = tokio::time::Instant::now();
    let mut t0: Option<i64> = None;
    let mut pending: Vec<Value> = Vec::new();
    let mut pending_topic = String::new();
    let mut pending_key: Option<String> = None;
    let batch = opts.batch.max(1);

    async fn flush(
        p: &mut Publisher,
        pending: &mut Vec<Value>,
        topic: &str,
        key: Option<&str>,
        batch: usize,
        s: &mut Summary,
    ) -> Result<(), ReplayError> {
        if pending.is_empty() {
            return Ok(());
        }
        let n = pending.len() as u64;
        let payload = if batch == 1 && pending.len() == 1 {
            serde_json::to_vec(&pending[0])
        } else {
            serde_json::to_vec(&Value::Array(std::mem::take(pending)))
        }
        .unwrap_or_default();
        pending.clear();
        p.send(topic, key, payload).await?;
        s.messages += 1;
        s.readings += n;
        Ok(())
    }

    while let Some(mut item) = rows.next()? {
        if let (Speed::Factor(f), Some(ts)) = (opts.speed, item.ts_ms) {
            let base = *t0.get_or_insert(ts);
            let due = start + Duration::from_secs_f64(((ts - base).max(0) as f64 / 1000.0) / f);
            if due > tokio::time::Instant::now() {
                flush(&mut publisher, &mut pending, &pending_topic, pending_key.as_deref(), batch, &mut summary)
                    .await?;
                tokio::time::sleep_until(due).await;
            }
        }
        let topic = topic_for(&opts.topic, item.device_id.as_deref());
        if (topic != pending_topic || item.device_id != pending_key) && !pending.is_empty() {
            flush(&mut publisher, &mut pending, &pending_topic, pending_key.as_deref(), batch, &mut summary).await?;
        }
        if opts.omit_device {
            if let Value::Object(o) = &mut item.value {
                o.remove("device_id");
            }
        }
        pending_topic = topic;
        pending_key = item.device_id;
        pending.push(item.value);
        if pending.len() >= batch {
            flush(&mut publisher, &mut pending, &pending_topic, pending_key.as_deref(), batch, &mut summary).await?;
        }
    }
    flush(&mut publisher, &mut pending, &pending_topic, pending_key.as_deref(), batch, &mut summary).await?;
    publisher.finish(summary.messages).await?;
    Ok(summary)
}

/// Publishes `readings` readings of a synthetic plant (`faultline replay
/// --devices`), `opts.batch` per message, paced at `rate` readings per
/// second or as fast as the broker confirms them. Kafka records carry the
/// device id as key when a message holds one reading.
pub async fn run_synthetic(
    plant: &crate::synth::Plant,
    readings: u64,
    rate: Option<f64>,
    opts: &Options,
) -> Result<Summary, ReplayError> {
    let mut publisher = Publisher::connect(&opts.target).await?;
    let mut summary = Summary::default();
    let start = tokio::time::Instant::now();
    let batch = opts.batch.max(1) as u64;
    let mut payload = String::new();
    let mut k = 0;
    while k < readings {
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            if due > tokio::time::Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due).await;
            }
        }
        let n = batch.min(readings - k);
        payload.clear();
        if n > 1 {
            payload.push('[');
        }
        for i in 0..n {
            if i > 0 {
                payload.push(',');
            }
            plant.write(k + i, &mut payload);
        }
        if n > 1 {
            payload.push(']');
        }
        let device = plant.device_id(k % plant.devices());
        let topic = topic_for(&opts.topic, Some(&device));
        let key = (n == 1).then_some(device.as_str());
        publisher.send(&topic, key, payload.as_bytes().to_vec()).await?;
        summary.messages += 1;
        summary.readings += n;
        k += n;
    }
    publisher.finish(summary.messages).await?;
    Ok(summary)
}
