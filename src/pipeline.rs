//! Decode → clean → window for one payload at a time, with the counters,
//! the quarantine of refused payloads and rate-limited logging.
//!
//! Synchronous and I/O-free like the engine it wraps; the source tasks of
//! the daemon own one and feed it payloads.

use crate::decode::{DecodeLimits, Decoder};
use crate::reading::Reason;
use crate::window::{ClosedWindow, Engine, Outcome};

/// A refused payload or reading, kept for the API to show.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    pub received_ms: i64,
    pub source: String,
    pub reason: Reason,
    /// Position in the batch, for a reading refused inside one.
    pub index: Option<usize>,
    /// The device id, when it was known.
    pub device_id: Option<String>,
    /// The start of the payload, at most [`EXCERPT_BYTES`], lossy UTF-8.
    pub excerpt: String,
}

/// How much of a refused payload the quarantine keeps.
pub const EXCERPT_BYTES: usize = 512;

/// Bounded, oldest-out store of refused payloads.
pub type Quarantine = crate::bounded::BoundedLog<Quarantined>;

fn excerpt(payload: &[u8]) -> String {
    let mut end = payload.len().min(EXCERPT_BYTES);
    // Do not cut a UTF-8 sequence in half.
    while end < payload.len() && end > 0 && (payload[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// Logs at most one line per reason per interval, with how many it held back.
#[derive(Debug)]
struct RateLimit {
    interval_ms: i64,
    last: Vec<i64>,
    held: Vec<u64>,
}

impl RateLimit {
    fn new(interval_ms: i64) -> Self {
        RateLimit { interval_ms, last: vec![i64::MIN; Reason::ALL.len()], held: vec![0; Reason::ALL.len()] }
    }

    fn log(&mut self, now_ms: i64, q: &Quarantined) {
        let i = q.reason as usize;
        if now_ms.saturating_sub(self.last[i]) < self.interval_ms {
            self.held[i] += 1;
            return;
        }
        let held = std::mem::take(&mut self.held[i]);
        self.last[i] = now_ms;
        tracing::warn!(
            reason = q.reason.as_str(),
            source = %q.source,
            device = q.device_id.as_deref().unwrap_or("-"),
            suppressed = held,
            "reading refused: {}; payload starts {:?}",
            q.reason.describe(),
            q.excerpt.chars().take(120).collect::<String>()
        );
    }
}

/// Counts of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub name: String,
    pub payloads: u64,
    /// Readings that decoded and went to the window engine.
    pub readings: u64,
}

/// Decode, clean and window, with its counters.
#[derive(Debug)]
pub struct Pipeline {
    decoder: Decoder,
    engine: Engine,
    quarantine: Quarantine,
    rejected: Vec<u64>,
    sources: Vec<SourceCounts>,
    log: RateLimit,
}

/// Handle of a registered source, from [`Pipeline::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceId(usize);

impl Pipeline {
    pub fn new(limits: DecodeLimits, engine: Engine, quarantine_cap: usize) -> Self {
        Pipeline {
            decoder: Decoder::new(limits),
            engine,
            quarantine: Quarantine::new(quarantine_cap),
            rejected: vec![0; Reason::ALL.len()],
            sources: Vec::new(),
            log: RateLimit::new(10_000),
        }
    }

    /// Registers (or finds) the source called `name`: the `source` label of
    /// `faultline_readings_total`.
    pub fn source(&mut self, name: &str) -> SourceId {
        if let Some(i) = self.sources.iter().position(|s| s.name == name) {
            return SourceId(i);
        }
        self.sources.push(SourceCounts { name: name.to_owned(), ..Default::default() });
        SourceId(self.sources.len() - 1)
    }

    /// Ingests one payload. `device` is the id the source supplies (topic,
    /// key); `now_ms` the wall clock. Closed and updated windows are
    /// appended to `out`. Returns how many readings went into windows.
    pub fn ingest(
        &mut self,
        source: SourceId,
        payload: &[u8],
        device: Option<&str>,
        now_ms: i64,
        out: &mut Vec<ClosedWindow>,
    ) -> usize {
        let src = &mut self.sources[source.0];
        src.payloads += 1;
        let decoded = match self.decoder.decode(payload, device, now_ms) {
            Ok(d) => d,
            Err(reason) => {
                self.refuse(source, now_ms, reason, None, device, payload);
                return 0;
            }
        };
        let mut taken = 0;
        for (i, item) in decoded.iter().enumerate() {
            let index = (decoded.len() > 1).then_some(i);
            match item {
                Err(reason) => self.refuse(source, now_ms, reason, index, device, payload),
                Ok(r) => match self.engine.record(r.device_id, r.ts_ms, r.signals(), now_ms, out) {
                    Outcome::DeviceLimit => {
                        self.refuse(source, now_ms, Reason::DeviceLimit, index, Some(r.device_id), payload)
                    }
                    Outcome::Accepted | Outcome::Updated | Outcome::Late => taken += 1,
                },
            }
        }
        self.decoder.recycle(decoded);
        self.sources[source.0].readings += taken as u64;
        taken
    }

    fn refuse(
        &mut self,
        source: SourceId,
        now_ms: i64,
        reason: Reason,
        index: Option<usize>,
        device: Option<&str>,
        payload: &[u8],
    ) {
        self.rejected[reason as usize] += 1;
        let q = Quarantined {
            received_ms: now_ms,
            source: self.sources[source.0].name.clone(),
            reason,
            index,
            device_id: device.map(str::to_owned),
            excerpt: excerpt(payload),
        };
        self.log.log(now_ms, &q);
        self.quarantine.push(q);
    }

    /// Closes idle windows (call about once a second).
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<ClosedWindow>) {
        self.engine.close_idle(now_ms, out);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    pub fn quarantine_mut(&mut self) -> &mut Quarantine {
        &mut self.quarantine
    }

    /// Refusals by reason, in [`Reason::ALL`] order.
    pub fn rejected(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.rejected[*r as usize]))
    }

    pub fn rejected_count(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize]
    }

    pub fn sources(&self) -> &[SourceCounts] {
        &self.sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaning;
    use crate::window::{StateLimits, WindowSpec};

    fn pipeline(quarantine: usize, max_devices: usize) -> Pipeline {
        let spec = WindowSpec {
            size_ms: 60_000,
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            idle_timeout_ms: 600_000,
        };
        let limits = StateLimits { max_devices, ..Default::default() };
        Pipeline::new(DecodeLimits::default(), Engine::new(spec, limits, Cleaning::default()), quarantine)
    }

    #[test]
    fn counts_refusals_by_reason_and_keeps_a_bounded_quarantine() {
        let mut p = pipeline(2, 100);
        let src = p.source("mqtt");
        let mut out = Vec::new();
        let now = 1_000_000;
        assert_eq!(p.ingest(src, b"not json", None, now, &mut out), 0);
        assert_eq!(p.ingest(src, br#"[{"device_id":"a","ts":0,"x":1},{"ts":0,"x":1},7]"#, None, now, &mut out), 1);
        assert_eq!(p.rejected_count(Reason::MalformedJson), 1);
        assert_eq!(p.rejected_count(Reason::MissingDevice), 1);
        assert_eq!(p.rejected_count(Reason::NotAnObject), 1);
        // Three refusals, room for two: the oldest went.
        assert_eq!(p.quarantine().len(), 2);
        assert_eq!(p.quarantine().evicted, 1);
        let q: Vec<_> = p.quarantine().iter().map(|q| (q.reason, q.index)).collect();
        assert_eq!(q, vec![(Reason::MissingDevice, Some(1)), (Reason::NotAnObject, Some(2))]);
        assert_eq!(p.sources()[0], SourceCounts { name: "mqtt".into(), payloads: 2, readings: 1 });
    }

    #[test]
    fn new_devices_beyond_the_limit_are_refused_and_counted() {
        let mut p = pipeline(10, 3);
        let src = p.source("kafka");
        let mut out = Vec::new();
        for i in 0..10 {
            let payload = format!(r#"{{"device_id":"d{i}","ts":0,"x":1}}"#);
            p.ingest(src, payload.as_bytes(), None, 0, &mut out);
        }
        assert_eq!(p.engine().device_count(), 3);
        assert_eq!(p.rejected_count(Reason::DeviceLimit), 7);
        assert_eq!(p.engine().counters().limit_hits[crate::window::Limit::Devices as usize], 7);
        // Known devices still get through.
        assert_eq!(p.ingest(src, br#"{"device_id":"d1","ts":5,"x":1}"#, None, 0, &mut out), 1);
    }

    #[test]
    fn excerpt_is_bounded_and_valid_utf8() {
        let long = "é".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES);
        assert!(e.chars().all(|c| c == 'é'));
    }
}
