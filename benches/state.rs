//! The daemon's state in sled: writing a checkpoint and restoring it at
//! start, with 10,000 devices × 8 signals, each with an open window and a
//! closed one kept for late updates.
//!
//!     cargo bench --bench state

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use faultline::clean::Cleaning;
use faultline::state::{Checkpoint, Store};
use faultline::window::{Changes, Engine, StateLimits, WindowSpec};

const DEVICES: usize = 10_000;
const SIGNALS: [&str; 8] = faultline::evaluate::SKAB_SIGNALS;

fn spec() -> WindowSpec {
    WindowSpec {
        size_ms: 60_000,
        max_out_of_orderness_ms: 10_000,
        allowed_lateness_ms: 60_000,
        idle_timeout_ms: 600_000,
    }
}

/// An engine where every device has one closed (updatable) and one open window.
fn engine() -> Engine {
    let mut e = Engine::new(spec(), StateLimits::default(), Cleaning::default());
    let mut out = Vec::new();
    for t in 0..90 {
        for d in 0..DEVICES {
            let id = format!("pump-{d:05}");
            let values = SIGNALS.iter().enumerate().map(|(i, s)| (*s, (t * 7 + i + d) as f64 * 0.01));
            e.record(&id, 20_000 + t as i64 * 1000, values, 0, &mut out);
        }
        out.clear();
    }
    e
}

/// Opens the store, waiting for sled to let go of its lock: it keeps it a
/// moment after the last handle of the previous open is dropped.
fn open(dir: &std::path::Path) -> Store {
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e) if faultline::error_chain(&e).contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => panic!("{}", faultline::error_chain(&e)),
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut e = engine();
    let all = e.take_changes();
    assert_eq!(all.updated.len(), DEVICES);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let full =
        Checkpoint { devices: Changes { updated: all.updated.clone(), ..Default::default() }, ..Default::default() };
    let written = store.checkpoint(&full).expect("checkpoint");
    eprintln!("full checkpoint: {} records, {} bytes", written.records, written.bytes);

    let mut g = c.benchmark_group("state");
    g.sample_size(10);
    g.bench_function("checkpoint 10000 devices (all changed)", |b| {
        b.iter(|| store.checkpoint(&full).expect("checkpoint"))
    });
    let tenth = Checkpoint {
        devices: Changes { updated: all.updated[..DEVICES / 10].to_vec(), ..Default::default() },
        ..Default::default()
    };
    g.bench_function("checkpoint 1000 of 10000 devices changed", |b| {
        b.iter(|| store.checkpoint(&tenth).expect("checkpoint"))
    });
    g.bench_function("take_changes 10000 devices", |b| {
        b.iter_batched(
            || {
                let mut e = engine();
                e.take_changes();
                // Touch every device once more.
                let mut out = Vec::new();
                for d in 0..DEVICES {
                    e.record(&format!("pump-{d:05}"), 111_000, [("Current", 1.0)], 0, &mut out);
                }
                e
            },
            |mut e| e.take_changes(),
            BatchSize::LargeInput,
        )
    });
    // The journal files are the only copy of the snapshots: the last
    // checkpoint above held a tenth of them, so a full one goes last (and
    // lets the files before it go).
    let last =
        Checkpoint { seq: 1, full: true, devices: Changes { journal_from: 1, ..full.devices }, ..Default::default() };
    store.checkpoint(&last).expect("checkpoint");
    store.flush().expect("flush");
    drop(store);
    // What a restart does before it is ready: open the database, read every
    // record, rebuild the engine.
    g.bench_function("restart: open + restore 10000 devices", |b| {
        b.iter(|| {
            let store = open(dir.path());
            let mut r = store.restore().expect("restore");
            let mut e = Engine::new(spec(), StateLimits::default(), Cleaning::default());
            faultline::state::restore_engine(&mut e, &mut r).expect("restore the engine");
            assert_eq!(e.device_count(), DEVICES);
            e
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
