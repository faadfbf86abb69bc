//! Closed windows out of memory while they wait for late readings.
//!
//! A closed window is kept until the watermark passes its end plus the
//! allowed lateness, and it is read only when a late reading, a snapshot or
//! a restart needs it. With 10,000 devices of 8 signals that is ~7.5 MB of
//! accumulators held most of the time, and at a window close, when every
//! device holds its new window and the one it closed, it was part of the
//! high-water mark. With a spill (the daemon's, under its state directory)
//! the engine writes each closed window here as it closes and keeps a
//! 12-byte reference.
//!
//! The spill is not state: the snapshots and journal files hold the closed
//! windows as they always did, and a start empties the directory. It is
//! written to files through the page cache, never synced, never mapped, so
//! it costs no resident memory of the daemon's. Files are segments of up to
//! [`SEGMENT_BYTES`], appended to; the newest segment's last bytes wait in a
//! small buffer (a close writes ~10,000 windows). The engine counts what
//! each segment still holds at every checkpoint ([`Spill::collect`]): a
//! segment nothing refers to is removed, and when the files hold more than
//! twice what is referred to (plus two segments), the emptiest segments'
//! windows are copied to the newest and they go. So the disk used is bounded
//! by what the engine's limits let it hold.
//!
//! Each record is the window's statistics per signal, postcard-encoded as a
//! snapshot stores them (bit for bit), followed by a 64-bit hash of them: a
//! record that does not read back as written is an error, never a wrong
//! window.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::{SignalStats, WindowStats};

/// A segment file takes records up to this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;

/// The newest segment's bytes are written when this many wait.
const TAIL_BYTES: usize = 64 << 10;

/// Where a closed window's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillRef {
    seg: u32,
    at: u32,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    file: File,
    /// Bytes in the segment, the unwritten tail included.
    len: u64,
    /// Bytes written to the file (the newest segment's tail follows).
    written: u64,
}

/// What the spill holds, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Closed windows in the spill (the engine counts them).
    pub windows: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// Records that could not be written or read back.
    pub errors: u64,
}

#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    next: u32,
    /// The newest segment's bytes not yet written to its file.
    tail: Vec<u8>,
    hasher: foldhash::fast::FixedState,
    errors: AtomicU64,
    /// [`SEGMENT_BYTES`] (tests make it small).
    segment_bytes: u64,
}

impl Spill {
    /// A spill in `dir`, created if missing; files a crashed run left are removed.
    pub fn open(dir: &Path) -> io::Result<Spill> {
        Spill::with_segments(dir, SEGMENT_BYTES)
    }

