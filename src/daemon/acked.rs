//! The MQTT messages a source acknowledged, remembered by checkpoint to
//! recognise a redelivery whose acknowledgement was lost.
//!
//! A message is its packet id and a 32-bit hash of its topic and payload.
//! Each checkpoint's messages are one record of the `positions` tree,
//! `mqtt/<client id>`, a zero byte and the checkpoint number (u64 BE), so a
//! checkpoint writes its own messages only and removes the generations it
//! forgets. Records stay small enough for sled to keep inline: 6 bytes a
//! message, ~60 KB at 10,000 messages a second, where the whole memory as
//! one value (postcard, 64-bit hashes: ~13 bytes a message) was ~260 KB,
//! rewritten at every checkpoint and over sled's inline limit (benches/RESULTS.md,
//! 26). The older value under `mqtt/<client id>` still
//! reads, and the first checkpoint with messages moves it.

use std::collections::VecDeque;

/// A delivered message: packet id, hash of topic and payload.
pub(super) type Message = (u16, u32);

/// The newest two checkpoints' messages are remembered, and older
/// checkpoints' while they all hold no more than [`ACKED_MESSAGES`]. A
/// broker redelivers at most its in-flight window (mosquitto's
/// `max_inflight_messages`, 20 by default), and a broker going away can
/// take the acknowledgements of several small checkpoints with it.
pub(super) const ACKED_GENERATIONS: usize = 2;
pub(super) const ACKED_MESSAGES: usize = 1024;

/// The format byte of a generation's record.
const FORMAT: u8 = 1;

/// A message's hash, from the 64-bit one the processing loop computes.
pub(super) fn fold(h: u64) -> u32 {
    // Truncation intended: the two halves folded into one.
    ((h >> 32) ^ h) as u32
}

#[derive(Debug)]
struct Generation {
    seq: u64,
    msgs: Vec<Message>,
    /// Whether its record is under its own key (not yet for a generation
    /// read from the older single value).
    stored: bool,
}

/// One source's remembered generations, newest first.
#[derive(Debug)]
pub(super) struct Acked {
    /// `mqtt/<client id>`: the older single value's key, and the prefix of
    /// the generations' keys.
    key: Vec<u8>,
    gens: VecDeque<Generation>,
    /// The older single value is in the store.
    legacy: bool,
}

/// What a checkpoint writes for a source and what its success makes true.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
    pub removes: Vec<Vec<u8>>,
    /// Older generations kept beside the new one.
    keep: usize,
}

impl Acked {
    pub fn new(client_id: &str) -> Acked {
        Acked { key: format!("mqtt/{client_id}").into_bytes(), gens: VecDeque::new(), legacy: false }
    }

    pub fn contains(&self, m: Message) -> bool {
        self.gens.iter().any(|g| g.msgs.contains(&m))
    }

    fn gen_key(&self, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.key.len() + 9);
        k.extend_from_slice(&self.key);
        k.push(0);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// How many of the remembered generations stay beside a new one of
    /// `newest` messages.
    fn kept(&self, newest: usize) -> usize {
        let mut total = newest;
        let mut keep = 0;
        for g in &self.gens {
            total += g.msgs.len();
            if keep + 1 >= ACKED_GENERATIONS && total > ACKED_MESSAGES {
                break;
            }
            keep += 1;
        }
        keep
    }

    /// The records for checkpoint `seq` acknowledging `newest` (not empty).
    /// Nothing changes until [`Acked::commit`].
    pub fn plan(&self, seq: u64, newest: &[Message]) -> Plan {
        let keep = self.kept(newest.len());
        let mut p = Plan { keep, ..Plan::default() };
        p.writes.push((self.gen_key(seq), encode(newest)));
        for (i, g) in self.gens.iter().enumerate() {
            if i < keep && !g.stored {
                p.writes.push((self.gen_key(g.seq), encode(&g.msgs)));
            } else if i >= keep && g.stored {
                p.removes.push(self.gen_key(g.seq));
            }
        }
        if self.legacy {
            p.removes.push(self.key.clone());
        }
        p
    }

    /// The planned checkpoint was written.
    pub fn commit(&mut self, plan: &Plan, seq: u64, newest: Vec<Message>) {
        self.gens.truncate(plan.keep);
        for g in &mut self.gens {
            g.stored = true;
        }
        self.gens.push_front(Generation { seq, msgs: newest, stored: true });
        self.legacy = false;
    }

    /// Takes a record of the `positions` tree if it is this source's;
    /// `next_seq` is the number of the next checkpoint. Call
    /// [`Acked::restored`] after the last.
    pub fn restore(&mut self, k: &[u8], v: &[u8], next_seq: u64) -> bool {
        if k == self.key.as_slice() {
            // The older single value: postcard, newest generation first.
            if let Ok(gens) = postcard::from_bytes::<Vec<Vec<(u16, u64)>>>(v) {
                // Numbered from the next checkpoint on, newest highest
                // ([`Acked::after`] moves the checkpoints past them).
                let n = gens.len() as u64;
                for (i, g) in (1u64..).zip(gens) {
                    let seq = next_seq.saturating_add(n - i);
                    let msgs = g.into_iter().map(|(p, h)| (p, fold(h))).collect();
                    self.gens.push_back(Generation { seq, msgs, stored: false });
                }
            } else {
                tracing::warn!(key = %String::from_utf8_lossy(k), "acknowledged MQTT messages unreadable, ignored");
            }
            self.legacy = true;
            return true;
        }
        let Some(rest) = k.strip_prefix(self.key.as_slice()).and_then(|r| r.strip_prefix(&[0u8][..])) else {
            return false;
        };
        let (Ok(seq), Some(msgs)) = (<[u8; 8]>::try_from(rest), decode(v)) else {
            tracing::warn!(key = %String::from_utf8_lossy(k), "acknowledged MQTT messages unreadable, ignored");
            return true;
        };
        self.gens.push_back(Generation { seq: u64::from_be_bytes(seq), msgs, stored: true });
        true
    }

