//! The Kafka broker's own read ceiling, for `benches/load.sh ceilings`:
//! reads a topic's partitions from their beginning with librdkafka (the
//! same library and fetch bounds as the daemon's source, no consumer
//! group) and does nothing with the records.
//!
//!     cargo run --release --example kafka_drain -- BROKERS TOPIC PARTITIONS RECORDS [KEY=VALUE...]
//!
//! KEY=VALUE pairs are librdkafka settings, over the defaults below.
//! Prints the records read and the seconds from the first record to the
//! last, and from the start (connecting included).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, partitions, records, options @ ..] = args.as_slice() else {
        return Err("usage: kafka_drain BROKERS TOPIC PARTITIONS RECORDS [KEY=VALUE...]".into());
    };
    let partitions: i32 = partitions.parse()?;
    let records: u64 = records.parse()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-drain")
        .set("enable.auto.commit", "false")
        // The daemon's defaults (src/daemon/kafka.rs).
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.queue.backoff.ms", "10");
    for o in options {
        let (k, v) = o.split_once('=').ok_or_else(|| format!("{o}: not KEY=VALUE"))?;
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut first = None;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < records {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {n} of {records} records in 300 s").into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
                bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let from_first = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "{n} records ({bytes} bytes of payload) in {from_first:.3} s from the first, {:.3} s from the start",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
