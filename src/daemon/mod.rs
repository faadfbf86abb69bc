//! `faultline run`: the daemon.
//!
//! ```text
//! MQTT task(s) ─┐                              ┌─► sled: checkpoint (windows, alert state, positions, outbox)
//!               ├─► bounded channel ─► Core ───┼─► outbox (memory) ─► Kafka sink task ─► alert topic
//! Kafka task(s) ┘   (backpressure)     │       └─► acks / offset commits back to the sources
//!                                      └─ decode → clean → window → model → alert policy
//! ```
//!
//! One processing loop ([`Core`]) owns the pipeline, the scorer and the
//! alert policy; sources only move bytes. Every `state.checkpoint_interval`
//! (and early when input pauses with acknowledgements owed, and on
//! shutdown) the loop writes what changed in one sled transaction and
//! flushes it; only then are MQTT messages acknowledged and Kafka offsets
//! committed. After a crash the brokers hand back exactly what the last
//! checkpoint does not cover; what a checkpoint covers but a broker
//! redelivers anyway (an ack lost in flight, a commit that did not land)
//! is recognised and skipped: Kafka by offset, MQTT by packet id and a
//! hash of topic and payload of the redelivered (DUP) message.

mod acked;
mod coldcode;
pub mod kafka;
mod malloc;
pub mod mqtt;
pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use outbox::Outbox;

use crate::alerts::{Alert, Status};
use crate::config::{Config, SinkConfig, SourceConfig};
use crate::http::{Command, DeviceView, Label, LabelOutcome, View};
use crate::model::ModelHandle;
use crate::pipeline::{Pipeline, SourceId};
use crate::scoring::Scorer;
use crate::state::{Checkpoint, LogMark, OutboxRecord, Store, WindowRecord};
use crate::time::now_ms;
use crate::window::ClosedWindow;

/// What the sources hand the processing loop. `budget` holds the
/// payload's bytes of [`Budget`] until the message is processed.
#[derive(Debug)]
pub enum Input {
    Mqtt {
        source: usize,
        topic: String,
        payload: bytes::Bytes,
        pkid: u16,
        dup: bool,
        budget: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Records of one Kafka source, in the order read.
    Kafka { source: usize, records: Vec<KafkaRecord>, budget: Option<tokio::sync::OwnedSemaphorePermit> },
    /// A Kafka partition's first and next offset, sent before its first
    /// record after an assignment.
    KafkaEnds { source: usize, topic: Arc<str>, partition: i32, low: i64, high: i64 },
    /// A payload from inside the process (`faultline demo`'s stream).
    Local { source: usize, payload: Vec<u8>, device: Option<String> },
    /// Write a checkpoint at once (a Kafka rebalance is revoking partitions).
    CheckpointNow,
}

#[derive(Debug)]
pub struct KafkaRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Bytes allowed between the sources and the processing loop: the channel
/// holds at most 4,096 messages (a Kafka message is a batch of records) and
/// at most this many bytes of payload (and of a Kafka record's key and
/// bookkeeping), so a burst of large payloads cannot take memory without
/// bound. The loop works through 4 MiB in milliseconds; 16 MiB read a
/// Kafka backlog no faster and held ~20 MB more (benches/load.sh, kafka).
pub const BUDGET_BYTES: usize = 4 << 20;

/// The shared byte budget of the channel to the processing loop.
#[derive(Debug, Clone)]
pub struct Budget(Arc<tokio::sync::Semaphore>);

impl Default for Budget {
    fn default() -> Self {
        Budget(Arc::new(tokio::sync::Semaphore::new(BUDGET_BYTES)))
    }
}

impl Budget {
    /// Bytes taken and not yet released.
    pub fn used(&self) -> usize {
        BUDGET_BYTES.saturating_sub(self.0.available_permits())
    }

    /// Waits until `bytes` (at most the whole budget) are free and takes them.
    pub async fn take(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.clamp(1, BUDGET_BYTES)).unwrap_or(u32::MAX);
        self.0.clone().acquire_many_owned(n).await.ok()
    }
}

/// What every source task is handed.
#[derive(Debug)]
pub struct SourceLinks {
    pub tx: mpsc::Sender<Input>,
    pub budget: Budget,
    pub stop: watch::Receiver<bool>,
    pub status: Arc<SourceStatus>,
}

/// A source's (or the sink's) connection state and counters, shared with metrics and `/readyz`.
#[derive(Debug, Default)]
pub struct SourceStatus {
    pub connected: AtomicBool,
    pub received: AtomicU64,
    pub reconnects: AtomicU64,
}

impl SourceStatus {
    pub fn set_connected(&self, c: bool) {
        self.connected.store(c, Ordering::Relaxed);
    }
}

/// The seed of the hash that tells MQTT messages apart ([`acked`]).
const HASH_SEED: u64 = 0x6661_756c_746c_696e;

/// An early checkpoint when input has paused this long with acks owed:
/// a broker with a small in-flight window waits for them.
const IDLE_FLUSH: Duration = Duration::from_millis(20);

/// An early checkpoint past this many messages owed an acknowledgement.
const MAX_OWED: usize = 50_000;

/// Closed windows scored together while a batch of inputs is handled
/// (the rest at the batch's end).
const SCORE_BATCH: usize = 64;

enum SourcePos {
    /// An in-process stream: nothing to acknowledge.
    Local { id: SourceId },
    Mqtt {
        id: SourceId,
        template: Option<mqtt::Template>,
        /// Messages processed since the last checkpoint.
        pending: Vec<acked::Message>,
        acked: acked::Acked,
        /// Redeliveries of already acknowledged messages: acknowledge again.
        again: Vec<u16>,
        acks: Option<mpsc::UnboundedSender<Vec<u16>>>,
    },
    Kafka {
        id: SourceId,
        group: String,
        next: HashMap<(Arc<str>, i32), i64>,
        changed: HashSet<(Arc<str>, i32)>,
        commits: Option<mpsc::UnboundedSender<kafka::Commit>>,
    },
}

/// Counters of the processing loop.
#[derive(Debug, Default, Clone)]
pub struct CoreStats {
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    pub redelivered_skipped: u64,
    pub outbox_dropped: u64,
    pub scoring_failures: u64,
    pub false_alerts: u64,
}

