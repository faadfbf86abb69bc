//! The processing loop's bookkeeping of MQTT redeliveries, on a real sled store.

use super::*;

const CONFIG: &str = "[[source]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
                      topics = [\"sensors/+/telemetry\"]\ndevice_from_topic = \"sensors/{device_id}/telemetry\"\n";

const TOPIC: &str = "sensors/pump-1/telemetry";

fn payload(n: u16) -> String {
    format!("{{\"ts\": {}, \"values\": {{\"Temperature\": {n}}}}}", 1_000_000 + u64::from(n) * 1000)
}

/// The `positions` tree's keys.
fn position_keys(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let store = crate::state::retry(|| Store::open(dir).map_err(|e| crate::error_chain(&e)));
    store.restore().expect("restore").positions.into_iter().map(|(k, _)| k).collect()
}

struct Rig {
    core: Core,
    acks: mpsc::UnboundedReceiver<Vec<u16>>,
    /// Processing time of the deliveries.
    now_ms: i64,
}

impl Rig {
    fn open(dir: &std::path::Path) -> Rig {
        Rig::open_with(dir, CONFIG)
    }

    fn open_with(dir: &std::path::Path, config: &str) -> Rig {
        let config = Config::from_toml(config).unwrap_or_else(|p| panic!("{p:?}"));
        let store = Arc::new(crate::state::retry(|| Store::open(dir).map_err(|e| crate::error_chain(&e))));
        let mut core = Core::new(&config, store, None).expect("core");
        let (tx, acks) = mpsc::unbounded_channel();
        match &mut core.sources[0] {
            SourcePos::Mqtt { acks, .. } => *acks = Some(tx),
            _ => panic!("an MQTT source"),
        }
        Rig { core, acks, now_ms: 0 }
    }

    /// Message `pkid` carries reading `n` (its payload differs from every other's).
    fn deliver(&mut self, pkid: u16, n: u16, dup: bool) {
        self.deliver_to(TOPIC, pkid, n, dup);
    }

    fn deliver_to(&mut self, topic: &str, pkid: u16, n: u16, dup: bool) {
        let input = Input::Mqtt {
            source: 0,
            topic: topic.into(),
            payload: payload(n).into_bytes().into(),
            pkid,
            dup,
            budget: None,
        };
        self.core.handle(input, self.now_ms);
    }

    fn checkpoint(&mut self) -> Vec<u16> {
        assert!(self.core.checkpoint(), "the checkpoint is written");
        let mut ids = Vec::new();
        while let Ok(mut more) = self.acks.try_recv() {
            ids.append(&mut more);
        }
        ids
    }

    fn processed(&self) -> u64 {
        self.core.pipeline().sources().iter().map(|s| s.payloads).sum()
    }
}

#[test]
fn redeliveries_acknowledged_again_do_not_make_the_broker_forget_older_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::open(dir.path());
    // Two checkpoints' worth of messages whose acknowledgements the broker never got.
    for n in 1..=3 {
        rig.deliver(n, n, false);
    }
    assert_eq!(rig.checkpoint(), vec![1, 2, 3]);
    rig.deliver(4, 4, false);
    assert_eq!(rig.checkpoint(), vec![4]);
    assert_eq!(rig.processed(), 4);
    // The broker comes back and hands them over again, one checkpoint
    // between each: every one is recognised and acknowledged again.
    for n in [4, 1, 2, 3] {
        rig.deliver(n, n, true);
        assert_eq!(rig.checkpoint(), vec![n], "message {n} acknowledged again");
    }
    assert_eq!(rig.processed(), 4, "no reading counted twice");
    assert_eq!(rig.core.stats.redelivered_skipped, 4);
    // A restart remembers them too.
    drop(rig);
    let mut rig = Rig::open(dir.path());
    for n in [1, 2, 3, 4] {
        rig.deliver(n, n, true);
    }
    assert_eq!(rig.checkpoint(), vec![1, 2, 3, 4]);
    assert_eq!(rig.processed(), 0, "nothing processed after the restart");
    // New messages move the memory on: past two checkpoints and
    // ACKED_MESSAGES in all, the oldest checkpoint's are forgotten.
    let gen = (acked::ACKED_MESSAGES * 3 / 5) as u16;
    for g in 0..3u16 {
        for k in 0..gen {
            rig.deliver(100 + g * gen + k, 100 + g * gen + k, false);
        }
        rig.checkpoint();
    }
    assert_eq!(rig.processed(), u64::from(3 * gen));
    rig.deliver(100 + gen, 100 + gen, true);
    assert_eq!(rig.processed(), u64::from(3 * gen), "the second checkpoint's messages are remembered");
    rig.deliver(100, 100, true);
    assert_eq!(rig.processed(), u64::from(3 * gen) + 1, "the first's are not");
}

