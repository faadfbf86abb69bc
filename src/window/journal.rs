//! The engine's journal: the readings a device took since its last
//! snapshot, so that a checkpoint writes a few bytes per reading instead of
//! the device's whole window state (the `journal` tree, `state.rs`).
//!
//! An entry is one reading as [`super::Engine::record`] got it: event time
//! and processing time (zigzag varints), then per value a tag (varint: `0`
//! ends the entry, `1` a name follows as varint length and UTF-8, `i + 2`
//! the device's signal `i` as it was before this reading) and the value
//! (f64, little-endian). A late reading is written without its values: all
//! it changed in the device is the time it was last seen.
//!
//! A blob (what one checkpoint adds) is a list of groups: device id (varint
//! length and UTF-8), kind (`0` entries, `1` forgotten, `2` alert state,
//! `3` alert state removed, `4` snapshot, `5` closed windows), and for all
//! but `1` and `3` their length (varint) and bytes. Alert states,
//! snapshots and closed windows are the store's records, carried in the
//! blob so that the checkpoint's transaction writes one record for all
//! devices; the trees get them after the commit (`state.rs`). A blob lists
//! the devices forgotten first, then snapshots and closed windows, then
//! entries, then alert states.

pub(crate) fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    put_u(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// A journal that does not decode: the tree and key are added by the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal record does not decode at byte {at}")]
pub struct Corrupt {
    pub at: usize,
}

/// Reads what the `put_*` functions wrote.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub(crate) fn corrupt(&self) -> Corrupt {
        Corrupt { at: self.at }
    }

    pub(crate) fn u(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or_else(|| self.corrupt())?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt())
    }

    pub(crate) fn i(&mut self) -> Result<i64, Corrupt> {
        let u = self.u()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub(crate) fn bytes(&mut self, n: u64) -> Result<&'a [u8], Corrupt> {
        let n = usize::try_from(n).map_err(|_| self.corrupt())?;
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| self.corrupt())?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    pub(crate) fn name(&mut self) -> Result<&'a str, Corrupt> {
        let at = self.at;
        let n = self.u()?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| Corrupt { at })
    }

    pub(crate) fn f64(&mut self) -> Result<f64, Corrupt> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }
}

/// One group of a blob.
#[derive(Debug, PartialEq, Eq)]
pub enum Group<'a> {
    Entries {
        device: &'a str,
        entries: &'a [u8],
    },
    Forgotten {
        device: &'a str,
    },
    /// `None`: removed.
    AlertState {
        device: &'a str,
        state: Option<&'a [u8]>,
    },
    /// The device's `devices` record.
    Snapshot {
        device: &'a str,
        record: &'a [u8],
    },
    /// The device's `closed` record.
    Closed {
        device: &'a str,
        record: &'a [u8],
    },
}

impl<'a> Group<'a> {
    /// The device the group is about.
    pub fn device(&self) -> &'a str {
        match *self {
            Group::Entries { device, .. }
            | Group::Forgotten { device }
            | Group::AlertState { device, .. }
            | Group::Snapshot { device, .. }
            | Group::Closed { device, .. } => device,
        }
    }
}

const ENTRIES: u64 = 0;
const FORGOTTEN: u64 = 1;
const ALERT_STATE: u64 = 2;
const ALERT_STATE_REMOVED: u64 = 3;
const SNAPSHOT: u64 = 4;
const CLOSED: u64 = 5;

/// A blob is written and hashed in chunks of this many bytes (the last one
/// shorter), so that it never needs to be whole in memory.
pub const CHUNK: usize = 64 << 10;

/// A checkpoint's blob, written group by group in the order the module
/// docs give, and handed on a [`CHUNK`] at a time ([`BlobWriter::drain`]).
#[derive(Debug, Default)]
pub struct BlobWriter {
    out: Vec<u8>,
    /// Bytes handed on.
    drained: usize,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.drained + self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn forgotten(&mut self, device: &str) {
        put_name(&mut self.out, device);
        put_u(&mut self.out, FORGOTTEN);
    }

    pub fn entries(&mut self, device: &str, entries: &[u8]) {
        self.group(device, ENTRIES, entries);
    }

    /// A device's alert state record (`None`: removed).
    pub fn alert_state(&mut self, device: &str, state: Option<&[u8]>) {
        match state {
            Some(v) => self.group(device, ALERT_STATE, v),
            None => {
                put_name(&mut self.out, device);
                put_u(&mut self.out, ALERT_STATE_REMOVED);
            }
        }
    }

    /// A device's snapshot record (its `devices` record).
    pub fn snapshot(&mut self, device: &str, record: &[u8]) {
        self.group(device, SNAPSHOT, record);
    }

    /// A device's closed-windows record (its `closed` record).
    pub fn closed(&mut self, device: &str, record: &[u8]) {
        self.group(device, CLOSED, record);
    }

