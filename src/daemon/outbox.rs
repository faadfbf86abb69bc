//! The alert outbox: alert records on their way to the sink.
//!
//! The processing loop pushes each record here as the alert happens and
//! the sink task takes it from memory at once: no store write or read
//! stands between an alert and its send (README "Performance", alert
//! latency). Each checkpoint writes the records still waiting to the
//! store's `outbox` tree, in the same transaction as the state that made
//! them, and removes the ones delivered or dropped since
//! ([`Outbox::delta`]). A crash loses no record: one made after the last
//! checkpoint is made again, since the readings behind it were not
//! acknowledged; at worst a record is sent twice, recognisably the same
//! (SPEC 4: deterministic `alert_id`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::state::{OutboxDelta, OutboxRecord};

/// A record waiting for the sink.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: u64,
    /// When the alert record was made (epoch ms); `None` for a record
    /// restored from the store, whose payload tells ([`Pending::made_ms`]).
    made_ms: Option<i64>,
    pub record: Arc<OutboxRecord>,
}

impl Pending {
    /// When the alert record was made (epoch ms), for the delivery latency.
    /// A restored record's payload is parsed here, when it is sent, not
    /// for the whole outbox at start-up.
    pub fn made_ms(&self) -> Option<i64> {
        self.made_ms.or_else(|| made_at(&self.record.payload))
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Oldest first, by `seq`: not yet confirmed by the sink.
    records: VecDeque<Pending>,
    next_seq: u64,
    /// Records with a lower `seq` are in the store (or were removed from it).
    stored_next: u64,
    /// What the store holds: records from this `seq` on.
    stored_from: u64,
}

/// Shared by the processing loop (pushes, checkpoints) and the sink
/// (takes, confirms). Bounded by `limits.outbox`: past it the oldest
/// records are dropped.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    cap: usize,
    ready: Notify,
}

impl Outbox {
    /// The outbox as the store left it: `restored` in `seq` order.
    pub fn new(cap: usize, restored: Vec<(u64, OutboxRecord)>) -> Outbox {
        let mut q = Queue::default();
        if let (Some((first, _)), Some((last, _))) = (restored.first(), restored.last()) {
            q.stored_from = *first;
            q.next_seq = last.saturating_add(1);
            q.stored_next = q.next_seq;
        }
        q.records.extend(restored.into_iter().map(|(seq, record)| Pending {
            seq,
            made_ms: None,
            record: Arc::new(record),
        }));
        let outbox = Outbox { queue: Mutex::new(q), cap, ready: Notify::new() };
        outbox.lock().drop_over(cap);
        outbox
    }

    /// The bound (`limits.outbox`).
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends records in order and wakes the sink; returns how many of
    /// the oldest were dropped to stay within the bound.
    pub fn push(&self, records: impl IntoIterator<Item = (OutboxRecord, i64)>) -> u64 {
        let dropped = {
            let mut q = self.lock();
            for (record, made_ms) in records {
                let seq = q.next_seq;
                q.next_seq += 1;
                q.records.push_back(Pending { seq, made_ms: Some(made_ms), record: Arc::new(record) });
            }
            q.drop_over(self.cap)
        };
        self.ready.notify_one();
        dropped
    }

    /// Up to `n` records from `seq` on, oldest first.
    pub fn from(&self, seq: u64, n: usize) -> Vec<Pending> {
        let q = self.lock();
        let i = q.records.partition_point(|p| p.seq < seq);
        q.records.range(i..).take(n).cloned().collect()
    }

    /// The sink confirmed every record up to `seq`.
    pub fn delivered(&self, seq: u64) {
        let mut q = self.lock();
        while q.records.front().is_some_and(|p| p.seq <= seq) {
            q.records.pop_front();
        }
    }

    /// Records not yet confirmed.
    pub fn pending(&self) -> u64 {
        self.lock().records.len() as u64
    }

    /// Resolves when records were pushed since the last call.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// What the store needs to match the outbox: the records pushed since
    /// the last [`Outbox::stored`], and the range of the ones it holds
    /// that have gone since.
    pub fn delta(&self) -> OutboxDelta {
        let q = self.lock();
        let front = q.records.front().map_or(q.next_seq, |p| p.seq);
        let i = q.records.partition_point(|p| p.seq < q.stored_next);
        OutboxDelta {
            removed: q.stored_from..front.max(q.stored_from),
            added: q.records.range(i..).map(|p| (p.seq, p.record.clone())).collect(),
        }
    }

