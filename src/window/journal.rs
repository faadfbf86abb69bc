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
//! `3` alert state removed), and for entries and alert states their length
//! (varint) and bytes. An alert state is the store's record, carried in
//! the blob so that the checkpoint's transaction writes one record for all
//! devices (`state.rs`).

use std::sync::Arc;

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
}

/// A device's alert state for a blob: its id and its record (`None`: removed).
pub type StateRecord<'a> = (&'a str, Option<Vec<u8>>);

/// A checkpoint's blob: devices forgotten first, then the entries, then alert states.
pub fn encode_blob(forgotten: &[Arc<str>], logged: &[(Arc<str>, Vec<u8>)], states: &[StateRecord<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(logged.iter().map(|(id, e)| id.len() + e.len() + 8).sum());
    for id in forgotten {
        put_name(&mut out, id);
        put_u(&mut out, 1);
    }
    for (id, e) in logged {
        put_name(&mut out, id);
        put_u(&mut out, 0);
        put_u(&mut out, e.len() as u64);
        out.extend_from_slice(e);
    }
    for (id, st) in states {
        put_name(&mut out, id);
        match st {
            Some(v) => {
                put_u(&mut out, 2);
                put_u(&mut out, v.len() as u64);
                out.extend_from_slice(v);
            }
            None => put_u(&mut out, 3),
        }
    }
    out
}

/// The groups of a blob, in order.
pub fn groups(blob: &[u8]) -> Result<Vec<Group<'_>>, Corrupt> {
    let mut c = Cursor::new(blob);
    let mut out = Vec::new();
    while !c.is_empty() {
        let device = c.name()?;
        match c.u()? {
            0 => {
                let n = c.u()?;
                out.push(Group::Entries { device, entries: c.bytes(n)? });
            }
            1 => out.push(Group::Forgotten { device }),
            2 => {
                let n = c.u()?;
                out.push(Group::AlertState { device, state: Some(c.bytes(n)?) });
            }
            3 => out.push(Group::AlertState { device, state: None }),
            _ => return Err(c.corrupt()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}
