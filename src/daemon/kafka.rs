//! Kafka: the readings source (a consumer group, offsets committed only
//! after a checkpoint) and the alert sink (the outbox drained by an
//! idempotent producer).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use super::{Input, KafkaRecord, SourceLinks, SourceStatus};
use crate::config::{KafkaSink, KafkaSource};

/// Offsets to commit: (topic, partition, next offset).
pub type Commit = Vec<(Arc<str>, i32, i64)>;

struct Context {
    index: usize,
    tx: mpsc::Sender<Input>,
    status: Arc<SourceStatus>,
    /// Bumped by every assignment, so the task looks at partitions' ends again.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl ClientContext for Context {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag
    /// of every assigned partition behind its end.
    fn stats(&self, stats: rdkafka::Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        crate::metrics::KAFKA_CONSUMER_LAG,
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Revoke(tpl) => {
                tracing::info!(source = self.index, "Kafka partitions revoked: {}", describe(tpl));
                // Write what was read from them now, so whoever gets them next
                // does not read it a second time.
                let _ = self.tx.try_send(Input::CheckpointNow);
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(source = self.index, "Kafka partitions assigned: {}", describe(tpl))
            }
            Rebalance::Error(e) => tracing::warn!(source = self.index, "Kafka rebalance error: {e}"),
        }
    }

    fn post_rebalance(&self, c: &rdkafka::consumer::BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let assigned = c.assignment().map(|a| a.count()).unwrap_or(0);
        self.status.set_connected(assigned > 0);
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl.elements().iter().map(|e| format!("{}[{}]", e.topic(), e.partition())).collect();
    parts.join(" ")
}

fn client_config(brokers: &str, options: &std::collections::BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// Starts the consumer task. `commits` carries the offsets of each
/// checkpoint; when the processing loop drops its end, the consumer
/// commits synchronously and leaves the group.
pub fn spawn_source(
    index: usize,
    cfg: &KafkaSource,
    links: SourceLinks,
    mut commits: mpsc::UnboundedReceiver<Commit>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let SourceLinks { tx, budget, mut stop, status } = links;
    let mut c = client_config(&cfg.brokers, &cfg.options);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    let defaults = [
        // A new group reads what is already on the topic.
        ("auto.offset.reset", "earliest"),
        // A daemon restarted after a crash finds its partitions again soon:
        // the broker notices the dead member after this long.
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
        // Consumer lag per partition for the metrics.
        ("statistics.interval.ms", "5000"),
        // What librdkafka fetches ahead while the processing loop is busy
        // (its default: 64 MiB). When the loop falls behind, the consumer
        // task stops polling and fetching stops at this bound: the rest
        // waits on the broker. 4 MiB is ~15,000 readings, tens of
        // milliseconds of work: 16 MiB read no faster (benches/load.sh,
        // kafka: 343 k readings/s at 4 MiB, 309 k at 16) and held ~35 MB more.
        ("queued.max.messages.kbytes", "4096"),
        // How long a partition waits to fetch again once that bound is
        // reached (librdkafka's default: 1 s). The loop empties 4 MiB in
        // tens of milliseconds, then sat idle for the rest of the second:
        // reading a backlog ran at a third of the loop's speed.
        ("fetch.queue.backoff.ms", "10"),
    ];
    if !cfg.options.contains_key("group.instance.id") {
        // Static membership: a restarted daemon takes its own place in the
        // group back at once instead of waiting out its dead self.
        // Per host, so daemons on several hosts can share a group.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        c.set("group.instance.id", format!("{}-{}-{index}", cfg.group_id, host.trim()));
    }
    for (k, v) in defaults {
        if !cfg.options.contains_key(k) {
            c.set(k, v);
        }
    }
    let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ctx = Context { index, tx: tx.clone(), status: status.clone(), generation: generation.clone() };
    let consumer: StreamConsumer<Context> =
        c.create_with_context(ctx).map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    let mut tx = Some(tx);
    Ok(tokio::spawn(async move {
        let mut last_error = None::<String>;
        // Partitions whose end was looked at since the last assignment.
        let mut checked: (u64, std::collections::HashSet<(Arc<str>, i32)>) = (u64::MAX, Default::default());
        let mut topics = Topics::default();
        // One stream for the task's life: `recv` makes one per record.
        let mut stream = consumer.stream();
        loop {
            tokio::select! {
                m = stream.next(), if tx.is_some() => match m {
                    Some(Ok(m)) => {
                        last_error = None;
                        // The records librdkafka holds already go to the loop
                        // together: one message in the channel, one wake-up of
                        // the loop, one take from the byte budget for all.
                        let mut batch = Batch::default();
                        let mut next = Some(m);
                        while let Some(m) = next.take() {
                            status.received.fetch_add(1, Ordering::Relaxed);
                            let topic = topics.get(m.topic());
                            // First record of a partition since it was assigned: tell the
                            // loop where the partition ends, so a position past the end
                            // (the topic was deleted and made again) is noticed. Before
                            // this record, so the batch so far goes first.
                            let g = generation.load(Ordering::Relaxed);
                            if checked.0 != g {
                                checked = (g, Default::default());
                            }
                            if checked.1.insert((topic.clone(), m.partition())) {
                                batch.send(&mut tx, index, &budget).await;
                                let partition = m.partition();
                                let ends = tokio::task::block_in_place(|| {
                                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))
                                });
                                if let (Ok((low, high)), Some(t)) = (ends, &tx) {
                                    let input = Input::KafkaEnds { source: index, topic: topic.clone(), partition, low, high };
                                    let _ = t.send(input).await;
                                }
                            }
                            batch.push(KafkaRecord {
                                topic,
                                partition: m.partition(),
                                offset: m.offset(),
                                key: m.key().map(<[u8]>::to_vec),
                                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                            });
                            if batch.full() {
                                break;
                            }
                            next = match stream.next().now_or_never() {
                                Some(Some(Ok(m))) => Some(m),
                                Some(Some(Err(e))) => {
                                    note_error(&mut last_error, index, e);
                                    None
                                }
                                _ => None,
                            };
                        }
                        batch.send(&mut tx, index, &budget).await;
                    }
                    Some(Err(e)) => {
                        note_error(&mut last_error, index, e);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                },
                c = commits.recv() => match c {
                    Some(offsets) => commit(&consumer, &offsets, CommitMode::Async, index),
                    None => break,
                },
                _ = stop.changed(), if tx.is_some() => {
                    if *stop.borrow() {
                        tx = None;
                    }
                }
            }
        }
        // No unsubscribe: a static member keeps its place (and its partitions)
        // until the session times out, so a restart resumes without a rebalance.
        // Closing a consumer can wait on the broker: not on a runtime worker.
        drop(stream);
        let _ = std::thread::Builder::new().name("kafka-close".into()).spawn(move || drop(consumer));
    }))
}

