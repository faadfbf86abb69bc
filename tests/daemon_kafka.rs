//! `faultline run` with a real Kafka-protocol broker (tansu): readings from
//! a topic, alerts to the alert topic read back with `tansu cat` (not
//! faultline's librdkafka), crashes, and an alert-sink outage.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::brokers::{replay, Daemon, Mosquitto, Tansu};
use common::skab::{check_against_expected, expected, replay_args, sample, wait_quiet, Jitter, Run, ROWS};

const ALERTS: &str = "alert-signals";

fn sink(brokers: &str) -> String {
    format!("[[sink]]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{ALERTS}\"\n")
}

/// A daemon reading from and alerting to tansu `t`.
fn start(t: &Tansu) -> Run {
    Run::start(&kafka_source(&t.brokers()), &sink(&t.brokers()), &["partitions assigned"])
}

fn mqtt_source(url: &str) -> String {
    format!("[[source]]\ntype = \"mqtt\"\nurl = \"{url}\"\ntopics = [\"pumps/+\"]\ndevice_from_topic = \"pumps/{{device_id}}\"\n")
}

fn kafka_source(brokers: &str) -> String {
    format!("[[source]]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"sensor-data\"]\ngroup_id = \"faultline-test\"\n")
}

/// (alert_id, status) of every record on the alert topic.
fn records_on(t: &Tansu) -> Vec<(String, String)> {
    t.read(ALERTS, 0)
        .iter()
        .map(|v| (v["alert_id"].as_str().unwrap_or("?").to_owned(), v["status"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

/// Waits until the alert topic holds every record in `want` (and returns what it holds).
fn wait_for_records(t: &Tansu, want: &BTreeSet<(String, String)>, d: &Daemon) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = records_on(t);
        let set: BTreeSet<_> = got.iter().cloned().collect();
        if want.is_subset(&set) {
            return got;
        }
        assert!(Instant::now() < deadline, "alert topic holds {set:?}, want {want:?}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn start_tansu() -> Tansu {
    let t = Tansu::start();
    t.create_topic("sensor-data", 3);
    t.create_topic(ALERTS, 1);
    t
}

/// Every alert record's key is its device id (read with librdkafka: `tansu cat` does not show keys).
fn assert_keys_are_device_ids(brokers: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "key-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(ALERTS, 0, rdkafka::Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n == 0 || Instant::now() < deadline.min(Instant::now() + Duration::from_millis(500)) {
        assert!(Instant::now() < deadline, "no alert records read");
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                assert_eq!(m.key(), v["device_id"].as_str().map(str::as_bytes), "key of {v}");
                n += 1;
            }
            Some(Err(e)) => panic!("{e}"),
            None if n > 0 => break,
            None => {}
        }
    }
}

#[test]
fn readings_from_kafka_become_alerts_on_the_alert_topic() {
    let t = start_tansu();
    let Run { dir: _dir, state, text, mut d, .. } = start(&t);
    let sample = sample();
    // The key carries the device id: the payloads have none.
    // In batches of 50 readings per record (the last one shorter).
    let brokers = t.brokers();
    let mut args = replay_args(["--kafka", &brokers], "sensor-data", "max", sample.to_str().unwrap());
    args.extend(["--batch", "50"]);
    replay(&args);
    d.wait_for_payloads(ROWS.div_ceil(50), Duration::from_secs(60));
    let want = expected(&text).records;
    let got = wait_for_records(&t, &want, &d);
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want, "exactly the expected alerts");
    assert_eq!(got.len(), want.len(), "no record twice in a run without crashes: {got:?}");
    assert_keys_are_device_ids(&t.brokers());
    assert!(d.terminate().success(), "{}", d.log_text());
    assert_eq!(d.last_field("outbox"), Some(0), "outbox drained");
    check_against_expected(&state, &text);
}

#[test]
fn kill_9_with_kafka_in_and_out_gives_the_uninterrupted_alerts() {
    let t = start_tansu();
    let Run { dir: _dir, state, text, mut d, .. } = start(&t);
    let brokers = t.brokers();
    let sample = sample();
    let publisher = std::thread::spawn(move || {
        replay(&replay_args(["--kafka", &brokers], "sensor-data", "300", sample.to_str().unwrap()))
    });
    let mut jitter = Jitter::new();
    let seed = jitter.seed;
    for i in 0..3 {
        let wait = jitter.ms(500, 1000);
        std::thread::sleep(Duration::from_millis(wait));
        d.kill9();
        eprintln!("crash {i} after {wait} ms (seed {seed})");
        d.restart();
    }
    publisher.join().expect("replay finished");
    wait_quiet(&d);
    let want = expected(&text).records;
    let got = wait_for_records(&t, &want, &d);
    // A record may be sent twice around a crash; the set is the same.
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert!(d.terminate().success(), "{}", d.log_text());
    check_against_expected(&state, &text);
}

