//! Hot path: decode + clean + window update of realistic 8-signal JSON
//! readings over 10,000 devices (issue 2's goal: ≥ 1,000,000 readings/s on
//! one core).
//!
//! Readings carry SKAB's signal names and magnitudes (water-circulation
//! pump: vibration RMS, current, pressure, temperatures, voltage, flow),
//! one per device per second, RFC 3339 times, 1-minute windows, two
//! cleaning rules. Each measured step is one second of the whole plant
//! (10,000 payloads) on a warmed-up pipeline, so windows open and close at
//! their live rate and nothing is late.
//!
//!     cargo bench --bench pipeline

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::clean::{Cleaning, Rule};
use faultline::decode::{DecodeLimits, Decoder};
use faultline::pipeline::Pipeline;
use faultline::window::{Engine, StateLimits, WindowSpec};

const DEVICES: usize = 10_000;
/// Seconds of data generated; the stream restarts on a fresh pipeline after.
const SECONDS: usize = 150;
/// Under `cargo test --benches` each benchmark runs once as a check: a few
/// seconds of data are enough.
const TEST_SECONDS: usize = 3;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}
const T0: i64 = 1_795_256_100_000; // 2026-11-21T10:15:00Z

/// (signal, typical value, noise amplitude), from SKAB's anomaly-free run.
const SIGNALS: [(&str, f64, f64); 8] = [
    ("Accelerometer1RMS", 0.2124, 0.012),
    ("Accelerometer2RMS", 0.2645, 0.015),
    ("Current", 1.9453, 0.45),
    ("Pressure", 0.9871, 0.33),
    ("Temperature", 70.61, 3.1),
    ("Thermocouple", 24.14, 0.5),
    ("Voltage", 230.44, 18.0),
    ("Volume Flow RateRMS", 125.3, 1.5),
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn reading_json(rng: &mut Rng, device: usize, ts_ms: i64) -> String {
    let mut s = format!(
        r#"{{"device_id":"pump-{device:05}","ts":"{}","values":{{"#,
        faultline::time::format_rfc3339(ts_ms + (device as i64 % 1000))
    );
    for (i, (name, base, noise)) in SIGNALS.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Six significant digits, as the sensors report them.
        s.push_str(&format!(r#""{name}":{:.6}"#, base + noise * rng.unit()));
    }
    s.push_str("}}");
    s
}

/// `SECONDS` seconds of one reading per device per second, in arrival order.
fn stream(batch: usize) -> Vec<Vec<u8>> {
    let seconds = if bench_mode() { SECONDS } else { TEST_SECONDS };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(seconds * DEVICES / batch);
    for sec in 0..seconds {
        let ts = T0 + sec as i64 * 1000;
        let mut d = 0;
        while d < DEVICES {
            let n = batch.min(DEVICES - d);
            let payload = if batch == 1 {
                reading_json(&mut rng, d, ts)
            } else {
                let items: Vec<String> = (d..d + n).map(|dev| reading_json(&mut rng, dev, ts)).collect();
                format!("[{}]", items.join(","))
            };
            out.push(payload.into_bytes());
            d += n;
        }
    }
    out
}

fn pipeline() -> Pipeline {
    let spec = WindowSpec {
        size_ms: 60_000,
        max_out_of_orderness_ms: 2_000,
        allowed_lateness_ms: 10_000,
        idle_timeout_ms: 600_000,
    };
    let cleaning = Cleaning::new(vec![
        Rule { signal: "Temperature".into(), min: Some(-40.0), max: Some(150.0) },
        Rule { signal: "Pressure".into(), min: Some(-1.0), max: Some(16.0) },
    ]);
    let limits = StateLimits { max_devices: 20_000, ..Default::default() };
    Pipeline::new(DecodeLimits::default(), Engine::new(spec, limits, cleaning), 1000)
}

/// A pipeline fed one plant-second (`per_second` payloads) per step. It
/// lives across criterion's calls, so measurements see windows close at
/// their live rate; at the end of the data a fresh pipeline is warmed up
/// untimed and the stream starts over.
struct Steady<'a> {
    payloads: &'a [Vec<u8>],
    per_second: usize,
    pipeline: Pipeline,
    src: faultline::pipeline::SourceId,
    pos: usize,
    out: Vec<faultline::window::ClosedWindow>,
    /// The checkpoint journal on, as in the daemon: each step is followed
    /// (untimed) by a checkpoint's collection of changes; its number.
    journal: Option<u64>,
}

impl<'a> Steady<'a> {
    fn new(payloads: &'a [Vec<u8>], per_second: usize, journal: bool) -> Self {
        let mut pipeline = pipeline();
        let src = pipeline.source("bench");
        let journal = journal.then_some(0);
        let mut s = Steady { payloads, per_second, pipeline, src, pos: 0, out: Vec::new(), journal };
        s.restart();
        s
    }

    fn restart(&mut self) {
        self.pipeline = pipeline();
        if self.journal.is_some() {
            self.pipeline.engine_mut().set_journal(faultline::state::JOURNAL_SPREAD);
        }
        self.src = self.pipeline.source("bench");
        for payload in &self.payloads[..self.per_second] {
            self.pipeline.ingest(self.src, payload, None, NOW, &mut self.out);
        }
        self.out.clear();
        self.pos = self.per_second;
    }

    /// Runs `iters` steps, timing only the steps.
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if self.pos + self.per_second > self.payloads.len() {
                assert_eq!(self.pipeline.engine().counters().late, 0, "the bench stream must stay on time");
                self.restart();
            }
            let start = Instant::now();
            for payload in &self.payloads[self.pos..self.pos + self.per_second] {
                black_box(self.pipeline.ingest(self.src, payload, None, NOW, &mut self.out));
            }
            self.out.clear();
            total += start.elapsed();
            self.pos += self.per_second;
            if let Some(seq) = &mut self.journal {
                black_box(self.pipeline.engine_mut().checkpoint_changes(*seq, false));
                *seq += 1;
            }
        }
        total
    }
}

/// Wall clock the readings are checked against: just after the data ends.
const NOW: i64 = T0 + SECONDS as i64 * 1000;

fn bench(c: &mut Criterion) {
    let single = stream(1);
    let batched = stream(100);
    let bytes: usize = single[..DEVICES].iter().map(Vec::len).sum();
    eprintln!("payload: {} bytes on average, e.g. {}", bytes / DEVICES, String::from_utf8_lossy(&single[0]));

    let mut g = c.benchmark_group("pipeline");
    g.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(DEVICES as u64));

    g.bench_function("decode_only/8_signals", |b| {
        let mut decoder = Decoder::new(DecodeLimits::default());
        b.iter(|| {
            let mut n = 0;
            for payload in &single[..DEVICES] {
                if let Ok(d) = decoder.decode(payload, None, NOW) {
                    n += d.iter().filter(Result::is_ok).count();
                    decoder.recycle(d);
                }
            }
            black_box(n)
        })
    });
    let mut steady = Steady::new(&single, DEVICES, false);
    g.bench_function("decode_clean_window/8_signals/10k_devices", |b| b.iter_custom(|iters| steady.run(iters)));
    let mut steady = Steady::new(&single, DEVICES, true);
    g.bench_function("decode_clean_window_journal/8_signals/10k_devices", |b| b.iter_custom(|iters| steady.run(iters)));
    let mut steady = Steady::new(&batched, DEVICES / 100, false);
    g.bench_function("decode_clean_window/batches_of_100/10k_devices", |b| b.iter_custom(|iters| steady.run(iters)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