/// The processing loop's state.
pub struct Core {
    pipeline: Pipeline,
    scorer: Option<Scorer>,
    model: Option<Arc<ModelHandle>>,
    store: Arc<Store>,
    /// Alert records on their way to the sink (restored with the state).
    outbox: Arc<Outbox>,
    sources: Vec<SourcePos>,
    closed: Vec<ClosedWindow>,
    alert_dirty: HashSet<String>,
    alert_records: Vec<Alert>,
    window_records: Vec<WindowRecord>,
    view: Arc<View>,
    /// A sink is configured: alert records go to the outbox.
    sink: bool,
    owed: usize,
    /// The last checkpoint failed: write everything next time.
    full_next: bool,
    /// Per class of alert-state turns (the checkpoint number's remainder
    /// by JOURNAL_SPREAD), the checkpoint that last wrote its alert states:
    /// the journal files from the oldest of them on hold every latest one.
    state_turns: Vec<u64>,
    /// The next checkpoint's number (`state::Checkpoint::seq`).
    seq: u64,
    /// When free memory was last given back ([`malloc::trim`]).
    trimmed: Instant,
    late_mark: LogMark,
    quarantine_mark: LogMark,
    pub stats: CoreStats,
    hasher: foldhash::fast::FixedState,
    /// When the ingest rate was last taken, and the readings count then.
    rate_mark: (Instant, u64),
}

fn source_label(config: &Config, i: usize) -> String {
    let kind = |s: &SourceConfig| match s {
        SourceConfig::Mqtt(_) => "mqtt",
        SourceConfig::Kafka(_) => "kafka",
    };
    let k = kind(&config.sources[i]);
    if config.sources.iter().filter(|s| kind(s) == k).count() > 1 {
        format!("{k}{i}")
    } else {
        k.to_owned()
    }
}