    fn group(&mut self, device: &str, kind: u64, bytes: &[u8]) {
        put_name(&mut self.out, device);
        put_u(&mut self.out, kind);
        put_u(&mut self.out, bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// Hands every whole [`CHUNK`] written so far to `sink`, in order, and
    /// keeps the rest.
    pub fn drain<E>(&mut self, mut sink: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let whole = self.out.len() / CHUNK * CHUNK;
        for c in self.out[..whole].chunks(CHUNK) {
            sink(c)?;
        }
        self.out.drain(..whole);
        self.drained += whole;
        Ok(())
    }

    /// Hands on the rest: the blob is complete.
    pub fn finish<E>(mut self, mut sink: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        self.drain(&mut sink)?;
        if self.out.is_empty() {
            return Ok(());
        }
        sink(&self.out)
    }

    /// The whole blob (tests).
    #[cfg(test)]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = self.finish(|c| -> Result<(), ()> {
            all.extend_from_slice(c);
            Ok(())
        });
        all
    }
}

/// A blob of devices forgotten, entries and alert states (tests).
#[cfg(test)]
pub(crate) fn encode_blob(
    forgotten: &[std::sync::Arc<str>],
    logged: &[(std::sync::Arc<str>, Vec<u8>)],
    states: &[StateRecord<'_>],
) -> Vec<u8> {
    let mut w = BlobWriter::default();
    for id in forgotten {
        w.forgotten(id);
    }
    for (id, e) in logged {
        w.entries(id, e);
    }
    for (id, st) in states {
        w.alert_state(id, st.as_deref());
    }
    w.into_bytes()
}

/// A device's alert state for a blob: its id and its record (`None`: removed).
#[cfg(test)]
pub(crate) type StateRecord<'a> = (&'a str, Option<Vec<u8>>);

/// The groups of a blob, in order.
pub fn groups(blob: &[u8]) -> Result<Vec<Group<'_>>, Corrupt> {
    let mut c = Cursor::new(blob);
    let mut out = Vec::new();
    while !c.is_empty() {
        let device = c.name()?;
        let kind = c.u()?;
        out.push(match kind {
            FORGOTTEN => Group::Forgotten { device },
            ALERT_STATE_REMOVED => Group::AlertState { device, state: None },
            ENTRIES | ALERT_STATE | SNAPSHOT | CLOSED => {
                let n = c.u()?;
                let b = c.bytes(n)?;
                match kind {
                    ENTRIES => Group::Entries { device, entries: b },
                    ALERT_STATE => Group::AlertState { device, state: Some(b) },
                    SNAPSHOT => Group::Snapshot { device, record: b },
                    _ => Group::Closed { device, record: b },
                }
            }
            _ => return Err(c.corrupt()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>(), f in any::<f64>()) {
            let mut b = Vec::new();
            put_u(&mut b, u);
            put_i(&mut b, i);
            b.extend_from_slice(&f.to_le_bytes());
            let mut c = Cursor::new(&b);
            prop_assert_eq!(c.u().unwrap(), u);
            prop_assert_eq!(c.i().unwrap(), i);
            prop_assert_eq!(c.f64().unwrap().to_bits(), f.to_bits());
            prop_assert!(c.is_empty());
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = groups(&b);
        }
    }

    #[test]
    fn a_blob_lists_forgotten_devices_then_entries() {
        let blob = encode_blob(
            &[Arc::from("gone")],
            &[(Arc::from("p1"), vec![1, 2, 3])],
            &[("p1", Some(vec![9])), ("gone", None)],
        );
        assert_eq!(
            groups(&blob).unwrap(),
            vec![
                Group::Forgotten { device: "gone" },
                Group::Entries { device: "p1", entries: &[1, 2, 3] },
                Group::AlertState { device: "p1", state: Some(&[9]) },
                Group::AlertState { device: "gone", state: None },
            ]
        );
        assert!(groups(&blob[..blob.len() - 1]).is_err(), "a cut blob is refused");
    }

    #[test]
    fn a_blob_lists_its_groups_in_order_and_goes_out_in_whole_chunks() {
        let mut w = BlobWriter::default();
        w.forgotten("gone");
        let big = vec![7u8; CHUNK + 300];
        w.snapshot("p1", &big);
        w.closed("p1", &[5]);
        w.entries("p3", &[1, 2]);
        w.alert_state("p1", Some(&[9]));
        w.alert_state("p3", None);
        let n = w.len();
        // Drained as it grows: whole chunks only, then the rest.
        let mut chunks = Vec::new();
        w.drain(|c| -> Result<(), ()> {
            chunks.push(c.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [CHUNK]);
        assert_eq!(w.len(), n, "the length counts what went out");
        w.finish(|c| -> Result<(), ()> {
            chunks.push(c.to_vec());
            Ok(())
        })
        .unwrap();
        assert!(chunks[1].len() < CHUNK);
        let blob = chunks.concat();
        assert_eq!(blob.len(), n);
        assert_eq!(
            groups(&blob).unwrap(),
            vec![
                Group::Forgotten { device: "gone" },
                Group::Snapshot { device: "p1", record: &big },
                Group::Closed { device: "p1", record: &[5] },
                Group::Entries { device: "p3", entries: &[1, 2] },
                Group::AlertState { device: "p1", state: Some(&[9]) },
                Group::AlertState { device: "p3", state: None },
            ]
        );
        assert!(groups(&blob[..blob.len() - 2]).is_err(), "a cut blob is refused");
    }
}