    /// [`Spill::open`] with segments of `segment_bytes`.
    pub fn with_segments(dir: &Path, segment_bytes: u64) -> io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Spill {
            dir: dir.to_owned(),
            segments: BTreeMap::new(),
            next: 0,
            tail: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5b11_7e57),
            errors: AtomicU64::new(0),
            segment_bytes: segment_bytes.max(1),
        })
    }

    pub fn stats(&self) -> SpillStats {
        SpillStats {
            windows: 0,
            bytes: self.segments.values().map(|s| s.len).sum(),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Counts a failure the engine met, and logs the first and then every
    /// power of two of them (a record that fails to read may be tried
    /// again at every checkpoint until its window expires).
    pub fn error(&self, what: &str, e: &io::Error) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(dir = %self.dir.display(), errors = n, "closed-window spill: {what}: {e}");
        }
    }

    /// Writes a window's statistics.
    pub fn put(&mut self, w: &WindowStats) -> io::Result<SpillRef> {
        let mut record = postcard::to_allocvec(&w.to_signals()).map_err(io::Error::other)?;
        let hash = self.hasher.hash_one(&record);
        record.extend_from_slice(&hash.to_le_bytes());
        self.write(&record)
    }

    /// Reads a window's statistics back.
    pub fn get(&self, r: SpillRef) -> io::Result<WindowStats> {
        let bytes = self.read(r)?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("record {r:?} does not read back as written"));
        let (record, hash) = bytes.split_at_checked(bytes.len().wrapping_sub(8)).ok_or_else(bad)?;
        let hash = u64::from_le_bytes(hash.try_into().map_err(|_| bad())?);
        if self.hasher.hash_one(record) != hash {
            return Err(bad());
        }
        let signals: Vec<SignalStats> = postcard::from_bytes(record).map_err(|_| bad())?;
        Ok(WindowStats::from_signals(signals))
    }

    fn write(&mut self, record: &[u8]) -> io::Result<SpillRef> {
        let len = u32::try_from(record.len()).map_err(io::Error::other)?;
        let full = self.segments.last_key_value().is_none_or(|(_, s)| s.len + u64::from(len) > self.segment_bytes);
        if full {
            self.flush()?;
            let id = self.next;
            let file = File::options().read(true).write(true).create(true).truncate(true).open(self.path(id))?;
            self.segments.insert(id, Segment { file, len: 0, written: 0 });
            self.next = self.next.wrapping_add(1);
        }
        let Some((&seg, s)) = self.segments.last_key_value() else {
            return Err(io::Error::other("no segment"));
        };
        let at = s.len;
        self.tail.extend_from_slice(record);
        if let Some(s) = self.segments.get_mut(&seg) {
            s.len += u64::from(len);
        }
        if self.tail.len() >= TAIL_BYTES {
            self.flush()?;
        }
        // A segment is at most `segment_bytes` (a larger record is a segment of its own).
        Ok(SpillRef { seg, at: u32::try_from(at).map_err(io::Error::other)?, len })
    }

    /// Writes the newest segment's tail to its file.
    fn flush(&mut self) -> io::Result<()> {
        if self.tail.is_empty() {
            return Ok(());
        }
        let Some(s) = self.segments.values_mut().next_back() else {
            self.tail.clear();
            return Ok(());
        };
        match s.file.write_all_at(&self.tail, s.written) {
            Ok(()) => {
                s.written += self.tail.len() as u64;
                self.tail.clear();
                Ok(())
            }
            Err(e) => {
                // What did not reach the file cannot be read: the segment
                // takes nothing more (the references into it fail to read).
                s.len = self.segment_bytes.max(s.len);
                s.written = s.len;
                self.tail.clear();
                Err(e)
            }
        }
    }

    fn read(&self, r: SpillRef) -> io::Result<Vec<u8>> {
        let s = self
            .segments
            .get(&r.seg)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("segment {} is gone", r.seg)))?;
        let (at, len) = (u64::from(r.at), r.len as usize);
        if at + len as u64 > s.len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("record {r:?} past its segment")));
        }
        let newest = self.segments.last_key_value().is_some_and(|(k, _)| *k == r.seg);
        if newest && at >= s.written {
            let from = (at - s.written) as usize;
            return self
                .tail
                .get(from..from + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("record {r:?} past the tail")));
        }
        let mut buf = vec![0; len];
        s.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// Copies a record to the newest segment (compaction).
    pub fn relocate(&mut self, r: SpillRef) -> io::Result<SpillRef> {
        let bytes = self.read(r)?;
        self.write(&bytes)
    }

    /// Given the references the engine holds, segments whose records
    /// should move to the newest one so that they can go: the files hold
    /// more than twice what is referred to, plus two segments.
    pub fn victims(&self, live: &BTreeMap<u32, u64>) -> Vec<u32> {
        let newest = self.segments.last_key_value().map(|(k, _)| *k);
        let referred: u64 = live.values().sum();
        let mut total: u64 = self.segments.values().map(|s| s.len).sum();
        let allowed = referred.saturating_mul(2).saturating_add(2 * self.segment_bytes);
        let mut candidates: Vec<(u32, u64, u64)> = self
            .segments
            .iter()
            .filter(|(k, _)| Some(**k) != newest)
            .map(|(k, s)| (*k, s.len, live.get(k).copied().unwrap_or(0)))
            .filter(|(_, _, l)| *l > 0)
            .collect();
        // Emptiest first: least to copy for the most given back.
        candidates.sort_by(|a, b| (a.2 as f64 / a.1.max(1) as f64).total_cmp(&(b.2 as f64 / b.1.max(1) as f64)));
        let mut out = Vec::new();
        for (k, len, l) in candidates {
            if total <= allowed {
                break;
            }
            total = total.saturating_sub(len).saturating_add(l);
            out.push(k);
        }
        out
    }

    /// Removes the segments nothing refers to (`live`: bytes referred to
    /// per segment).
    pub fn collect(&mut self, live: &BTreeMap<u32, u64>) {
        let newest = self.segments.last_key_value().map(|(k, _)| *k);
        let dead: Vec<u32> = self.segments.keys().copied().filter(|k| live.get(k).is_none_or(|l| *l == 0)).collect();
        for k in dead {
            if Some(k) == newest {
                self.tail.clear();
            }
            self.segments.remove(&k);
            if let Err(e) = std::fs::remove_file(self.path(k)) {
                if e.kind() != io::ErrorKind::NotFound {
                    self.error("removing a segment", &e);
                }
            }
        }
    }

    fn path(&self, seg: u32) -> PathBuf {
        self.dir.join(format!("{seg:08x}"))
    }
}