impl Core {
    /// Builds the loop from the configuration and restores the state in `store`.
    pub fn new(config: &Config, store: Arc<Store>, model: Option<Arc<ModelHandle>>) -> Result<Core, String> {
        let mut pipeline = Pipeline::new(config.ingest.decode_limits(), config.engine(), config.limits.quarantine);
        let baselines = config.baseline.as_ref().map(|b| crate::scoring::Baselines::new(b.baseline()));
        let scorer = match (&model, baselines) {
            (None, None) => None,
            (m, b) => {
                let m = m.as_ref().map(|h| h.current());
                let policy =
                    crate::scoring::policy_config(&config.alerts, crate::scoring::default_threshold(m.as_deref()))?;
                Some(Scorer::with(m, policy, b, config.alerts_from()))
            }
        };
        let mut sources = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            let id = pipeline.source(&source_label(config, i));
            sources.push(match s {
                SourceConfig::Mqtt(m) => SourcePos::Mqtt {
                    id,
                    template: m.device_from_topic.as_deref().and_then(mqtt::Template::parse),
                    pending: Vec::new(),
                    acked: acked::Acked::new(&m.client_id),
                    again: Vec::new(),
                    acks: None,
                },
                SourceConfig::Kafka(k) => SourcePos::Kafka {
                    id,
                    group: k.group_id.clone(),
                    next: HashMap::new(),
                    changed: HashSet::new(),
                    commits: None,
                },
            });
        }
        let mut core = Core {
            pipeline,
            scorer,
            model,
            store,
            outbox: Arc::new(Outbox::new(config.limits.outbox, Vec::new())),
            sources,
            closed: Vec::new(),
            alert_dirty: HashSet::new(),
            alert_records: Vec::new(),
            window_records: Vec::new(),
            view: Arc::new(View::default()),
            sink: false,
            owed: 0,
            full_next: false,
            state_turns: vec![0; crate::state::JOURNAL_SPREAD as usize],
            seq: 0,
            trimmed: Instant::now(),
            late_mark: LogMark::default(),
            quarantine_mark: LogMark::default(),
            stats: CoreStats::default(),
            hasher: foldhash::fast::FixedState::with_seed(HASH_SEED),
            rate_mark: (Instant::now(), 0),
        };
        core.pipeline.engine_mut().set_journal(crate::state::JOURNAL_SPREAD);
        core.restore()?;
        Ok(core)
    }

    fn restore(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut r = self.store.restore().map_err(|e| crate::error_chain(&e))?;
        let snapshots = r.snapshot_count();
        self.seq = r.next_seq;
        // Every alert state restored is in a journal file kept (or an older
        // version's tree): none may go before the turns have come round.
        let kept = r.oldest_journal.unwrap_or(r.next_seq);
        self.state_turns.fill(kept);
        let pending = r.outbox.len();
        self.outbox = Arc::new(Outbox::new(self.outbox.cap(), std::mem::take(&mut r.outbox)));
        let (refused, replayed) =
            crate::state::restore_engine(self.pipeline.engine_mut(), &mut r).map_err(|e| crate::error_chain(&e))?;
        let n = self.pipeline.engine().device_count();
        self.store.set_window_devices(n);
        // An older version's device records, in sled's trees: the first
        // checkpoint writes everything to its journal file, and they go.
        let (devices, states) = self.store.legacy();
        self.full_next |= devices || (states && self.scorer.is_some());
        self.pipeline.engine_mut().late_store_mut().restore(std::mem::take(&mut r.late));
        self.late_mark = LogMark::at(self.pipeline.engine().late_store());
        self.pipeline.quarantine_mut().restore(std::mem::take(&mut r.quarantine));
        self.quarantine_mark = LogMark::at(self.pipeline.quarantine());
        if let Some(s) = &mut self.scorer {
            for st in r.alert_states() {
                let (id, st, baseline) = st.map_err(|e| crate::error_chain(&e))?;
                s.policy_mut().restore(id, st);
                if let (Some(b), Some(bl)) = (s.baselines_mut(), baseline) {
                    b.restore(id, bl);
                }
            }
        }
        self.restore_view(&self.pipeline.engine().devices_seen());
        for (k, v) in r.positions {
            let key = String::from_utf8_lossy(&k);
            if let Some(rest) = key.strip_prefix("kafka/") {
                let mut it = rest.rsplitn(2, '/');
                let (Some(part), Some(gt)) = (it.next(), it.next()) else { continue };
                let Some((group, topic)) = gt.split_once('/') else { continue };
                let (Ok(part), Ok(next)) = (part.parse::<i32>(), <[u8; 8]>::try_from(v.as_slice())) else { continue };
                for s in &mut self.sources {
                    if let SourcePos::Kafka { group: g, next: n, .. } = s {
                        if g == group {
                            n.insert((Arc::from(topic), part), i64::from_be_bytes(next));
                        }
                    }
                }
            } else {
                for s in &mut self.sources {
                    if let SourcePos::Mqtt { acked, .. } = s {
                        if acked.restore(&k, &v, self.seq) {
                            break;
                        }
                    }
                }
            }
        }
        for s in &mut self.sources {
            if let SourcePos::Mqtt { acked, .. } = s {
                acked.restored();
                self.seq = self.seq.max(acked.after());
            }
        }
        tracing::info!(
            devices = n,
            snapshots,
            replayed,
            refused,
            outbox = pending,
            "state restored from {} in {:.0?}",
            self.store.dir().display(),
            started.elapsed()
        );
        crate::metrics::outbox_pending(self.outbox.pending());
        Ok(())
    }

    /// The overview as it was: each device's latest stored window, the alerts not cleared.
    fn restore_view(&self, devices: &[(Arc<str>, i64)]) {
        let policy = self.scorer.as_ref().map(|s| s.policy());
        // With a model, its restored policy holds the alerts not cleared;
        // the alert history is read only without one.
        let stored;
        let not_cleared: Vec<&Alert> = match policy {
            Some(p) => p.open_alerts().collect(),
            None => {
                stored = self.store.alerts_where(|h| h.status != Status::Cleared).unwrap_or_default();
                stored.iter().collect()
            }
        };
        let mut open: HashMap<&str, &Alert> = HashMap::new();
        {
            let mut m = self.view.alerts.write().unwrap_or_else(|e| e.into_inner());
            for a in not_cleared {
                m.insert(a.alert_id.clone(), a.status);
                open.insert(&a.device_id, a);
            }
        }
        let mut view = self.view.devices.write().unwrap_or_else(|e| e.into_inner());
        for (id, last_seen_ms) in devices {
            // With a model, the alert state has the latest score: the window
            // history (all of a device's windows decoded to find the newest)
            // is read only without one.
            let latest = match policy {
                Some(p) => p.device_state(id).and_then(crate::alerts::DeviceState::latest),
                None => self
                    .store
                    .windows(id, 1)
                    .ok()
                    .and_then(|w| w.into_iter().next())
                    .map(|w| (w.end_ms, f64::from(w.score))),
            };
            let baseline = self.scorer.as_ref().and_then(|s| s.baselines()).and_then(|b| b.status(id));
            // A device whose baseline is still learning has no score yet.
            if latest.is_none() && baseline.is_none() {
                continue;
            }
            view.insert(
                id.clone(),
                DeviceView {
                    device_id: id.clone(),
                    last_window_end: latest.map(|(end_ms, _)| end_ms),
                    fault_probability: latest.map(|(_, p)| p).filter(|p| p.is_finite()),
                    open_alert: open.get(&**id).map(|a| a.alert_id.clone()),
                    updated_at: *last_seen_ms,
                    features: None,
                    baseline: baseline.map(Box::new),
                },
            );
        }
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn scorer(&self) -> Option<&Scorer> {
        self.scorer.as_ref()
    }

    /// One input at processing time `now_ms`.
    pub fn handle(&mut self, input: Input, now_ms: i64) {
        match input {
            Input::Mqtt { source, topic, payload, pkid, dup, budget: _budget } => {
                let Some(SourcePos::Mqtt { id, template, pending, acked, again, .. }) = self.sources.get_mut(source)
                else {
                    return;
                };
                let h = acked::fold(self.hasher.hash_one((topic.as_str(), payload.as_ref())));
                if dup {
                    if pending.contains(&(pkid, h)) {
                        self.stats.redelivered_skipped += 1;
                        return;
                    }
                    if acked.contains((pkid, h)) {
                        self.stats.redelivered_skipped += 1;
                        again.push(pkid);
                        self.owed += 1;
                        return;
                    }
                }
                let device = template.as_ref().and_then(|t| t.device(&topic));
                let id = *id;
                pending.push((pkid, h));
                self.owed += 1;
                self.pipeline.ingest(id, &payload, device, now_ms, &mut self.closed);
            }
            Input::Kafka { source, records, budget: _budget } => {
                let Some(SourcePos::Kafka { id, next, changed, .. }) = self.sources.get_mut(source) else { return };
                let id = *id;
                for r in records {
                    let slot = next.entry((r.topic.clone(), r.partition)).or_insert(i64::MIN);
                    if r.offset < *slot {
                        self.stats.redelivered_skipped += 1;
                        continue;
                    }
                    *slot = r.offset + 1;
                    changed.insert((r.topic, r.partition));
                    self.owed += 1;
                    let device = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).filter(|k| !k.is_empty());
                    self.pipeline.ingest(id, &r.payload, device, now_ms, &mut self.closed);
                }
            }
            Input::KafkaEnds { source, topic, partition, low, high } => {
                let Some(SourcePos::Kafka { next, changed, .. }) = self.sources.get_mut(source) else { return };
                if let Some(pos) = next.get_mut(&(topic.clone(), partition)) {
                    if *pos > high {
                        tracing::warn!(
                            source,
                            "Kafka {topic}[{partition}] ends at offset {high} but the checkpoint is at {pos}: \
                             the topic was deleted and made again, or truncated; reading it from offset {low}"
                        );
                        *pos = low;
                        changed.insert((topic, partition));
                    }
                }
            }
            Input::Local { source, payload, device } => {
                let Some(SourcePos::Local { id }) = self.sources.get(source) else { return };
                let id = *id;
                self.pipeline.ingest(id, &payload, device.as_deref(), now_ms, &mut self.closed);
            }
            Input::CheckpointNow => {
                self.checkpoint();
            }
        }
    }

    /// Closes idle windows (call about once a second).
    pub fn tick(&mut self, now_ms: i64) {
        self.pipeline.tick(now_ms, &mut self.closed);
        self.store.set_window_devices(self.pipeline.engine().device_count());
        let readings: u64 = self.pipeline.sources().iter().map(|s| s.readings).sum();
        let (t, n) = self.rate_mark;
        let dt = t.elapsed().as_secs_f64();
        if dt >= 1.0 {
            self.view.set_rate(readings.saturating_sub(n) as f64 / dt);
            self.rate_mark = (Instant::now(), readings);
            // Devices the engine forgot (limits.device_ttl) leave the view
            // unless an alert of theirs is still open: it stays bounded.
            let engine = self.pipeline.engine();
            if let Ok(mut view) = self.view.devices.write() {
                if view.len() > engine.device_count() {
                    view.retain(|id, d| d.open_alert.is_some() || engine.watermark(id).is_some());
                }
            }
        }
    }

    /// Scores the windows closed since the last call; alert records go to the outbox.
    pub fn score(&mut self, now_ms: i64) {
        if self.closed.is_empty() {
            return;
        }
        let record = |w: &ClosedWindow, score: f32, model: &str, version: &str| WindowRecord {
            device_id: w.device_id.to_string(),
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            readings: w.signals.iter().map(|(_, s)| s[0] as u64).max().unwrap_or(0),
            score,
            model: model.to_owned(),
            model_version: version.to_owned(),
            update: w.update,
            signals: w.signals.iter().map(|(n, s)| (n.to_string(), s[1], s[2])).collect(),
        };
        for w in &self.closed {
            if !w.update {
                let delay = (now_ms - w.end_ms).max(0) as f64 / 1000.0;
                metrics::histogram!(crate::metrics::WINDOW_CLOSE_DELAY_SECONDS).record(delay);
            }
        }
        let Some(scorer) = &mut self.scorer else {
            self.window_records.extend(self.closed.iter().map(|w| record(w, f32::NAN, "", "")));
            self.closed.clear();
            self.write_history();
            return;
        };
        if let Some(h) = &self.model {
            scorer.set_model(h.current());
        }
        match scorer.process(&self.closed, now_ms) {
            Ok(batch) => {
                let rows: Vec<Option<Arc<[f32]>>> =
                    (0..batch.results.len()).map(|i| scorer.row(i).map(Arc::from)).collect();
                // Alerts first: they are what someone waits for.
                self.emit(batch.alerts.into_iter().map(|(_, a)| a).collect());
                self.window_records.extend(
                    self.closed.iter().zip(&batch.results).map(|(w, r)| record(w, r.score, &r.model, &r.model_version)),
                );
                for w in &batch.results {
                    if !self.alert_dirty.contains(&*w.device_id) {
                        self.alert_dirty.insert(w.device_id.to_string());
                    }
                }
                self.update_view(&batch.results, &rows, now_ms);
            }
            Err(e) => {
                self.window_records.extend(self.closed.iter().map(|w| record(w, f32::NAN, "", "")));
                self.stats.scoring_failures += 1;
                tracing::error!(windows = self.closed.len(), "scoring failed: {}", crate::error_chain(&e));
            }
        }
        self.closed.clear();
        self.write_history();
    }

    /// Window and alert records go to the store as they are made, not
    /// held here for the checkpoint: when 10,000 windows close together,
    /// that held 10,000 of each, decoded, at once. Alert records are
    /// written at once; window records wait in the store, encoded and
    /// grouped, for the checkpoint (`state::history`). What cannot be
    /// written now waits for the next try (the next scoring or checkpoint;
    /// a checkpoint that cannot write them fails).
    fn write_history(&mut self) {
        if self.alert_records.is_empty() && self.window_records.is_empty() {
            return;
        }
        match self.store.write_history(&self.alert_records, &self.window_records) {
            Ok(_) => {
                self.alert_records.clear();
                self.window_records.clear();
            }
            Err(e) => tracing::warn!("window and alert history not written yet: {}", crate::error_chain(&e)),
        }
    }

    /// Alert records: logged, to the outbox (the sink takes them from
    /// there at once), kept for the next checkpoint.
    fn emit(&mut self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        for a in &alerts {
            tracing::info!(alert = %a.alert_id, status = ?a.status, severity = ?a.severity, p = a.fault_probability, "alert");
            self.alert_dirty.insert(a.device_id.clone());
            self.view.alert_changed(a);
        }
        if self.sink {
            let records = alerts.iter().map(|a| {
                (OutboxRecord { device_id: a.device_id.clone(), payload: a.to_json_string() }, a.updated_at_ms)
            });
            self.stats.outbox_dropped += self.outbox.push(records);
            crate::metrics::outbox_pending(self.outbox.pending());
        }
        self.alert_records.extend(alerts);
    }

    /// The devices' latest windows and open alerts, for the HTTP side.
    fn update_view(&self, results: &[crate::scoring::WindowResult], rows: &[Option<Arc<[f32]>>], now_ms: i64) {
        let Ok(mut view) = self.view.devices.write() else { return };
        let policy = self.scorer.as_ref().map(|s| s.policy());
        let baselines = self.scorer.as_ref().and_then(|s| s.baselines());
        for (r, row) in results.iter().zip(rows) {
            let open =
                policy.and_then(|p| p.device_state(&r.device_id)).and_then(|d| d.current()).map(|a| a.alert_id.clone());
            let entry = view.entry(r.device_id.clone()).or_insert_with(|| DeviceView {
                device_id: r.device_id.clone(),
                last_window_end: None,
                fault_probability: None,
                open_alert: None,
                updated_at: now_ms,
                features: None,
                baseline: None,
            });
            entry.baseline = baselines.and_then(|b| b.status(&r.device_id)).map(Box::new);
            if r.update && entry.last_window_end.is_some_and(|end| r.end_ms < end) {
                // A late update of an older window: the latest stays.
                entry.open_alert = open;
                continue;
            }
            entry.last_window_end = Some(r.end_ms);
            entry.fault_probability = r.score.is_finite().then_some(f64::from(r.score));
            entry.open_alert = open;
            entry.updated_at = now_ms;
            entry.features = row.clone();
            // Serialised only when a live page listens.
            if self.view.listened() {
                if let Ok(v) = serde_json::to_value(&*entry) {
                    self.view.publish("device", &v);
                }
            }
        }
    }

    /// A request of the HTTP side.
    pub fn command(&mut self, cmd: Command, now_ms: i64) {
        match cmd {
            Command::Ack { alert_id, by, comment, reply } => {
                let mut result = match &mut self.scorer {
                    None => Err("no model is configured, so there are no alerts".to_owned()),
                    Some(s) => s
                        .policy_mut()
                        .acknowledge(&alert_id, &by, comment.as_deref(), now_ms)
                        .map_err(|e| e.to_string()),
                };
                if let Ok(a) = &mut result {
                    // The policy keeps no feature values: the alert's latest
                    // record has them (made since the last write, or stored).
                    let latest = match self.alert_records.iter().rev().find(|r| r.alert_id == a.alert_id) {
                        Some(r) => Some(r.clone()),
                        None => self.store.alert(&a.alert_id).unwrap_or_else(|e| {
                            tracing::warn!(
                                "alert {}: its feature values cannot be read: {}",
                                a.alert_id,
                                crate::error_chain(&e)
                            );
                            None
                        }),
                    };
                    if let Some(r) = latest {
                        a.features = r.features;
                        a.contributions = r.contributions;
                    }
                    self.emit(vec![a.clone()]);
                    if let Ok(mut view) = self.view.devices.write() {
                        if let Some(d) = view.get_mut(a.device_id.as_str()) {
                            d.open_alert = Some(a.alert_id.clone());
                        }
                    }
                }
                let _ = reply.send(result);
            }
            Command::Label { label, reply } => {
                let _ = reply.send(self.label(&label));
            }
            Command::ResetBaseline { device_id, by, reply } => {
                let result = match self.scorer.as_mut().and_then(Scorer::baselines_mut) {
                    None => Err("no [baseline] is configured".to_owned()),
                    Some(b) => b
                        .reset(&device_id)
                        .ok_or_else(|| format!("device {device_id:?} has no baseline yet: it has closed no window")),
                };
                if let Ok(st) = &result {
                    tracing::info!(device = %device_id, by = %by, "baseline reset: learning normal again");
                    self.alert_dirty.insert(device_id.clone());
                    if let Ok(mut view) = self.view.devices.write() {
                        if let Some(d) = view.get_mut(device_id.as_str()) {
                            d.baseline = Some(Box::new(st.clone()));
                        }
                    }
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Records maintenance feedback; a "no fault" label on an alert's
    /// window counts that alert as a false alarm.
    fn label(&mut self, l: &Label) -> Result<LabelOutcome, String> {
        let start = crate::http::label_time(&l.start).ok_or("start: give an RFC 3339 time or epoch milliseconds")?;
        let end = crate::http::label_time(&l.end).ok_or("end: give an RFC 3339 time or epoch milliseconds")?;
        if end <= start {
            return Err("end must be after start".into());
        }
        if l.device_id.is_empty() || l.device_id.len() > 256 {
            return Err("device_id: 1 to 256 bytes".into());
        }
        let mut ids: Vec<String> = Vec::new();
        let on_label = |device_id: &str, window_start_ms: i64, window_end_ms: i64| {
            device_id == l.device_id && window_start_ms < end && window_end_ms > start
        };
        self.store
            .scan_alert_heads(|_, h| {
                if on_label(h.device_id, h.window_start_ms, h.window_end_ms) {
                    ids.push(h.alert_id.to_owned());
                }
            })
            .map_err(|e| crate::error_chain(&e))?;
        // Records made since they were last written.
        ids.extend(
            self.alert_records
                .iter()
                .filter(|a| on_label(&a.device_id, a.window_start_ms, a.window_end_ms))
                .map(|a| a.alert_id.clone()),
        );
        ids.sort();
        ids.dedup();
        let false_alerts = if l.fault { 0 } else { ids.len() };
        self.stats.false_alerts += false_alerts as u64;
        self.store.put_label(&l.device_id, start, end, l.fault).map_err(|e| crate::error_chain(&e))?;
        tracing::info!(device = %l.device_id, fault = l.fault, alerts = ids.len(), "maintenance label");
        Ok(LabelOutcome { alerts: ids, false_alerts })
    }

    /// Windows closed and not yet scored.
    pub fn closed_waiting(&self) -> usize {
        self.closed.len()
    }

    /// Messages processed but not yet covered by a checkpoint.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Writes what changed since the last checkpoint, then releases the
    /// acknowledgements and offset commits it covers. Returns false when
    /// writing failed (nothing is acknowledged then).
    pub fn checkpoint(&mut self) -> bool {
        self.checkpoint_as(false)
    }

    /// [`Core::checkpoint`]; `full` snapshots every device (shutdown),
    /// leaving no journal to replay.
    fn checkpoint_as(&mut self, full: bool) -> bool {
        let started = Instant::now();
        let full = full || self.full_next;
        let mut cp = Checkpoint { seq: self.seq, ..Checkpoint::default() };
        let cp_seq = cp.seq;
        self.seq += 1;
        cp.devices = self.pipeline.engine_mut().checkpoint_changes(cp.seq, full);
        cp.full = full;
        // Whether this checkpoint writes the alert states of its turn (true:
        // all of them).
        let mut turns = None;
        if let Some(s) = &mut self.scorer {
            for id in &cp.devices.forgotten {
                s.forget(id);
                self.alert_dirty.insert(id.to_string());
            }
        }
        if let Some(s) = &self.scorer {
            let baselines = s.baselines();
            // Every alert state at its turn, changed or not, all of them in
            // a full checkpoint; no turns in a checkpoint with nothing else
            // to write, so an idle daemon writes nothing.
            let busy = full || !(cp.devices.is_empty() && self.alert_dirty.is_empty());
            if busy {
                let ids = s.policy().device_ids().chain(baselines.into_iter().flat_map(|b| b.device_ids()));
                for id in ids {
                    if (full || crate::state::state_turn(id, cp.seq)) && !self.alert_dirty.contains(id) {
                        self.alert_dirty.insert(id.to_owned());
                    }
                }
                turns = Some(full);
            }
            cp.all_states = full;
            cp.alert_states = self
                .alert_dirty
                .iter()
                .map(|id| (id.as_str(), (s.policy().device_state(id), baselines.and_then(|b| b.device(id)))))
                .collect();
        }
        // The journal files are the only copy of the snapshots and alert
        // states: they stay while a device's latest snapshot or journal
        // entries are in them (the engine's `journal_from`), and from the
        // checkpoint that wrote the class of alert-state turns written
        // longest ago on. A full checkpoint holds everything: the files
        // before it go.
        let class = (cp.seq % crate::state::JOURNAL_SPREAD) as usize;
        if !full && self.scorer.is_some() {
            let written = |(i, &seq): (usize, &u64)| if i == class && turns.is_some() { cp.seq } else { seq };
            let oldest = self.state_turns.iter().enumerate().map(written).min().unwrap_or(cp.seq);
            cp.devices.journal_from = cp.devices.journal_from.min(oldest);
        }
        cp.alerts = std::mem::take(&mut self.alert_records);
        cp.windows = std::mem::take(&mut self.window_records);
        let (late_mark, quarantine_mark) = (self.late_mark, self.quarantine_mark);
        cp.late = self.late_mark.delta(self.pipeline.engine().late_store());
        cp.quarantine = self.quarantine_mark.delta(self.pipeline.quarantine());
        cp.outbox = self.outbox.delta();
        // What each MQTT source's memory of acknowledged messages becomes
        // once the checkpoint is written.
        let mut plans = Vec::new();
        for s in &mut self.sources {
            match s {
                SourcePos::Mqtt { pending, acked, .. } => {
                    // Only new messages make a generation: acknowledging
                    // redeliveries again must not push out of memory the
                    // messages the broker may still be redelivering.
                    if pending.is_empty() {
                        plans.push(None);
                        continue;
                    }
                    let mut p = acked.plan(cp.seq, pending);
                    cp.positions.append(&mut p.writes);
                    cp.positions_removed.append(&mut p.removes);
                    plans.push(Some(p));
                }
                SourcePos::Local { .. } => {}
                SourcePos::Kafka { group, next, changed, .. } => {
                    for (topic, part) in changed.iter() {
                        if let Some(n) = next.get(&(topic.clone(), *part)) {
                            cp.positions
                                .push((format!("kafka/{group}/{topic}/{part}").into_bytes(), n.to_be_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        let (snapshots, logged) = (cp.devices.to_snapshot.len(), cp.devices.logged.len());
        cp.engine = Some(self.pipeline.engine());
        match self.store.checkpoint(&cp) {
            Ok(w) => {
                self.stats.checkpoints += 1;
                self.full_next = false;
                match turns {
                    Some(true) => self.state_turns.fill(cp_seq),
                    Some(false) => self.state_turns[class] = cp_seq,
                    None => {}
                }
                self.outbox.stored(&cp.outbox);
                // It borrowed the ids (alert states) and the engine (snapshots).
                drop(cp);
                self.alert_dirty.clear();
                if self.trimmed.elapsed() >= malloc::TRIM_EVERY {
                    malloc::trim();
                    self.trimmed = Instant::now();
                    // What stays in the arenas after the trim: RSS beyond
                    // `in_use` is memory free but not given back.
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        if let Some(h) = malloc::heap() {
                            tracing::debug!(in_use = h.in_use, free = h.free, mapped = h.mapped, "heap after trim");
                        }
                    }
                }
                metrics::histogram!(crate::metrics::CHECKPOINT_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::gauge!(crate::metrics::CHECKPOINT_BYTES).set(w.bytes as f64);
                let payloads: u64 = self.pipeline.sources().iter().map(|s| s.payloads).sum();
                tracing::debug!(
                    payloads,
                    skipped = self.stats.redelivered_skipped,
                    outbox = self.outbox.pending(),
                    records = w.records,
                    bytes = w.bytes,
                    snapshots,
                    logged,
                    owed = self.owed,
                    "checkpoint in {:.1?}",
                    started.elapsed()
                );
            }
            Err(e) => {
                self.stats.checkpoint_failures += 1;
                self.full_next = true;
                // Put the records back: they go with the next attempt.
                self.alert_records = cp.alerts;
                self.window_records = cp.windows;
                (self.late_mark, self.quarantine_mark) = (late_mark, quarantine_mark);
                tracing::error!("checkpoint failed, nothing acknowledged: {}", crate::error_chain(&e));
                return false;
            }
        }
        self.owed = 0;
        let mut plans = plans.into_iter();
        for s in &mut self.sources {
            match s {
                SourcePos::Mqtt { pending, acked, again, acks, .. } => {
                    let mut ids: Vec<u16> = pending.iter().map(|(p, _)| *p).collect();
                    if let Some(p) = plans.next().flatten() {
                        acked.commit(&p, cp_seq, std::mem::take(pending));
                    }
                    ids.append(again);
                    if let (Some(tx), false) = (acks.as_ref(), ids.is_empty()) {
                        let _ = tx.send(ids);
                    }
                }
                SourcePos::Local { .. } => {}
                SourcePos::Kafka { next, changed, commits, .. } => {
                    let c: kafka::Commit =
                        changed.drain().filter_map(|(t, p)| next.get(&(t.clone(), p)).map(|n| (t, p, *n))).collect();
                    if let (Some(tx), false) = (commits.as_ref(), c.is_empty()) {
                        let _ = tx.send(c);
                    }
                }
            }
        }
        true
    }

    /// One line for systemd's STATUS=.
    pub fn status_line(&self) -> String {
        let (open, acknowledged) = self.view.counts();
        format!(
            "{} devices, {:.0} readings/s, {open} open and {acknowledged} acknowledged alerts",
            self.pipeline.engine().device_count(),
            self.view.rate()
        )
    }

    /// Applies what a new configuration (SIGHUP) may change at run time:
    /// cleaning rules, the alert policy, the model path. Other changes are
    /// named in the log and wait for a restart.
    pub fn reload(&mut self, running: &Config, new: &Config) {
        let mut applied = Vec::new();
        // Against the rules in force (an earlier SIGHUP may have changed them).
        if new.cleaning.cleaning().rules() != self.pipeline.engine().cleaning().rules() {
            self.pipeline.engine_mut().set_cleaning(new.cleaning.cleaning());
            applied.push("cleaning");
        }
        if let (Some(h), Some(m)) = (&self.model, &new.model) {
            if h.dir() != m.path {
                match h.switch(&m.path) {
                    Ok(r) => {
                        tracing::info!("SIGHUP: model {r:?}");
                        applied.push("model.path");
                    }
                    Err(e) => {
                        tracing::error!(
                            "SIGHUP: model package {} refused, the running model stays: {e}",
                            m.path.display()
                        );
                        metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "result" => "refused").increment(1);
                        return;
                    }
                }
            }
        }
        if let Some(s) = &mut self.scorer {
            let threshold = crate::scoring::default_threshold(self.model.as_ref().map(|h| h.current()).as_deref());
            if let (Some(b), Some(nb)) = (s.baselines_mut(), &new.baseline) {
                let cfg = nb.baseline();
                if *b.config() != cfg {
                    b.set_config(cfg);
                    applied.push("baseline");
                }
            }
            if new.baseline.is_some() && s.alerts_from() != new.alerts_from() {
                s.set_alerts_from(new.alerts_from());
                applied.push("baseline.alerts_from");
            }
            match crate::scoring::policy_config(&new.alerts, threshold) {
                Ok(p) => {
                    if *s.policy().config() != p {
                        s.policy_mut().set_config(p);
                        applied.push("alerts");
                    }
                }
                Err(e) => {
                    tracing::error!("SIGHUP: [alerts] refused: {e}");
                    metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "result" => "refused").increment(1);
                    return;
                }
            }
        }
        let mut restart = Vec::new();
        for (key, changed) in [
            ("state", new.state != running.state),
            ("http", new.http != running.http),
            ("window", new.window != running.window),
            ("ingest", new.ingest != running.ingest),
            ("limits", new.limits != running.limits),
            ("source", new.sources != running.sources),
            ("sink", new.sinks != running.sinks),
            ("model (added or removed)", new.model.is_some() != running.model.is_some()),
            ("baseline (added or removed)", new.baseline.is_some() != running.baseline.is_some()),
        ] {
            if changed {
                restart.push(key);
            }
        }
        tracing::info!(
            "SIGHUP: configuration reloaded; applied: {}; needs a restart: {}",
            if applied.is_empty() { "nothing changed".to_owned() } else { applied.join(", ") },
            if restart.is_empty() { "nothing".to_owned() } else { restart.join(", ") }
        );
        metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "result" => "applied").increment(1);
    }

    /// Publishes the loop's counters and gauges.
    pub fn publish_metrics(&self) {
        crate::metrics::publish_pipeline(&self.pipeline);
        if let Some(s) = &self.scorer {
            crate::metrics::publish_scoring(s);
        }
        metrics::counter!(crate::metrics::CHECKPOINTS_TOTAL).absolute(self.stats.checkpoints);
        metrics::counter!(crate::metrics::CHECKPOINT_FAILURES_TOTAL).absolute(self.stats.checkpoint_failures);
        metrics::counter!(crate::metrics::REDELIVERED_SKIPPED_TOTAL).absolute(self.stats.redelivered_skipped);
        metrics::counter!(crate::metrics::ALERT_OUTBOX_DROPPED_TOTAL).absolute(self.stats.outbox_dropped);
        metrics::counter!(crate::metrics::FALSE_ALERTS_TOTAL).absolute(self.stats.false_alerts);
    }

    /// Drops the acknowledgement and commit channels: the sources close
    /// their sessions once they have sent what is queued.
    fn release_sources(&mut self) {
        for s in &mut self.sources {
            match s {
                SourcePos::Mqtt { acks, .. } => *acks = None,
                SourcePos::Kafka { commits, .. } => *commits = None,
                SourcePos::Local { .. } => {}
            }
        }
    }
}

/// How long shutdown may take in all before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config, path: &std::path::Path) -> anyhow::Result<()> {
    run_with(config, None, Some(path.to_owned()))
}

/// A task feeding the loop from inside the process, given its source index
/// and links (`faultline demo`).
pub type LocalFeed = Box<dyn FnOnce(usize, SourceLinks) -> tokio::task::JoinHandle<()> + Send>;

/// [`run`], with an in-process source besides the configured ones.
/// `path`: the configuration file, read again on SIGHUP.
pub fn run_with(config: Config, feed: Option<LocalFeed>, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    malloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(run_async(config, feed, path));
    // Everything that matters is on disk and acknowledged by now; a task
    // still running (a broker that does not answer) must not hold the exit.
    rt.shutdown_background();
    result
}

async fn run_async(config: Config, feed: Option<LocalFeed>, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let prometheus = crate::metrics::exporter();
    let listen: std::net::SocketAddr =
        config.http.listen.parse().with_context(|| format!("http.listen {:?}", config.http.listen))?;
    // SPEC 7: nothing for the network without authentication (checked with the
    // configuration too; here again for configurations built in code).
    if !listen.ip().is_loopback() && config.http.auth.is_none() {
        anyhow::bail!(
            "http.listen {listen} is not a loopback address and [http.auth] is not configured: \
             refusing to serve the dashboard and API to the network"
        );
    }
    let tls = match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(c), Some(k)) => Some(crate::http::tls::server_config(c, k).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let auth = Arc::new(
        crate::http::auth::Auth::from_config(config.http.auth.as_ref(), tls.is_some()).map_err(anyhow::Error::msg)?,
    );
    let opened = Instant::now();
    let store = Arc::new(Store::open(&config.state.dir)?);
    // After a crash sled reads its log back first: the time shows it.
    tracing::info!("state database opened from {} in {:.0?}", config.state.dir.display(), opened.elapsed());
    store.set_window_history(config.limits.window_history, config.limits.window_history_total);
    let model = match &config.model {
        Some(m) => {
            Some(Arc::new(ModelHandle::load(&m.path).with_context(|| format!("model package {}", m.path.display()))?))
        }
        None => None,
    };
    let _watcher = match &model {
        Some(h) => Some(h.watch(Duration::from_secs(2), |r| tracing::info!("model: {r:?}"))?),
        None => None,
    };
    let mut core = Core::new(&config, store.clone(), model).map_err(anyhow::Error::msg)?;
    malloc::settle();

    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let budget = Budget::default();
    let mut tasks = Vec::new();
    let mut statuses = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        let status = Arc::new(SourceStatus::default());
        statuses.push((source_label(&config, i), status.clone()));
        let links = SourceLinks { tx: tx.clone(), budget: budget.clone(), stop: stop_rx.clone(), status };
        match (s, &mut core.sources[i]) {
            (SourceConfig::Mqtt(m), SourcePos::Mqtt { acks, .. }) => {
                let (atx, arx) = mpsc::unbounded_channel();
                *acks = Some(atx);
                let max = config.ingest.max_payload_bytes;
                tasks.push(mqtt::spawn(i, m, max, links, arx).map_err(|e| anyhow::anyhow!("source[{i}]: {e}"))?);
            }
            (SourceConfig::Kafka(k), SourcePos::Kafka { commits, .. }) => {
                let (ctx, crx) = mpsc::unbounded_channel();
                *commits = Some(ctx);
                tasks.push(kafka::spawn_source(i, k, links, crx).map_err(|e| anyhow::anyhow!("source[{i}]: {e}"))?);
            }
            _ => unreachable!("sources are built from the same list"),
        }
    }
    if let Some(feed) = feed {
        let i = core.sources.len();
        let id = core.pipeline.source("local");
        core.sources.push(SourcePos::Local { id });
        let status = Arc::new(SourceStatus::default());
        status.set_connected(true);
        statuses.push(("local".to_owned(), status.clone()));
        let links = SourceLinks { tx: tx.clone(), budget: budget.clone(), stop: stop_rx.clone(), status };
        tasks.push(feed(i, links));
    }
    drop(tx);
    let (sink_stop_tx, sink_stop_rx) = watch::channel(false);
    let mut sink_task = None;
    if let Some(SinkConfig::Kafka(k)) = config.sinks.first() {
        core.sink = true;
        let status = Arc::new(SourceStatus::default());
        sink_task = Some(
            kafka::spawn_sink(k, core.outbox.clone(), sink_stop_rx, status)
                .map_err(|e| anyhow::anyhow!("sink[0]: {e}"))?,
        );
    }

    // HTTP: bound before the loop starts, so a taken port fails the start.
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(64);
    let app = crate::http::AppState {
        store: store.clone(),
        view: core.view.clone(),
        commands: cmd_tx,
        model: core.model.clone(),
        sources: Arc::new(statuses.clone()),
        auth,
        live: Arc::new(tokio::sync::Semaphore::new(crate::http::MAX_LIVE)),
        stop: stop_rx.clone(),
        metrics: prometheus.clone(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("HTTP on {scheme}://{}", listener.local_addr().unwrap_or(listen));
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        let app = crate::http::router(app);
        let served = match tls {
            Some(tls) => match crate::http::tls::TlsListener::new(listener, tls) {
                Ok(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
                Err(e) => Err(e),
            },
            None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        };
        if let Err(e) = served {
            tracing::error!("HTTP server: {e}");
        }
    });
    core.view.started.store(true, Ordering::Relaxed);

    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut stop = stop_rx.clone();
    // SIGHUP: the file is read and checked here; the loop applies what can change.
    let (reload_tx, mut reload_rx) = mpsc::channel::<Config>(1);
    if let Some(path) = path.clone() {
        tokio::spawn(reload_on_hangup(path, reload_tx));
    }
    tracing::info!(sources = config.sources.len(), "faultline running");
    // State restored, model loaded, HTTP bound: tell systemd (Type=notify).
    let notify = Notifier::from_env();
    core.publish_metrics();
    notify.ready(&core.status_line());
    // What only starting used leaves memory (benches/RESULTS.md, 27).
    match coldcode::page_out() {
        Ok(bytes) => tracing::debug!(bytes, "start-up code paged out"),
        Err(e) => tracing::debug!("start-up code not paged out: {e}"),
    }

    // The loop.
    let interval = config.state.checkpoint_interval;
    let mut last_checkpoint = Instant::now();
    let mut last_tick = Instant::now();
    let mut buf = Vec::with_capacity(512);
    loop {
        let until_checkpoint = interval.saturating_sub(last_checkpoint.elapsed());
        let wait = if core.owed() > 0 {
            until_checkpoint.min(IDLE_FLUSH)
        } else {
            until_checkpoint.min(Duration::from_secs(1))
        };
        let mut idle = false;
        tokio::select! {
            n = rx.recv_many(&mut buf, 512) => {
                if n == 0 {
                    break; // every source has ended
                }
                for input in buf.drain(..) {
                    let now = now_ms();
                    core.handle(input, now);
                    // Windows closed are scored in batches (inference is
                    // cheaper per window), but not kept waiting behind the
                    // rest of the inputs: an alert is on its way at once.
                    if core.closed_waiting() >= SCORE_BATCH {
                        core.score(now);
                    }
                }
                core.score(now_ms());
            }
            Some(cmd) = cmd_rx.recv() => core.command(cmd, now_ms()),
            Some(new) = reload_rx.recv() => core.reload(&config, &new),
            _ = tokio::time::sleep(wait) => idle = true,
            _ = stop.changed() => break,
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let now = now_ms();
            core.tick(now);
            core.score(now);
            core.publish_metrics();
            for (label, st) in &statuses {
                let label = label.clone();
                metrics::gauge!(crate::metrics::SOURCE_CONNECTED, "source" => label.clone())
                    .set(if st.connected.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
                metrics::counter!(crate::metrics::SOURCE_RECONNECTS_TOTAL, "source" => label)
                    .absolute(st.reconnects.load(Ordering::Relaxed));
            }
            metrics::gauge!(crate::metrics::SOURCE_BACKLOG).set(rx.len() as f64);
            metrics::gauge!(crate::metrics::SOURCE_BACKLOG_BYTES).set(budget.used() as f64);
            metrics::gauge!(crate::metrics::UNACKNOWLEDGED).set(core.owed() as f64);
            last_tick = Instant::now();
            // The loop is alive and turning: the watchdog ping comes from here,
            // so a stuck loop stops the pings and systemd restarts the daemon.
            notify.tick(&core);
            if let Some(h) = &prometheus {
                if notify.every_10s() {
                    h.run_upkeep();
                    metrics::gauge!(crate::metrics::STATE_BYTES).set(store.size_on_disk() as f64);
                    metrics::counter!(crate::metrics::LIMIT_HITS_TOTAL, "limit" => "name_lists")
                        .absolute(store.names_inline());
                }
            }
        }
        if last_checkpoint.elapsed() >= interval || core.owed() >= MAX_OWED || (idle && core.owed() > 0) {
            core.checkpoint();
            last_checkpoint = Instant::now();
        }
    }

    // Shutdown: stop intake, process what is already queued, checkpoint,
    // acknowledge and commit, close the sessions. No window closes early.
    tracing::info!("shutting down");
    notify.stopping();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let now = now_ms();
    while let Ok(input) = rx.try_recv() {
        core.handle(input, now);
    }
    core.score(now);
    rx.close();
    let ok = core.checkpoint_as(true);
    core.publish_metrics();
    core.release_sources();
    for t in tasks {
        let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), t).await;
    }
    // Give the sink a moment to deliver what is queued; the rest waits in the outbox.
    if let Some(t) = sink_task {
        let grace = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(3));
        let _ = tokio::time::sleep(grace.min(Duration::from_millis(500))).await;
        let _ = sink_stop_tx.send(true);
        let _ = tokio::time::timeout(grace, t).await;
        // What the sink delivered meanwhile leaves the store.
        let delta = core.outbox.delta();
        match store.write_outbox(&delta) {
            Ok(()) => core.outbox.stored(&delta),
            Err(e) => tracing::warn!("alert outbox: {}", crate::error_chain(&e)),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
    store.flush()?;
    if !ok {
        anyhow::bail!("the final checkpoint failed; the brokers will deliver again what it did not cover");
    }
    tracing::info!(pending_alerts = core.outbox.pending(), "stopped");
    Ok(())
}

/// Reads the configuration again on every SIGHUP; a good one goes to the
/// loop, a bad one is refused with its problems and nothing changes.
async fn reload_on_hangup(path: std::path::PathBuf, tx: mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::from_file(&p)).await;
        match loaded {
            Ok(Ok(c)) => {
                if tx.send(c).await.is_err() {
                    return;
                }
            }
            Ok(Err(problems)) => {
                let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                tracing::error!(
                    "SIGHUP: {} refused, the running configuration stays: {}",
                    path.display(),
                    list.join("; ")
                );
                metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "result" => "refused").increment(1);
            }
            Err(e) => tracing::error!("SIGHUP: {e}"),
        }
    }
}

/// The sd_notify side of `Type=notify`: READY=1, STATUS= lines, WATCHDOG=1
/// pings from the loop's tick, STOPPING=1. Without `NOTIFY_SOCKET` it does nothing.
struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    last_ping: std::cell::Cell<Instant>,
    last_status: std::cell::Cell<Instant>,
    ticks: std::cell::Cell<u64>,
}

impl Notifier {
    fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        // As sd_watchdog_enabled(3): WATCHDOG_USEC set, and WATCHDOG_PID, if
        // set, ours. Ping at half the interval systemd waits.
        let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let ours = env_u64("WATCHDOG_PID").is_none_or(|p| p == u64::from(std::process::id()));
        let watchdog =
            env_u64("WATCHDOG_USEC").filter(|u| enabled && ours && *u > 0).map(|u| Duration::from_micros(u / 2));
        Notifier {
            enabled,
            watchdog,
            last_ping: std::cell::Cell::new(Instant::now()),
            last_status: std::cell::Cell::new(Instant::now()),
            ticks: std::cell::Cell::new(0),
        }
    }

    fn send(&self, states: &[sd_notify::NotifyState]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(false, states) {
                tracing::warn!("sd_notify: {e}");
            }
        }
    }

    fn ready(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
        if let Some(w) = self.watchdog {
            tracing::info!("systemd watchdog: pinging every {w:?}");
        }
    }

    /// Called from the loop about once a second.
    fn tick(&self, core: &Core) {
        self.ticks.set(self.ticks.get() + 1);
        if self.watchdog.is_some_and(|w| self.last_ping.get().elapsed() >= w) {
            self.send(&[sd_notify::NotifyState::Watchdog]);
            self.last_ping.set(Instant::now());
        }
        if self.enabled && self.last_status.get().elapsed() >= Duration::from_secs(5) {
            self.send(&[sd_notify::NotifyState::Status(&core.status_line())]);
            self.last_status.set(Instant::now());
        }
    }

    fn every_10s(&self) -> bool {
        self.ticks.get() % 10 == 1
    }

    fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
