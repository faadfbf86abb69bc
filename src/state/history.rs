//! The window history's records in `window_groups`: the windows of one
//! start whose devices fall in the same bucket, as one record per
//! checkpoint.
//!
//! Why groups: sled keeps a few dozen bytes in memory for every record of
//! a tree of small records, cached or not (benches/RESULTS.md,
//! 22): one record of ~200 bytes per window made the history's memory grow
//! with every window close, ~22 MB at the default bound of 1,000,000
//! windows. A group holds the windows of about `devices / BUCKETS` devices.
//!
//! Key: start (8 bytes, [`start_bytes`](super::start_bytes)), bucket (u16
//! BE), checkpoint number (u64 BE). Value: the records one after the
//! other, each as its length (u32 LE) and the record
//! ([`Store::encode_window`](super::Store::encode_window)).
//! A device's windows are in one bucket at every start; a window written
//! again (late readings, or the same readings again after a crash) is in
//! a later record or later in the same one, and the last one counts.

use super::{start_bytes, StateError, WindowRecord};

/// Buckets of a start's windows: 10,000 devices make groups of about 20.
/// Part of the stored layout (a device's bucket must not change).
pub const BUCKETS: u16 = 512;

/// A device's bucket: FNV-1a of its id (stable: it is stored).
pub fn bucket(device: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h % u32::from(BUCKETS)) as u16
}

/// The keys of one start and bucket begin with this.
pub fn prefix(start_ms: i64, bucket: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&start_bytes(start_ms));
    k[8..].copy_from_slice(&bucket.to_be_bytes());
    k
}

pub fn key(start_ms: i64, bucket: u16, seq: u64) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..10].copy_from_slice(&prefix(start_ms, bucket));
    k[10..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Appends one encoded record to a group.
pub fn push(group: &mut Vec<u8>, record: &[u8]) {
    // A record is a few hundred bytes; u32 holds any postcard encoding a
    // Vec can.
    group.extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes());
    group.extend_from_slice(record);
}

/// The encoded records of a group, in order; `Err` for a group cut short.
pub fn records(group: &[u8]) -> impl Iterator<Item = Result<&[u8], postcard::Error>> {
    let mut rest = group;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            rest = &[];
            return Some(Err(postcard::Error::DeserializeUnexpectedEnd));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            rest = &[];
            return Some(Err(postcard::Error::DeserializeUnexpectedEnd));
        }
        let (r, tail) = tail.split_at(len);
        rest = tail;
        Some(Ok(r))
    })
}

/// The device of an encoded record (its first field), not decoding the rest.
pub fn device_of(record: &[u8]) -> Result<&str, postcard::Error> {
    postcard::take_from_bytes::<&str>(record).map(|(d, _)| d)
}

/// The error for a group under `key` that does not read.
pub fn corrupt(key: &[u8], source: postcard::Error) -> StateError {
    StateError::Corrupt { tree: "window_groups", key: String::from_utf8_lossy(key).into_owned(), source }
}

/// Decodes the records of `device` in a group, in order, with `decode`
/// (key, record).
pub fn of_device(
    key: &[u8],
    group: &[u8],
    device: &str,
    out: &mut Vec<WindowRecord>,
    decode: impl Fn(&[u8], &[u8]) -> Result<WindowRecord, StateError>,
) -> Result<(), StateError> {
    for r in records(group) {
        let r = r.map_err(|e| corrupt(key, e))?;
        if device_of(r).map_err(|e| corrupt(key, e))? == device {
            out.push(decode(key, r)?);
        }
    }
    Ok(())
}

/// A group without the records of `gone` devices; `None` when it does
/// not hold any of them.
pub fn without(key: &[u8], group: &[u8], gone: &[&str]) -> Result<Option<Vec<u8>>, StateError> {
    let mut kept = Vec::with_capacity(group.len());
    let mut dropped = false;
    for r in records(group) {
        let r = r.map_err(|e| corrupt(key, e))?;
        if gone.contains(&device_of(r).map_err(|e| corrupt(key, e))?) {
            dropped = true;
        } else {
            push(&mut kept, r);
        }
    }
    Ok(dropped.then_some(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_gives_back_its_records_and_refuses_a_cut_one() {
        let mut g = Vec::new();
        push(&mut g, &postcard::to_stdvec("pump-1").unwrap());
        push(&mut g, b"");
        let got: Vec<_> = records(&g).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(device_of(got[0]).unwrap(), "pump-1");
        assert!(device_of(got[1]).is_err());
        for cut in 1..g.len() {
            if cut == g.len() - 4 {
                continue; // just before the empty record: a whole group of one
            }
            assert!(records(&g[..cut]).any(|r| r.is_err()), "cut at {cut}");
        }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Stored: these must never change.
        assert_eq!(bucket(""), (0x811c_9dc5u32 % 512) as u16);
        assert_eq!(bucket("pump-1"), bucket("pump-1"));
        let used: std::collections::HashSet<u16> = (0..10_000).map(|i| bucket(&format!("dev-{i:05}"))).collect();
        assert!(used.len() > 500, "{} of 512 buckets used", used.len());
        assert!(used.iter().all(|&b| b < BUCKETS));
    }
}