    /// Orders what [`Acked::restore`] took, newest first.
    pub fn restored(&mut self) {
        self.gens.make_contiguous().sort_by_key(|g| std::cmp::Reverse(g.seq));
    }

    /// The lowest checkpoint number above every generation's: the next
    /// checkpoint must not write under a remembered one's key (the store
    /// numbers checkpoints from what else it holds).
    pub fn after(&self) -> u64 {
        self.gens.iter().map(|g| g.seq.saturating_add(1)).max().unwrap_or(0)
    }

    #[cfg(test)]
    pub fn lens(&self) -> Vec<usize> {
        self.gens.iter().map(|g| g.msgs.len()).collect()
    }
}

fn encode(msgs: &[Message]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + msgs.len() * 6);
    v.push(FORMAT);
    for (p, h) in msgs {
        v.extend_from_slice(&p.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
    }
    v
}

fn decode(v: &[u8]) -> Option<Vec<Message>> {
    let (&FORMAT, rest) = v.split_first()? else { return None };
    if rest.len() % 6 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(6)
            .map(|c| (u16::from_le_bytes([c[0], c[1]]), u32::from_le_bytes([c[2], c[3], c[4], c[5]])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(n: usize) -> Vec<Message> {
        (0..n).map(|i| (i as u16, i as u32)).collect()
    }

    /// Plans and commits a checkpoint, as the processing loop does.
    fn checkpoint(a: &mut Acked, seq: u64, newest: Vec<Message>) -> Plan {
        let p = a.plan(seq, &newest);
        a.commit(&p, seq, newest);
        p
    }

    #[test]
    fn keeps_two_checkpoints_and_more_up_to_a_bound() {
        let mut a = Acked::new("c");
        for seq in 0..20 {
            checkpoint(&mut a, seq, gen(100));
        }
        assert_eq!(a.lens(), vec![100; 10], "small checkpoints: up to ACKED_MESSAGES in all");
        checkpoint(&mut a, 20, gen(5_000));
        let p = checkpoint(&mut a, 21, gen(7));
        assert_eq!(a.lens(), vec![7, 5_000], "large ones: the newest two");
        assert_eq!(p.writes.len(), 1, "a checkpoint writes its own messages only");
        let p = checkpoint(&mut a, 22, gen(3));
        assert_eq!(a.lens(), vec![3, 7]);
        assert_eq!(p.removes, vec![a.gen_key(20)], "and removes the ones forgotten");
    }

    #[test]
    fn a_record_holds_six_bytes_a_message_and_reads_back() {
        let mut a = Acked::new("plant-1");
        let msgs: Vec<Message> =
            (0..10_000).map(|i| (i as u16, fold((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))).collect();
        let p = checkpoint(&mut a, 5, msgs.clone());
        assert_eq!(p.writes[0].1.len(), 1 + 60_000);
        let mut b = Acked::new("plant-1");
        assert!(b.restore(&p.writes[0].0, &p.writes[0].1, 6));
        assert!(!b.restore(b"mqtt/plant-10\0\0\0\0\0\0\0\0\x05", &p.writes[0].1, 6), "another client's");
        assert!(!b.restore(b"kafka/g/t/0", &[0; 8], 6));
        b.restored();
        assert_eq!(b.lens(), vec![10_000]);
        assert!(msgs.iter().all(|m| b.contains(*m)));
        assert!(!b.contains((10_000, 0)));
        // A damaged record is ignored, not a panic.
        let mut c = Acked::new("plant-1");
        assert!(c.restore(&p.writes[0].0, &p.writes[0].1[..100], 6));
        assert!(!c.restore(&p.writes[0].0[..10], &[], 6));
        assert!(c.restore(b"mqtt/plant-1\0\0\0\x05", &p.writes[0].1, 6), "its key, damaged");
        assert!(c.lens().is_empty());
    }

    #[test]
    fn the_older_single_value_reads_and_moves_at_the_next_checkpoint() {
        let old: Vec<Vec<(u16, u64)>> = vec![vec![(7, 0xdead_beef_0000_0001)], vec![(3, 42), (4, 43)]];
        let v = postcard::to_stdvec(&old).expect("encodes");
        let mut a = Acked::new("c");
        assert!(a.restore(b"mqtt/c", &v, 8));
        a.restored();
        assert_eq!(a.lens(), vec![1, 2], "newest first, as stored");
        assert_eq!(a.after(), 10, "numbered from the next checkpoint on");
        assert!(a.contains((7, fold(0xdead_beef_0000_0001))) && a.contains((4, fold(43))));
        let p = checkpoint(&mut a, 10, gen(1));
        assert_eq!(a.lens(), vec![1, 1, 2]);
        let keys: Vec<&[u8]> = p.writes.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![a.gen_key(10).as_slice(), a.gen_key(9).as_slice(), a.gen_key(8).as_slice()]);
        assert_eq!(p.removes, vec![b"mqtt/c".to_vec()]);
        // Read back as the store would hand them over: the same memory.
        let mut b = Acked::new("c");
        for (k, v) in &p.writes {
            assert!(b.restore(k, v, 11));
        }
        b.restored();
        assert_eq!(b.lens(), a.lens());
        assert!(b.contains((3, fold(42))));
        let p = checkpoint(&mut b, 11, gen(1));
        assert_eq!(p.writes.len(), 1, "moved once");
        assert!(p.removes.is_empty());
    }
}