    /// The store now matches `delta`.
    pub fn stored(&self, delta: &OutboxDelta) {
        let mut q = self.lock();
        q.stored_from = q.stored_from.max(delta.removed.end);
        if let Some((seq, _)) = delta.added.last() {
            q.stored_next = q.stored_next.max(seq + 1);
        }
    }
}

impl Queue {
    fn drop_over(&mut self, cap: usize) -> u64 {
        let mut dropped = 0;
        while self.records.len() > cap {
            self.records.pop_front();
            dropped += 1;
        }
        dropped
    }
}

/// `updated_at` of an alert record's JSON.
fn made_at(payload: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    v["updated_at"].as_str().and_then(crate::time::parse_cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> (OutboxRecord, i64) {
        (OutboxRecord { device_id: format!("d{i}"), payload: format!("{{\"n\":{i}}}") }, i as i64)
    }

    fn seqs(p: &[Pending]) -> Vec<u64> {
        p.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn records_go_out_in_order_and_leave_when_delivered() {
        let o = Outbox::new(10, Vec::new());
        assert_eq!(o.push((0..4).map(rec)), 0);
        assert_eq!(seqs(&o.from(0, 10)), [0, 1, 2, 3]);
        assert_eq!(seqs(&o.from(2, 1)), [2]);
        o.delivered(1);
        assert_eq!(o.pending(), 2);
        // A failed send starts again from an undelivered record.
        assert_eq!(seqs(&o.from(2, 10)), [2, 3]);
        assert_eq!(o.from(3, 10)[0].record.device_id, "d3");
        assert_eq!(o.from(3, 10)[0].made_ms(), Some(3));
    }

    #[test]
    fn the_bound_drops_the_oldest() {
        let o = Outbox::new(3, Vec::new());
        assert_eq!(o.push((0..5).map(rec)), 2);
        assert_eq!(seqs(&o.from(0, 10)), [2, 3, 4]);
        // A restored outbox over a lowered bound keeps the newest.
        let restored = (0..5).map(|i| (i + 10, rec(i).0)).collect();
        let o = Outbox::new(2, restored);
        assert_eq!(seqs(&o.from(0, 10)), [13, 14]);
        let d = o.delta();
        assert_eq!(d.removed, 10..13, "the dropped ones leave the store");
        assert!(d.added.is_empty(), "the rest is stored already");
    }

    #[test]
    fn the_delta_adds_what_is_new_and_removes_what_went() {
        let o = Outbox::new(100, Vec::new());
        o.push((0..3).map(rec));
        let d = o.delta();
        assert_eq!(d.removed, 0..0);
        assert_eq!(d.added.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0, 1, 2]);
        // Not stored (the checkpoint failed): the next delta has them again.
        o.push((3..4).map(rec));
        let d = o.delta();
        assert_eq!(d.added.len(), 4);
        o.stored(&d);
        assert!(o.delta().added.is_empty());
        o.delivered(1);
        o.push((4..5).map(rec));
        let d = o.delta();
        assert_eq!(d.removed, 0..2);
        assert_eq!(d.added.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4]);
        o.stored(&d);
        // Everything delivered: the store is emptied up to the next seq.
        o.delivered(4);
        let d = o.delta();
        assert_eq!(d.removed, 2..5);
        o.stored(&d);
        assert_eq!(o.delta().removed, 5..5);
        // A record delivered before any checkpoint saw it is never stored.
        o.push((5..6).map(rec));
        o.delivered(5);
        let d = o.delta();
        assert!(d.added.is_empty());
        assert_eq!(d.removed, 5..6);
    }

    #[test]
    fn a_restored_outbox_continues_its_numbering() {
        let stamped =
            OutboxRecord { device_id: "d".into(), payload: r#"{"updated_at":"1970-01-01T00:00:01Z"}"#.into() };
        let restored = vec![(7, stamped), (9, rec(1).0)];
        let o = Outbox::new(10, restored);
        // A restored record's making time comes from its payload, if it says.
        assert_eq!(o.from(7, 2).iter().map(Pending::made_ms).collect::<Vec<_>>(), [Some(1000), None]);
        o.push((0..1).map(rec));
        assert_eq!(seqs(&o.from(0, 10)), [7, 9, 10]);
        assert_eq!(o.delta().removed, 7..7);
        assert_eq!(o.delta().added.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [10]);
    }
}