impl SpillRef {
    pub fn segment(&self) -> u32 {
        self.seg
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.len)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // Nothing here is state: a stopped daemon leaves an empty directory.
        for k in self.segments.keys() {
            let _ = std::fs::remove_file(self.path(*k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(k: i64) -> WindowStats {
        let mut w = WindowStats::with_capacity(3);
        for i in 0..=k {
            let x = (i as f64 * 0.7).sin() * 1e3 + k as f64;
            // Signal 2 misses every third reading: times of its own.
            let values: Vec<(usize, f64)> =
                (0..3).filter(|s| *s != 2 || i % 3 != 0).map(|s| (s, x * (s + 1) as f64)).collect();
            w.push(&values, 1_000 * i, 0);
        }
        w
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn windows_read_back_bit_for_bit_from_the_tail_and_the_files_and_a_damaged_record_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("0000002a"), b"left by a crash").expect("write");
        let mut s = Spill::with_segments(dir.path(), 4096).expect("open");
        assert_eq!(files(dir.path()), 0, "a start empties the directory");
        let refs: Vec<SpillRef> = (0..40).map(|k| s.put(&window(k)).expect("put")).collect();
        assert!(files(dir.path()) > 1, "records fill several segments");
        for (k, r) in refs.iter().enumerate() {
            let got = s.get(*r).expect("get");
            assert_eq!(format!("{:?}", got.to_signals()), format!("{:?}", window(k as i64).to_signals()), "window {k}");
        }
        // A byte changed on disk: an error, not another window.
        let r = refs[0];
        let path = dir.path().join(format!("{:08x}", r.seg));
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[r.at as usize + 3] ^= 0x40;
        std::fs::write(&path, bytes).expect("write");
        let e = s.get(r).expect_err("damaged");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A segment that went is an error too.
        let mut live = BTreeMap::new();
        live.insert(refs[39].seg, refs[39].bytes());
        s.collect(&live);
        assert_eq!(s.get(refs[0]).expect_err("gone").kind(), io::ErrorKind::NotFound);
        assert!(s.get(refs[39]).is_ok());
        assert_eq!(files(dir.path()), 1);
        drop(s);
        assert_eq!(files(dir.path()), 0, "a stopped spill leaves nothing");
    }

    #[test]
    fn the_files_stay_within_twice_what_is_referred_to_plus_two_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = 2048;
        let mut s = Spill::with_segments(dir.path(), seg).expect("open");
        // One record in every segment stays referred to (a device whose
        // watermark stands still); the rest go at each round.
        let mut pinned: Vec<SpillRef> = Vec::new();
        let mut moved = 0;
        for round in 0..30 {
            let refs: Vec<SpillRef> = (0..12).map(|k| s.put(&window(k + round)).expect("put")).collect();
            pinned.push(refs[0]);
            let live = |pinned: &[SpillRef]| {
                let mut m: BTreeMap<u32, u64> = BTreeMap::new();
                for r in pinned {
                    *m.entry(r.seg).or_default() += r.bytes();
                }
                m
            };
            let mut m = live(&pinned);
            let victims = s.victims(&m);
            for r in &mut pinned {
                if victims.contains(&r.seg) {
                    *r = s.relocate(*r).expect("relocate");
                    moved += 1;
                }
            }
            m = live(&pinned);
            s.collect(&m);
            let referred: u64 = pinned.iter().map(SpillRef::bytes).sum();
            let bytes = s.stats().bytes;
            assert!(bytes <= 2 * referred + 3 * seg, "round {round}: {bytes} bytes on disk for {referred} referred to");
        }
        assert!(moved > 0, "records were moved");
        for (k, r) in pinned.iter().enumerate() {
            let got = s.get(*r).expect("a moved record reads back");
            assert_eq!(format!("{:?}", got.to_signals()), format!("{:?}", window(k as i64).to_signals()));
        }
    }
}