/// Records handed to the processing loop in one message at most.
const BATCH_RECORDS: usize = 256;

/// Bytes of one batch at most (a record larger goes alone).
const BATCH_BYTES: usize = 1 << 20;

/// Records read and not yet sent to the processing loop.
#[derive(Default)]
struct Batch {
    records: Vec<KafkaRecord>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, r: KafkaRecord) {
        // What the record holds in memory, so the byte budget bounds it.
        self.bytes += r.payload.len() + r.key.as_ref().map_or(0, Vec::len) + std::mem::size_of::<KafkaRecord>();
        self.records.push(r);
    }

    fn full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES
    }

    /// Sends the records (once the byte budget has room) and empties the
    /// batch; `tx` becomes `None` when the loop has gone.
    async fn send(&mut self, tx: &mut Option<mpsc::Sender<Input>>, source: usize, budget: &super::Budget) {
        if self.records.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.records);
        let input = Input::Kafka { budget: budget.take(std::mem::take(&mut self.bytes)).await, source, records };
        if let Some(t) = &*tx {
            if t.send(input).await.is_err() {
                *tx = None;
            }
        }
    }
}

/// Topic names shared by their records: one allocation per topic, not per record.
#[derive(Default)]
struct Topics(Vec<Arc<str>>);

impl Topics {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.0.iter().find(|t| &***t == name) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(name);
        self.0.push(t.clone());
        t
    }
}

/// Logs a consumer error once until another one (or a record) comes.
fn note_error(last: &mut Option<String>, index: usize, e: rdkafka::error::KafkaError) {
    let e = e.to_string();
    if last.as_ref() != Some(&e) {
        tracing::warn!(source = index, "Kafka consumer: {e}");
        *last = Some(e);
    }
}