#[test]
fn a_silent_devices_state_outlives_checkpoints_and_restarts_in_the_journal_files() {
    // The journal files are the only copy of a device's window state and
    // alert state: a device that goes silent keeps both across a hundred
    // checkpoints while another reports, and restarts between them.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!("{CONFIG}[baseline]\nfeatures = [\"Temperature.mean\"]\nwarmup_windows = 5\n");
    let state = |rig: &Rig| {
        let engine = rig.core.pipeline().engine();
        let scorer = rig.core.scorer.as_ref().expect("a scorer");
        // A record with a baseline alone restores an empty alert state.
        let alerts = scorer.policy().device_state("pump-1").map(|s| format!("{:?}", (s.latest(), s.current())));
        let baseline = scorer.baselines().and_then(|b| b.device("pump-1")).map(|b| format!("{b:?}"));
        let window = engine.snapshot_all().into_iter().find(|d| d.id == "pump-1");
        (format!("{window:?}"), alerts.filter(|a| a != "(None, None)"), baseline)
    };
    let mut rig = Rig::open_with(dir.path(), &config);
    rig.now_ms = 2_000_000;
    // 400 s of readings: the first 5-minute window closes and is scored.
    for n in 1..=400 {
        rig.deliver(n, n, false);
    }
    rig.core.score(rig.now_ms);
    rig.checkpoint();
    let before = state(&rig);
    // A baseline learning (it goes in the device's alert state record) and
    // an open window.
    assert!(before.2.is_some() && before.0.contains("start: 1200000"), "{before:?}");
    let mut n = 400;
    for round in 0..3 {
        for _ in 0..(crate::state::JOURNAL_SPREAD + 10) {
            n += 1;
            rig.deliver_to("sensors/pump-2/telemetry", n, n, false);
            rig.checkpoint();
        }
        assert_eq!(state(&rig), before, "round {round}");
        // A crash (no full checkpoint at the end), then a restart.
        drop(rig);
        rig = Rig::open_with(dir.path(), &config);
        rig.now_ms = 2_000_000;
        assert_eq!(state(&rig), before, "after restart {round}");
    }
    let files = || -> Vec<String> {
        let dir = std::fs::read_dir(dir.path().join("journal")).expect("journal dir");
        let mut names: Vec<String> =
            dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(rig.core.pipeline().engine().device_count(), 2, "pump-2 reported");
    assert!(rig.core.pipeline().quarantine().is_empty());
    // What the restart replayed is snapshotted when its journal is due,
    // as if there had been no restart, even with nobody reporting; the
    // older journal files go then.
    for _ in 0..crate::state::JOURNAL_SPREAD {
        rig.checkpoint();
    }
    let kept = files();
    assert!(kept.len() <= crate::state::JOURNAL_SPREAD as usize + 1, "older journal files go: {}", kept.len());
    // Nobody reports: an idle daemon writes no more journal files, and
    // keeps the ones it has.
    for _ in 0..(2 * crate::state::JOURNAL_SPREAD) {
        rig.checkpoint();
    }
    assert_eq!(files(), kept);
    assert_eq!(state(&rig), before);
}

#[test]
fn acknowledged_messages_stored_in_the_older_form_are_recognised_and_moved() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The older form: one value, postcard, 64-bit hashes, newest checkpoint first.
    let hasher = foldhash::fast::FixedState::with_seed(HASH_SEED);
    let h = |n: u16| hasher.hash_one((TOPIC, payload(n).as_bytes()));
    let old: Vec<Vec<(u16, u64)>> = vec![vec![(3, h(3))], vec![(1, h(1)), (2, h(2))]];
    {
        let store = Store::open(dir.path()).expect("store");
        let cp = Checkpoint {
            seq: 0,
            positions: vec![(b"mqtt/faultline".to_vec(), postcard::to_stdvec(&old).expect("encodes"))],
            ..Checkpoint::default()
        };
        store.checkpoint(&cp).expect("written");
    }
    let mut rig = Rig::open(dir.path());
    rig.deliver(2, 2, true);
    rig.deliver(3, 3, true);
    assert_eq!(rig.checkpoint(), vec![2, 3], "acknowledged again");
    assert_eq!(rig.processed(), 0, "recognised from the older form");
    drop(rig);
    assert_eq!(position_keys(dir.path()), vec![b"mqtt/faultline".to_vec()], "moved only with new messages");
    let mut rig = Rig::open(dir.path());
    rig.deliver(4, 4, false);
    assert_eq!(rig.checkpoint(), vec![4]);
    drop(rig);
    let keys = position_keys(dir.path());
    assert_eq!(keys.len(), 3, "the new checkpoint's and the two older ones, each under its own key");
    assert!(keys.iter().all(|k| k.starts_with(b"mqtt/faultline\0") && k.len() == 23), "{keys:?}");
    let mut rig = Rig::open(dir.path());
    for n in [1, 2, 3, 4] {
        rig.deliver(n, n, true);
    }
    assert_eq!(rig.checkpoint(), vec![1, 2, 3, 4]);
    assert_eq!(rig.processed(), 0, "all four remembered after the move and a restart");
}