#[test]
fn with_kafka_down_the_outbox_grows_survives_a_restart_and_drains_in_order() {
    let mqtt = Mosquitto::start();
    let t = start_tansu();
    let Run { dir, text, mut d, .. } = Run::start(&mqtt_source(&mqtt.url()), &sink(&t.brokers()), &["MQTT connected"]);

    let csv = std::fs::read_to_string(sample()).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let (a, b) = body.split_at(body.len() * 2 / 5);
    let first = dir.path().join("first.csv");
    let rest = dir.path().join("rest.csv");
    std::fs::write(&first, format!("{header}\n{}\n", a.join("\n"))).unwrap();
    std::fs::write(&rest, format!("{header}\n{}\n", b.join("\n"))).unwrap();
    let url = mqtt.url();
    let go = |file: &Path| replay(&replay_args(["--mqtt", &url], "pumps/{device_id}", "max", file.to_str().unwrap()));

    go(&first);
    d.wait_for_payloads(a.len() as u64, Duration::from_secs(60));
    let want = expected(&text).records;
    std::thread::sleep(Duration::from_secs(1));
    let before = records_on(&t);
    t.freeze();
    go(&rest);
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    // The daemon keeps going; the alerts wait in the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.last_field("outbox").unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no alert waits in the outbox:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let waiting = d.last_field("outbox").unwrap_or(0);
    // A restart while Kafka is still away: a prompt clean exit, and the
    // outbox survives it.
    let stopping = Instant::now();
    assert!(d.terminate().success(), "{}", d.log_text());
    assert!(stopping.elapsed() < Duration::from_secs(12), "shutdown took {:?}", stopping.elapsed());
    d.restart();
    let restored = d.wait_for_log("outbox=", Duration::from_secs(20));
    assert!(restored.contains(&format!("outbox={waiting}")), "{restored}");
    std::thread::sleep(Duration::from_secs(1));
    t.thaw();
    let after = wait_for_records(&t, &want, &d);
    let all: BTreeSet<_> = after.iter().cloned().collect();
    assert_eq!(all, want, "nothing lost: {} before the outage, {} after ({waiting} waited)", before.len(), after.len());
    // In order per alert: open before cleared.
    for (id, _) in after.iter().filter(|(_, s)| s == "cleared") {
        let open = after.iter().position(|r| r.0 == *id && r.1 == "open");
        let cleared = after.iter().position(|r| r.0 == *id && r.1 == "cleared");
        if let (Some(o), Some(c)) = (open, cleared) {
            assert!(o < c, "{id}: open after cleared in {after:?}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.last_field("outbox") != Some(0) {
        assert!(Instant::now() < deadline, "outbox not drained:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn a_topic_made_again_is_read_from_its_start() {
    // One partition, so both devices' records share it.
    let t = Tansu::start();
    t.create_topic("sensor-data", 1);
    t.create_topic(ALERTS, 1);
    let Run { dir: _dir, state, mut d, .. } = start(&t);
    let brokers = t.brokers();
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let send = |device: &str| {
        let mut args = replay_args(["--kafka", &brokers], "sensor-data", "max", sample);
        let i = args.iter().position(|a| *a == "--device").unwrap();
        args[i + 1] = device;
        replay(&args);
    };
    send("pump-1");
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    assert!(d.terminate().success());
    // The topic goes and comes back empty; its offsets start at 0 again.
    t.delete_topic("sensor-data");
    t.create_topic("sensor-data", 1);
    send("pump-2");
    d.restart();
    d.wait_for_log("was deleted and made again", Duration::from_secs(30));
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    assert!(d.terminate().success());
    let (windows, _, _) = common::skab::stored(&state);
    let readings = |dev: &str| windows.iter().filter(|((d, _), _)| d == dev).map(|(_, n)| n).sum::<u64>();
    assert_eq!(readings("pump-2"), readings("pump-1"), "the new topic's records were all read");
}

#[test]
fn mqtt_and_kafka_sources_at_once() {
    let mqtt = Mosquitto::start();
    let t = start_tansu();
    let sources = format!("{}{}", mqtt_source(&mqtt.url()), kafka_source(&t.brokers()));
    let Run { dir: _dir, state, mut d, .. } =
        Run::start(&sources, &sink(&t.brokers()), &["MQTT connected", "partitions assigned"]);
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let (url, brokers) = (mqtt.url(), t.brokers());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut a = replay_args(["--mqtt", &url], "pumps/{device_id}", "max", sample);
            let i = a.iter().position(|x| *x == "--device").unwrap();
            a[i + 1] = "pump-m";
            replay(&a);
        });
        s.spawn(|| {
            let mut a = replay_args(["--kafka", &brokers], "sensor-data", "max", sample);
            let i = a.iter().position(|x| *x == "--device").unwrap();
            a[i + 1] = "pump-k";
            replay(&a);
        });
    });
    d.wait_for_payloads(2 * ROWS, Duration::from_secs(60));
    assert!(d.terminate().success());
    let (windows, alerts, _) = common::skab::stored(&state);
    let per = |dev: &str| windows.iter().filter(|((d, _), _)| d == dev).map(|(k, n)| (k.1, *n)).collect::<Vec<_>>();
    assert_eq!(per("pump-m"), per("pump-k"), "the same file through either source gives the same windows");
    assert!(!per("pump-m").is_empty());
    assert!(alerts.keys().any(|a| a.starts_with("pump-m/")) && alerts.keys().any(|a| a.starts_with("pump-k/")));
}

#[test]
fn synthetic_load_starts_at_the_event_time_given() {
    // `benches/restart.sh resume` goes on with a load from where it stopped.
    let t = Tansu::start();
    t.create_topic("synthetic", 1);
    let args = ["--devices", "3", "--readings", "6", "--interval", "10s", "--start", "1700000000000"];
    replay(&[&args[..], &["--kafka", &t.brokers(), "--topic", "synthetic"]].concat());
    let got: Vec<(String, i64)> = t
        .read("synthetic", 0)
        .iter()
        .map(|v| (v["device_id"].as_str().unwrap_or("?").to_owned(), v["ts"].as_i64().unwrap_or(-1)))
        .collect();
    let want: Vec<(String, i64)> = [1_700_000_000_000, 1_700_000_010_000]
        .into_iter()
        .flat_map(|ts| (0..3).map(move |d| (format!("dev-{d:05}"), ts)))
        .collect();
    assert_eq!(got, want);
}