fn commit(consumer: &StreamConsumer<Context>, offsets: &Commit, mode: CommitMode, index: usize) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in offsets {
        if tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).is_err() {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // The checkpoint holds the offsets; a commit that fails only means
        // records are read again and recognised after a restart.
        tracing::debug!(source = index, "Kafka offset commit failed: {e}");
    }
}

/// The alert sink: sends the outbox in order with an idempotent producer
/// and lets each record go once the broker confirmed it.
pub fn spawn_sink(
    cfg: &KafkaSink,
    outbox: Arc<Outbox>,
    mut stop: watch::Receiver<bool>,
    status: Arc<SourceStatus>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut c = client_config(&cfg.brokers, &cfg.options);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // Never give up on a record: with Kafka away the outbox just grows.
        .set("message.timeout.ms", "0");
    if !cfg.options.contains_key("linger.ms") {
        c.set("linger.ms", "1");
    }
    let producer: FutureProducer = c.create().map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
    let topic = cfg.topic.clone();
    Ok(tokio::spawn(async move {
        const INFLIGHT: usize = 1000;
        let mut next = 0u64;
        let mut inflight = std::collections::VecDeque::new();
        let mut backoff = super::mqtt::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            if *stop.borrow() && inflight.is_empty() {
                break;
            }
            // Fill the window of records in flight, oldest first.
            if inflight.len() < INFLIGHT && !*stop.borrow() {
                for p in outbox.from(next, INFLIGHT - inflight.len()) {
                    let rec = &p.record;
                    let r = FutureRecord::to(&topic).key(rec.device_id.as_str()).payload(rec.payload.as_str());
                    match producer.send_result(r) {
                        Ok(f) => {
                            // A restored record's latency counts the time the daemon was down.
                            inflight.push_back((p.seq, p.made_ms(), f));
                            next = p.seq + 1;
                        }
                        Err((e, _)) => {
                            tracing::warn!("alert sink: cannot queue a record ({e}); retrying");
                            break;
                        }
                    }
                }
            }
            // Wait for the oldest record's delivery, or for new records to
            // send meanwhile (they must not wait for this one's round trip).
            let delivered = tokio::select! {
                r = async {
                    match inflight.front_mut() {
                        Some((_, _, fut)) => fut.await,
                        None => std::future::pending().await,
                    }
                } => r,
                _ = outbox.ready() => continue,
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = stop.changed(), if !*stop.borrow() => continue,
            };
            let Some((seq, made, _)) = inflight.pop_front() else { continue };
            match delivered {
                Ok(Ok(_)) => {
                    status.set_connected(true);
                    status.received.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    if let Some(made) = made {
                        let secs = (crate::time::now_ms() - made).max(0) as f64 / 1000.0;
                        metrics::histogram!(crate::metrics::ALERT_DELIVERY_SECONDS).record(secs);
                    }
                    outbox.delivered(seq);
                }
                other => {
                    status.set_connected(false);
                    let why = match other {
                        Ok(Err((e, _))) => e.to_string(),
                        _ => "the producer went away".to_owned(),
                    };
                    // Send again from this record on: order per device is kept,
                    // duplicates are recognisable by alert_id and status.
                    let wait = backoff.next_wait();
                    tracing::warn!("alert sink: delivery failed ({why}); sending again from record {seq} in {wait:?}");
                    inflight.clear();
                    next = seq;
                    tokio::time::sleep(wait).await;
                }
            }
            crate::metrics::outbox_pending(outbox.pending());
        }
        let _ = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            let _ = producer.flush(Duration::from_secs(2));
        });
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// What `options` may ask of librdkafka is built in: TLS and SASL
    /// (OpenSSL), and OIDC tokens, its one use of libcurl (built from
    /// curl-sys's source, not Debian's).
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_oidc() {
        let mut options = BTreeMap::new();
        options.insert("security.protocol".to_owned(), "SASL_SSL".to_owned());
        options.insert("sasl.mechanism".to_owned(), "OAUTHBEARER".to_owned());
        options.insert("sasl.oauthbearer.method".to_owned(), "oidc".to_owned());
        let native = super::client_config("127.0.0.1:1", &options).create_native_config();
        let native = native.unwrap_or_else(|e| panic!("librdkafka refused the options: {e}"));
        let features = native.get("builtin.features").unwrap_or_default();
        for f in ["ssl", "sasl_scram", "sasl_oauthbearer", "oidc"] {
            assert!(features.split(',').any(|x| x == f), "{f} not in librdkafka's builtin.features: {features}");
        }
    }
}
