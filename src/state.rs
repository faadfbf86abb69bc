//! The daemon's durable state: one sled database under `state.dir`.
//!
//! Trees, each with its own key layout (version in `meta/layout`):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `layout` | u32 BE, [`LAYOUT`] |
//! | `journal_files` | checkpoint number, u64 BE | length (u64 BE) and 128-bit hash of the checkpoint's journal file, `journal/<number as 16 hex digits>` beside the database: the devices' snapshots, closed windows and alert states that checkpoint wrote, and the readings devices took since their snapshot ([`crate::window::journal`]) |
//! | `journal` | checkpoint number, u64 BE | layout 1's journal blobs, in the tree itself: read at a restart and removed like the files |
//! | `devices` | device id | older versions: postcard [`DeviceSnapshot`]: open windows, watermark (its `closed` empty), then the checkpoint number (u64 BE); read at a restart, emptied by the first full checkpoint |
//! | `closed` | device id | older versions: postcard `Vec<WindowSnapshot>`, the closed windows still open to late updates; as `devices` |
//! | `alert_state` | device id | older versions: postcard [`DeviceState`]: recent scores, the alert not cleared (without its features; see [`Store::restore`]); then, with baselines, postcard [`DeviceBaseline`]; emptied by the first checkpoint with every alert state |
//! | `alert_history` | the start in the alert id (i64 BE, the window that opened it), then the id | postcard [`Alert`] without its feature values, then postcard (names id, values) when it has any ([`Store::encode_alert`]; older records hold postcard [`Alert`] with the names): latest record of every alert (history); the older `alerts` tree, keyed by id, moves here when the store opens |
//! | `feature_names` | id, u64 BE | postcard `Vec<String>`: a list of names the `alert_history` records (feature names) and `window_groups` records (signal names) refer to ([`names`]) |
//! | `window_groups` | start i64 BE, bucket u16 BE, checkpoint number u64 BE | the scored windows of the newest window starts, of the devices in one bucket, written by one checkpoint, each record without its signals' names ([`history`], [`Store::encode_window`]; the `window_history` tree of earlier versions, one record per window keyed start then device, and the older `windows`, keyed device first, move here when the store opens) |
//! | `positions` | `kafka/<group>/<topic>/<partition>` | i64 BE: next offset |
//! | | `mqtt/<client id>`, 0x00, checkpoint number u64 BE | the MQTT messages that checkpoint acknowledged, the ones still remembered (`daemon::acked`): a format byte (1), then packet id u16 LE and hash u32 LE for each; `mqtt/<client id>` alone is the older form, postcard `Vec<Vec<(u16, u64)>>`, newest checkpoint first, moved by the next checkpoint with messages |
//! | `late` | u64 BE sequence | postcard [`Reading`]: the late store |
//! | `quarantine` | u64 BE sequence | postcard [`Quarantined`]: refused payloads |
//! | `labels` | device id, 0x00, start i64 BE | postcard (end, fault): maintenance feedback |
//! | `outbox` | u64 BE sequence | postcard [`OutboxRecord`]: alert records not yet on the topic |
//!
//! A checkpoint writes its journal file and syncs it, then writes the
//! journal marker, position and outbox trees (and removes forgotten
//! devices) in one sled transaction and flushes; sources are acknowledged
//! only after that. The late and quarantine trees, kept for inspection, go
//! just before the transaction, a record at a time ([`Store::checkpoint`]).
//! A journal file counts only once its marker is committed: one without (a
//! crash or a failed commit between the two) is removed when the store
//! opens. The journal is a file of its own
//! because sled keeps up to 16 records in a leaf and reads and rewrites a
//! whole leaf for every insert: journal records of ~1 MB made leaves of
//! ~16 MB, read back and held in memory by every checkpoint's transaction
//! (benches/RESULTS.md). The per-device records of a checkpoint
//! (snapshots, each with its closed windows, and alert states) are in its
//! journal file too, and only there: in sled every checkpoint's inserts of
//! them, 10,000 alert states at a window close, held leaves, log buffers
//! and cache in memory (benches/RESULTS.md, 28). A file stays while it
//! holds a device's latest snapshot or alert state (the engine's
//! `journal_from`, and the daemon's turns), and every device is
//! snapshotted, and every alert state written, at its turn once in
//! [`JOURNAL_SPREAD`] checkpoints, silent or not ([`state_turn`]), so the
//! files kept stay few; a checkpoint with nothing else to write takes no
//! turns, so an idle daemon writes nothing. A restore reads them oldest
//! first: the latest record of a device wins. The trees of older versions
//! are read first, and emptied once a full checkpoint has written
//! everything to its file; an older version reading a newer database takes
//! the records from the files.
//! The window and alert history go outside any transaction: alert records
//! as the daemon scores windows ([`Store::write_history`]; what could not
//! be written then goes just before the next checkpoint's transaction),
//! window records grouped in memory and written just before the
//! checkpoint's transaction: a crash before the checkpoint makes the same
//! records again (alerts under the same keys, windows in a later group).
//! A device's open window is not rewritten at every checkpoint: the readings a device took are
//! appended to the journal (a few bytes each), and the device is
//! snapshotted only when its journal has grown past about two snapshots, or
//! at its turn (every device at least once in [`JOURNAL_SPREAD`]
//! checkpoints), or when something other than a reading changed it. A
//! restart restores the snapshots, then replays the journal entries newer
//! than each, which stay in their files until the device's turn; it reads
//! the files one at a time, twice (the latest records and the entries that
//! count, then those copied, still encoded: [`Restored`] decodes a device
//! at a time as it is restored). A clean shutdown snapshots every
//! device. A `devices` record
//! of an older database (closed windows inside, no checkpoint number) still
//! reads the same. The outbox is in memory while the daemon runs
//! (`daemon::outbox`): each checkpoint adds the alert records made since
//! and removes the ones delivered, in its transaction, so an alert record
//! is never lost: one made after the last checkpoint is made again from the
//! readings that come again; at worst one is sent twice after a crash,
//! recognisably the same (SPEC 4: deterministic `alert_id`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::alerts::{Alert, AlertHead, DeviceState};
use crate::baseline::DeviceBaseline;
use crate::bounded::BoundedLog;
use crate::pipeline::Quarantined;
use crate::reading::Reading;
use crate::window::{journal, Changes, DeviceSnapshot, Engine, WindowSnapshot};

mod history;
mod names;

/// Every device is snapshotted, and every alert state written, at least
/// once in this many checkpoints, so older journal files can go: at the
/// default one-second interval, a minute of readings at most.
pub const JOURNAL_SPREAD: u64 = 60;

/// Whether checkpoint `seq` writes device `id`'s alert state even if it
/// did not change: each once in [`JOURNAL_SPREAD`] checkpoints that write
/// anything, as its latest record must stay in the journal files kept
/// (the daemon keeps them from the checkpoint that wrote the class of
/// turns written longest ago). By a stable hash of the id, so the turns
/// go on across a restart.
pub fn state_turn(id: &str, seq: u64) -> bool {
    u64::from(history::bucket(id)).wrapping_add(seq).is_multiple_of(JOURNAL_SPREAD)
}

/// Version of the key layout above; a database of another version is
/// refused, except the older layouts this one reads and takes over:
/// layout 1 (the journal inside sled) and layout 2 (journal files without
/// snapshots in them, which an older faultline would refuse as corrupt).
pub const LAYOUT: u32 = 3;

/// Bytes of a `journal_files` marker: [`MARKER_CHUNKED`], the file's length
/// and its hash taken a chunk at a time ([`ChunkHash`]).
const MARKER_BYTES: usize = 25;

/// A `journal_files` marker as this version writes it.
type Marker = [u8; MARKER_BYTES];

/// The first byte of a marker of [`MARKER_BYTES`].
const MARKER_CHUNKED: u8 = 2;

/// Bytes of layout 2's markers: the file's length and its hash taken whole.
const OLD_MARKER_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the state database in {dir}")]
    Open { dir: PathBuf, source: sled::Error },
    #[error(
        "the state in {dir} has key layout {found}, this faultline reads layout {LAYOUT}; move it away to start afresh"
    )]
    Layout { dir: PathBuf, found: u32 },
    #[error("state database")]
    Sled(#[from] sled::Error),
    #[error("state record {key:?} in tree {tree} cannot be read")]
    Corrupt { tree: &'static str, key: String, source: postcard::Error },
    #[error("cannot encode a state record")]
    Encode(#[source] postcard::Error),
    #[error("journal record {key} of device {device:?} cannot be read")]
    Journal { key: u64, device: String, source: journal::Corrupt },
    #[error("cannot {what} {path}")]
    File { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("device {0:?} is to be snapshotted, but the checkpoint has no engine that tracks it")]
    NoSnapshot(String),
    #[error("journal file {path} is not the one checkpoint {seq} wrote (its length or hash differs); the state cannot be restored exactly: move {dir} away to start afresh")]
    JournalFile { path: PathBuf, seq: u64, dir: PathBuf },
}

/// An alert record waiting to be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The record's key on the alert topic.
    pub device_id: String,
    /// The record's value: SPEC 4 JSON.
    pub payload: String,
}

/// A [`WindowRecord`] by reference, encoded exactly as one (postcard
/// writes `&str` as `String` and slices as `Vec`): the stored record's
/// head, its signals left empty ([`Store::encode_window`]).
#[derive(Serialize)]
struct WindowHead<'a> {
    device_id: &'a str,
    start_ms: i64,
    end_ms: i64,
    readings: u64,
    score: f32,
    model: &'a str,
    model_version: &'a str,
    update: bool,
    signals: &'a [(String, f64, f64)],
}

/// Values stored without their names, with the names found for them.
type Named<V> = (std::sync::Arc<[String]>, Vec<V>);

/// The means and deviations of a [`WindowRecord`]'s signals, as a sequence of pairs.
struct MeansAndDeviations<'a>(&'a [(String, f64, f64)]);

impl Serialize for MeansAndDeviations<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, m, sd)| (m, sd)))
    }
}

/// A closed window as the dashboard and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub device_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Readings in the window (the largest count over its signals).
    pub readings: u64,
    /// Fault probability (NaN: not scored).
    pub score: f32,
    pub model: String,
    pub model_version: String,
    /// The window was re-emitted after late readings.
    pub update: bool,
    /// Each signal's mean and standard deviation.
    pub signals: Vec<(String, f64, f64)>,
}

/// Window starts kept in `window_history` by default
/// (`limits.window_history`): a device that reports all the time keeps
/// this many windows.
pub const WINDOWS_PER_DEVICE: usize = 500;

/// Windows kept over all devices by default (`limits.window_history_total`).
pub const WINDOWS_TOTAL: usize = 1_000_000;

/// Window starts the history may hold past its bound before the oldest
/// go: one, so that each window close past the bound cuts one start. It
/// was a tenth of the bound, at most 50; but the starts are kept in
/// memory, so a trim reads no keys to find them, and ten starts cut at
/// once (100,000 windows at the default bound) had RSS 3–5 MB higher
/// until the cut (benches/RESULTS.md, 31).
const TRIM_SLACK: usize = 1;

/// Alerts kept in the `alert_history` tree; past it the oldest cleared ones go.
pub const ALERT_HISTORY: usize = 10_000;

/// The prefix of a device's keys in `labels` (and the old `windows`): its id and a 0 byte.
fn device_prefix(device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(device.len() + 9);
    k.extend_from_slice(device.as_bytes());
    k.push(0);
    k
}

fn window_key(device: &str, start_ms: i64) -> Vec<u8> {
    let mut k = device_prefix(device);
    k.extend_from_slice(&start_bytes(start_ms));
    k
}

/// A window start as 8 bytes that sort like the times, negative ones too.
fn start_bytes(start_ms: i64) -> [u8; 8] {
    ((start_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time of [`start_bytes`].
fn start_from(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// The start time a [`window_key`] ends with.
fn start_of(key: &[u8]) -> i64 {
    key.len().checked_sub(8).and_then(|i| <[u8; 8]>::try_from(&key[i..]).ok()).map_or(0, start_from)
}

/// A window record's key in `window_history`: its start, then the device.
/// Time first, so that the windows that close together are written to the
/// newest leaves of the tree: keyed device first, each of them landed in
/// its device's own leaf, and writing 10,000 of them read ~10,000 leaves
/// back from disk into memory, more as the history grew (benches/RESULTS.md).
fn history_key(start_ms: i64, device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + device.len());
    k.extend_from_slice(&start_bytes(start_ms));
    k.extend_from_slice(device.as_bytes());
    k
}

/// The start a [`history_key`] begins with.
fn history_start(key: &[u8]) -> Option<i64> {
    key.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(start_from)
}

/// Keys read at a time when the window history is cut, and records moved
/// per batch when an older history moves over: sled holds a batch's
/// copies of the leaves it changes until the batch is applied.
const CUT_BATCH: usize = 1024;

/// An `alert_history` key: the start in the alert's id (the window that
/// opened it; `i64::MIN` for an id without one), then the id. Time first,
/// so that the alerts a window close raises are written side by side, and
/// so are the ones it clears (they opened together, mostly): keyed by id,
/// device first, each went to its device's own leaf, which sled rewrites
/// whole and reads back from disk once the history outgrows its cache
/// (benches/RESULTS.md, 26).
fn alert_key(alert_id: &str) -> Vec<u8> {
    let start = alert_id
        .rsplit_once('/')
        .and_then(|(_, t)| crate::time::parse_rfc3339(t, crate::time::Naive::Reject))
        .unwrap_or(i64::MIN);
    history_key(start, alert_id)
}

/// Opens `alert_history`, moving the records of the older `alerts` tree
/// (keyed by id) into it first, a batch at a time; the old tree goes once
/// they all are moved.
fn open_alerts(db: &sled::Db) -> Result<sled::Tree, StateError> {
    let alerts = db.open_tree("alert_history")?;
    if !db.tree_names().iter().any(|n| n.as_ref() == b"alerts") {
        return Ok(alerts);
    }
    let n = move_records(db, "alerts", &alerts, |k| Some(alert_key(&String::from_utf8_lossy(k))))?;
    tracing::info!(alerts = n, "alert history moved to time order");
    Ok(alerts)
}

/// Cleared alerts by their latest change, then id.
type ClearedAlerts = std::collections::BTreeSet<(i64, Box<str>)>;

/// The records of `alerts` and every cleared alert's latest change and id
/// (from the heads: nothing past them is decoded). A record that does not
/// read counts, is never a candidate, and does not stop the store from
/// opening (it used to be only counted here).
fn alert_index(alerts: &sled::Tree) -> Result<(usize, ClearedAlerts), StateError> {
    let mut n = 0;
    let mut cleared = std::collections::BTreeSet::new();
    for kv in alerts.iter() {
        let (k, v) = kv?;
        n += 1;
        match decode::<AlertHead<'_>>("alert_history", &k, &v) {
            Ok(h) if h.status == crate::alerts::Status::Cleared => {
                cleared.insert((h.updated_at_ms, h.alert_id.into()));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: left out of the alert history's trim", crate::error_chain(&e)),
        }
    }
    Ok((n, cleared))
}

/// Every record of `tree` (or of the keys starting with `prefix`), decoded, with its key.
fn decode_all<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    prefix: &[u8],
) -> Result<Vec<(sled::IVec, T)>, StateError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix(prefix) {
        let (k, v) = kv?;
        let t = decode(name, &k, &v)?;
        out.push((k, t));
    }
    Ok(out)
}

/// Opens `window_groups`, first moving into it the window records of
/// earlier versions: those of `windows` (keyed device id, 0, start) into
/// `window_history` (start, device), then those into groups. Stopped half
/// way, the next open moves the rest: the records land under the same keys.
fn open_history(db: &sled::Db) -> Result<sled::Tree, StateError> {
    let groups = db.open_tree("window_groups")?;
    let has = |name: &[u8]| db.tree_names().iter().any(|n| n.as_ref() == name);
    if has(b"windows") {
        move_device_first(db)?;
    }
    if has(b"window_history") {
        move_to_groups(db, &groups)?;
    }
    Ok(groups)
}

/// Moves the records of tree `from` into `to` under the keys `key` gives
/// (none: left out), a batch at a time ([`CUT_BATCH`]); `from` goes once
/// they all are moved, so a crash midway moves them all again. Returns
/// how many moved.
fn move_records(
    db: &sled::Db,
    from: &str,
    to: &sled::Tree,
    key: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<usize, StateError> {
    let old = db.open_tree(from)?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for kv in old.iter() {
        let (k, v) = kv?;
        let Some(k) = key(&k) else { continue };
        batch.insert(k, v);
        n += 1;
        if n % CUT_BATCH == 0 {
            to.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    to.apply_batch(batch)?;
    to.flush()?;
    db.drop_tree(from)?;
    Ok(n)
}

/// Moves the records of `windows` into `window_history`, a batch at a
/// time; the old tree goes once they all are moved.
fn move_device_first(db: &sled::Db) -> Result<(), StateError> {
    let history = db.open_tree("window_history")?;
    let n = move_records(db, "windows", &history, |k| {
        // Anything shorter than a separator and a start is not a record.
        let id_end = k.len().checked_sub(9)?;
        let device = std::str::from_utf8(&k[..id_end]).ok()?;
        Some(history_key(start_of(k), device))
    })?;
    tracing::info!(windows = n, "window history moved to time order");
    Ok(())
}

/// Moves the records of `window_history` (one per window) into groups,
/// one start at a time (number 0: before any checkpoint of this version);
/// the old tree goes once they all are moved.
fn move_to_groups(db: &sled::Db, groups: &sled::Tree) -> Result<(), StateError> {
    let old = db.open_tree("window_history")?;
    let mut start = None;
    let mut buckets: std::collections::BTreeMap<u16, Vec<u8>> = std::collections::BTreeMap::new();
    let put = |start: Option<i64>, buckets: &mut std::collections::BTreeMap<u16, Vec<u8>>| {
        for (b, g) in std::mem::take(buckets) {
            if let Some(start) = start {
                groups.insert(history::key(start, b, 0), g)?;
            }
        }
        Ok::<_, StateError>(())
    };
    let mut n = 0;
    for kv in old.iter() {
        let (k, v) = kv?;
        let (Some(s), Some(Ok(device))) = (history_start(&k), k.get(8..).map(std::str::from_utf8)) else { continue };
        if start != Some(s) {
            put(start, &mut buckets)?;
            start = Some(s);
        }
        history::push(buckets.entry(history::bucket(device)).or_default(), &v);
        n += 1;
    }
    put(start, &mut buckets)?;
    groups.flush()?;
    db.drop_tree("window_history")?;
    tracing::info!(windows = n, "window history moved into groups");
    Ok(())
}

/// What changed in a [`BoundedLog`] since the last checkpoint.
#[derive(Debug)]
pub struct LogDelta<T> {
    pub added: Vec<(u64, T)>,
    /// Sequence numbers pushed out of the log (and to delete).
    pub removed: std::ops::Range<u64>,
}

impl<T> Default for LogDelta<T> {
    fn default() -> Self {
        LogDelta { added: Vec::new(), removed: 0..0 }
    }
}

/// How far a [`BoundedLog`] has been written: the tree holds `low..written`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogMark {
    pub low: u64,
    pub written: u64,
}

impl LogMark {
    /// The log's changes since the mark; moves the mark.
    pub fn delta<T: Clone>(&mut self, log: &BoundedLog<T>) -> LogDelta<T> {
        let added = log.since(self.written).map(|(s, t)| (s, t.clone())).collect();
        let removed = self.low..log.first_seq().min(self.written).max(self.low);
        self.low = log.first_seq();
        self.written = log.next_seq();
        LogDelta { added, removed }
    }

    /// A mark for a log just restored.
    pub fn at<T>(log: &BoundedLog<T>) -> LogMark {
        LogMark { low: log.first_seq(), written: log.next_seq() }
    }
}

/// How the `outbox` tree changes: records added, and the sequence numbers
/// of the ones gone (delivered or dropped), whichever of them it holds.
#[derive(Debug, Default, Clone)]
pub struct OutboxDelta {
    pub removed: std::ops::Range<u64>,
    pub added: Vec<(u64, std::sync::Arc<OutboxRecord>)>,
}

impl OutboxDelta {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// A device's alert policy state and its baseline, as a checkpoint writes
/// them: one record, so that they are restored together.
pub type ScoringState<'a> = (Option<&'a DeviceState>, Option<&'a DeviceBaseline>);

/// The checkpoint number at the end of an encoded snapshot (what
/// [`decode_snapshot`] finds there in a record that decodes), without
/// decoding it.
fn snapshot_seq_of(v: &[u8]) -> Option<u64> {
    let tail = v.len().checked_sub(8).and_then(|at| v.get(at..))?;
    <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
}

/// A `devices` record: the snapshot, then the number of the checkpoint
/// that wrote it (0 in records older than the journal).
fn decode_snapshot(tree: &'static str, key: &[u8], v: &[u8]) -> Result<(DeviceSnapshot, u64), StateError> {
    let (d, rest): (DeviceSnapshot, &[u8]) = postcard::take_from_bytes(v).map_err(corrupt(tree, key))?;
    Ok((d, <[u8; 8]>::try_from(rest).map_or(0, u64::from_be_bytes)))
}

/// A device's `alert_state` record: its alert state, then its baseline if
/// it has one (a record written before baselines existed has none).
fn decode_scoring(
    tree: &'static str,
    key: &[u8],
    v: &[u8],
) -> Result<(DeviceState, Option<DeviceBaseline>), StateError> {
    let corrupt = corrupt(tree, key);
    let (state, rest) = postcard::take_from_bytes::<DeviceState>(v).map_err(corrupt)?;
    let baseline = if rest.is_empty() { None } else { Some(postcard::from_bytes(rest).map_err(corrupt)?) };
    Ok((state, baseline))
}

/// What a checkpoint writes (alert states borrowed from the policy, with
/// their device ids: at a window close there is one per device, and
/// copies of them were the largest item of a checkpoint's memory; the
/// snapshots taken from the engine as the journal file is written).
#[derive(Debug, Default)]
pub struct Checkpoint<'a> {
    /// This checkpoint's number: its journal blob's key, written with each
    /// snapshot. Increases from one checkpoint to the next.
    pub seq: u64,
    /// Devices' snapshots and journal entries; journal files numbered
    /// below its `journal_from` are removed: the caller keeps every file
    /// that holds a device's latest snapshot or alert state.
    pub devices: Changes,
    /// The engine whose devices `devices.to_snapshot` names: each snapshot
    /// is taken from it as the journal file is written.
    pub engine: Option<&'a Engine>,
    /// `devices` has every device's snapshot.
    pub full: bool,
    /// Alert policy state and baseline per device; both `None` removes them.
    pub alert_states: Vec<(&'a str, ScoringState<'a>)>,
    /// `alert_states` has every device's.
    pub all_states: bool,
    /// Alert records to keep as each alert's latest.
    pub alerts: Vec<Alert>,
    /// Source positions, keys as in the module docs.
    pub positions: Vec<(Vec<u8>, Vec<u8>)>,
    /// Source positions to remove.
    pub positions_removed: Vec<Vec<u8>>,
    /// Windows closed or updated.
    pub windows: Vec<WindowRecord>,
    pub late: LogDelta<Reading>,
    pub quarantine: LogDelta<Quarantined>,
    pub outbox: OutboxDelta,
}

impl Checkpoint<'_> {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.alert_states.is_empty()
            && self.alerts.is_empty()
            && self.positions.is_empty()
            && self.positions_removed.is_empty()
            && self.windows.is_empty()
            && self.late.added.is_empty()
            && self.late.removed.is_empty()
            && self.quarantine.added.is_empty()
            && self.quarantine.removed.is_empty()
            && self.outbox.is_empty()
    }
}

/// Everything a restart restores. The devices' snapshots and closed
/// windows, and their alert states, stay encoded, one after the other in
/// two buffers, and are decoded a device at a time as the engine and the
/// alert policy take them ([`Restored::devices`],
/// [`Restored::alert_states`]): decoded all at once, ahead of the
/// structures made from them, they left holes between those that the
/// allocator could not give back (benches/RESULTS.md, 36).
#[derive(Debug, Default)]
pub struct Restored {
    /// Each device's records, by id.
    held: Vec<Held>,
    /// The bytes of their snapshots and closed windows ([`restore_engine`]
    /// lets them go once the devices are restored).
    windows: Vec<u8>,
    /// The bytes of their alert states.
    states: Vec<u8>,
    /// The oldest checkpoint with a journal file (or an older version's
    /// blob) still kept.
    pub oldest_journal: Option<u64>,
    /// The entries groups of the journal newer than their device's
    /// snapshot, in order: what [`restore_engine`] replays.
    pub replay: Vec<ReplayGroup>,
    /// Their entries, one after the other.
    pub entries: Vec<u8>,
    /// The number for the next checkpoint (above all the ones stored).
    pub next_seq: u64,
    pub positions: Vec<(Vec<u8>, Vec<u8>)>,
    /// Alert records not yet on the topic, oldest first.
    pub outbox: Vec<(u64, OutboxRecord)>,
    pub late: Vec<(u64, Reading)>,
    pub quarantine: Vec<(u64, Quarantined)>,
}

impl Restored {
    /// The devices with a snapshot.
    pub fn snapshot_count(&self) -> usize {
        self.held.iter().filter(|h| h.snapshot.is_some()).count()
    }

    /// Each device's snapshot, its closed windows in it, with the number of
    /// the checkpoint that wrote it (0: older than the journal), by id.
    pub fn devices(&self) -> impl Iterator<Item = Result<(DeviceSnapshot, u64), StateError>> + '_ {
        self.held.iter().filter_map(|h| {
            let at = h.snapshot.as_ref()?;
            Some(decode_at(&self.windows, h, at, decode_snapshot).and_then(|(mut d, seq)| {
                if let Some(c) = &h.closed {
                    d.closed = decode_at(&self.windows, h, c, decode)?;
                }
                Ok((d, seq))
            }))
        })
    }

    /// Each device's alert state and its baseline, if any, by id.
    pub fn alert_states(
        &self,
    ) -> impl Iterator<Item = Result<(&str, DeviceState, Option<DeviceBaseline>), StateError>> + '_ {
        self.held.iter().filter_map(|h| {
            let at = h.alert.as_ref()?;
            Some(decode_at(&self.states, h, at, decode_scoring).map(|(s, b)| (&*h.device, s, b)))
        })
    }
}

/// Decodes with `f` device `h`'s record `at` in `buffer`.
fn decode_at<'a, T>(
    buffer: &'a [u8],
    h: &Held,
    at: &Bytes,
    f: impl FnOnce(&'static str, &[u8], &'a [u8]) -> Result<T, StateError>,
) -> Result<T, StateError> {
    let v = buffer.get(at.bytes.clone()).unwrap_or_default();
    match at.from {
        Origin::Tree(tree) => f(tree, h.device.as_bytes(), v),
        Origin::Journal(seq) => f("journal", &seq.to_be_bytes(), v),
    }
}

/// The device's entry in the restore's `held`, made empty if it has none.
fn held_of<'a>(held: &'a mut std::collections::BTreeMap<std::sync::Arc<str>, Held>, device: &str) -> &'a mut Held {
    let device: std::sync::Arc<str> = match held.get_key_value(device) {
        Some((k, _)) => k.clone(),
        None => std::sync::Arc::from(device),
    };
    held.entry(device.clone()).or_insert(Held { device, snapshot: None, closed: None, alert: None })
}

/// A device's records to restore, as [`Restored`] holds them.
#[derive(Debug)]
struct Held {
    device: std::sync::Arc<str>,
    snapshot: Option<Bytes>,
    closed: Option<Bytes>,
    alert: Option<Bytes>,
}

/// One record in [`Restored`]'s buffers: where it is, where it was read.
#[derive(Debug)]
struct Bytes {
    from: Origin,
    bytes: std::ops::Range<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    /// An older version's tree, keyed by device id.
    Tree(&'static str),
    /// The journal file (or layout 1's blob) of this checkpoint.
    Journal(u64),
}

/// One device's journal entries from one checkpoint, to replay.
#[derive(Debug)]
pub struct ReplayGroup {
    /// The checkpoint whose journal file holds them.
    seq: u64,
    device: std::sync::Arc<str>,
    /// Where they are in [`Restored::entries`].
    entries: std::ops::Range<usize>,
}

/// A device's latest record of one kind in the journal, as the restore
/// reads it oldest first.
#[derive(Debug)]
enum Rec {
    /// None in the files: the tree's record (of an older version), if any.
    Kept,
    /// Removed (a device forgotten, an alert state removed).
    Gone,
    /// In the journal source of this index (its checkpoint number, and
    /// where the file or blob is read from), at these bytes.
    At(usize, std::ops::Range<usize>),
}

/// Everything the journal holds for one device but its entries.
#[derive(Debug)]
struct Latest {
    device: std::sync::Arc<str>,
    snapshot: Rec,
    closed: Rec,
    alert: Rec,
    /// The position, over all files, of its last "forgotten" (0: none).
    forgotten: usize,
    /// Once all files are read: the number its snapshot was written at.
    snapshot_seq: Option<u64>,
}

impl Latest {
    fn new(device: std::sync::Arc<str>) -> Self {
        Latest { device, snapshot: Rec::Kept, closed: Rec::Kept, alert: Rec::Kept, forgotten: 0, snapshot_seq: None }
    }
}

/// One device's entries group, as the restore reads the journal.
#[derive(Debug)]
struct Pending {
    /// The group's position over all files.
    ordinal: usize,
    /// The journal source that holds it.
    source: usize,
    /// The device's index among the restore's [`Latest`].
    at: usize,
    bytes: std::ops::Range<usize>,
}

/// What the restore's second reading of a journal source takes from it,
/// for the device of this index among the restore's [`Latest`].
#[derive(Debug)]
enum Take {
    Snapshot(usize),
    Closed(usize),
    Alert(usize),
    /// An entries group to replay.
    Entries(usize),
}

/// Sizes of a written checkpoint, for metrics and logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub records: usize,
    pub bytes: usize,
}

pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    devices: sled::Tree,
    closed: sled::Tree,
    /// Layout 1's journal blobs (read and removed, no longer written).
    journal: sled::Tree,
    /// Markers of the journal files: a file counts only with its marker.
    journal_files: sled::Tree,
    /// Where the journal files are: `journal` beside sled's own files.
    journal_dir: PathBuf,
    /// The `devices` and `closed` trees of an older version hold records:
    /// the next full checkpoint writes them all to its journal file and
    /// empties the trees.
    legacy_devices: std::sync::atomic::AtomicBool,
    /// Likewise the `alert_state` tree, emptied by a checkpoint with every
    /// alert state.
    legacy_states: std::sync::atomic::AtomicBool,
    /// The window starts in `window_groups` and `pending_windows`, read
    /// from the tree at their first use ([`Store::with_starts`]).
    window_starts: std::sync::Mutex<Option<std::collections::BTreeSet<i64>>>,
    /// Records in `alerts` (counted at open, then as they are added).
    alert_count: std::sync::atomic::AtomicUsize,
    /// [`Store::trim_alerts`] runs past this count.
    alert_trim_at: std::sync::atomic::AtomicUsize,
    /// The trim's candidates: every cleared alert's latest change and id,
    /// oldest first (an entry whose alert changed since is dropped when the
    /// trim meets it). Read from the tree when the store opens: the trim
    /// read every alert's head through sled's cache, the high-water mark of
    /// a 30-minute soak (benches/RESULTS.md, 23).
    cleared_alerts: std::sync::Mutex<ClearedAlerts>,
    /// Windows kept per device and in all ([`Store::set_window_history`]).
    window_history: std::sync::atomic::AtomicUsize,
    window_total: std::sync::atomic::AtomicUsize,
    /// Devices sharing `window_total` ([`Store::set_window_devices`]).
    window_devices: std::sync::atomic::AtomicUsize,
    alert_state: sled::Tree,
    alerts: sled::Tree,
    /// `feature_names`: the names of the values in `alerts` and `windows`.
    names: names::FeatureNames,
    /// `window_groups`.
    windows: sled::Tree,
    /// Window records not written yet, by start and bucket, grouped as in
    /// `window_groups`: the next checkpoint writes them
    /// ([`Store::write_history`]).
    pending_windows: std::sync::Mutex<std::collections::BTreeMap<(i64, u16), Vec<u8>>>,
    positions: sled::Tree,
    late: sled::Tree,
    quarantine: sled::Tree,
    labels: sled::Tree,
    outbox: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A [`DeviceSnapshot`] by reference, encoded exactly as one (postcard
/// writes `&str` as `String` and slices as `Vec`).
#[derive(Serialize)]
struct OpenPart<'a> {
    id: &'a str,
    max_ts: i64,
    last_seen_ms: i64,
    signals: &'a [String],
    open: &'a [WindowSnapshot],
    closed: &'a [WindowSnapshot],
}

/// Two independently seeded 64-bit hashes: tells whether a device's closed
/// windows changed since they were last written, and whether a journal file
/// is the one its marker describes.
fn hash128(bytes: &[u8]) -> u128 {
    use std::hash::BuildHasher;
    let a = foldhash::quality::FixedState::with_seed(0x636c_6f73_6564_0001).hash_one(bytes);
    let b = foldhash::quality::FixedState::with_seed(0x636c_6f73_6564_0002).hash_one(bytes);
    (u128::from(a) << 64) | u128::from(b)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(v).map_err(StateError::Encode)
}

fn decode<'a, T: Deserialize<'a>>(tree: &'static str, key: &[u8], v: &'a [u8]) -> Result<T, StateError> {
    postcard::from_bytes(v).map_err(corrupt(tree, key))
}

/// The error for a record of `tree` under `key` that does not decode.
fn corrupt<'k>(tree: &'static str, key: &'k [u8]) -> impl Fn(postcard::Error) -> StateError + Copy + 'k {
    move |source| StateError::Corrupt { tree, key: String::from_utf8_lossy(key).into_owned(), source }
}

/// sled's page cache (its default is 1 GiB). The daemon reads the state
/// only at a restart and the history for the dashboard; what it writes
/// (journal blobs, window records) is never read back while it runs, yet
/// sled caches it. With 64 MiB the 10,000-device soak held ~200 MB, with
/// 8 MiB ~100 MB before windows close; checkpoints took 25-50 ms either way
/// (benches/RESULTS.md).
const CACHE_BYTES: u64 = 8 << 20;

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StateError> {
        let open_err = |source| StateError::Open { dir: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        let journal_dir = dir.join("journal");
        // After a crash sled reads back its log written since it last
        // opened, as much as its whole file: the journal files are read on
        // the other core meanwhile, so that the restore finds them in the
        // page cache (benches/RESULTS.md, 32 and 35).
        let early = {
            let d = journal_dir.clone();
            std::thread::Builder::new().name("journal-read".into()).spawn(move || read_ahead(&d)).ok()
        };
        // Checkpoints flush explicitly; the background flush only bounds
        // how much of the outbox a crash can make us send twice.
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(1000))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(open_err)?;
        if let Some(t) = early {
            let _ = t.join();
        }
        let meta = db.open_tree("meta")?;
        let found =
            meta.get("layout")?.map(|v| <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes).unwrap_or(u32::MAX));
        if let Some(found) = found.filter(|&f| !(1..=LAYOUT).contains(&f)) {
            return Err(StateError::Layout { dir: dir.to_owned(), found });
        }
        std::fs::create_dir_all(&journal_dir).map_err(|source| StateError::File {
            what: "create",
            path: journal_dir.clone(),
            source,
        })?;
        // A new database, or an older layout becoming this one (only with
        // the directory there): a faultline that reads an older layout
        // must not open a database whose journal it cannot read.
        if found != Some(LAYOUT) {
            meta.insert("layout", &LAYOUT.to_be_bytes())?;
            db.flush()?;
        }
        let journal_files = db.open_tree("journal_files")?;
        remove_orphans(&journal_dir, &journal_files)?;
        let alerts = open_alerts(&db)?;
        let (alert_count, cleared_alerts) = alert_index(&alerts)?;
        let (devices, closed, alert_state) =
            (db.open_tree("devices")?, db.open_tree("closed")?, db.open_tree("alert_state")?);
        let legacy_devices = !devices.is_empty() || !closed.is_empty();
        let legacy_states = !alert_state.is_empty();
        Ok(Store {
            dir: dir.to_owned(),
            devices,
            closed,
            journal: db.open_tree("journal")?,
            journal_files,
            journal_dir,
            legacy_devices: std::sync::atomic::AtomicBool::new(legacy_devices),
            legacy_states: std::sync::atomic::AtomicBool::new(legacy_states),
            window_starts: std::sync::Mutex::new(None),
            window_history: std::sync::atomic::AtomicUsize::new(WINDOWS_PER_DEVICE),
            window_total: std::sync::atomic::AtomicUsize::new(WINDOWS_TOTAL),
            window_devices: std::sync::atomic::AtomicUsize::new(1),
            alert_state,
            alert_count: std::sync::atomic::AtomicUsize::new(alert_count),
            alert_trim_at: std::sync::atomic::AtomicUsize::new(ALERT_HISTORY),
            cleared_alerts: std::sync::Mutex::new(cleared_alerts),
            alerts,
            names: names::FeatureNames::open(&db)?,
            windows: open_history(&db)?,
            pending_windows: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            late: db.open_tree("late")?,
            quarantine: db.open_tree("quarantine")?,
            labels: db.open_tree("labels")?,
            positions: db.open_tree("positions")?,
            outbox: db.open_tree("outbox")?,
            db,
        })
    }

    /// Whether an older version's device records are still in the trees
    /// (`devices` and `closed`; `alert_state`): the next checkpoint should
    /// be full, and hold every alert state, so that the trees can go.
    pub fn legacy(&self) -> (bool, bool) {
        (self.legacy_devices.load(Ordering::Relaxed), self.legacy_states.load(Ordering::Relaxed))
    }

    /// Windows kept per device and over all devices from now on
    /// (`limits.window_history`, `limits.window_history_total`); a longer
    /// history is cut at each device's next window.
    pub fn set_window_history(&self, per_device: usize, total: usize) {
        self.window_history.store(per_device, Ordering::Relaxed);
        self.window_total.store(total, Ordering::Relaxed);
    }

    /// How many devices share the total window history (the devices the
    /// window engine tracks; a forgotten device's history is removed).
    pub fn set_window_devices(&self, n: usize) {
        self.window_devices.store(n.max(1), Ordering::Relaxed);
    }

    /// Window starts the history keeps now: each device keeps its windows
    /// of the newest this many starts (of any device).
    fn window_keep(&self) -> usize {
        let total = self.window_total.load(Ordering::Relaxed) / self.window_devices.load(Ordering::Relaxed);
        self.window_history.load(Ordering::Relaxed).min(total)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads everything a restart needs.
    pub fn restore(&self) -> Result<Restored, StateError> {
        let mut positions = Vec::new();
        for kv in self.positions.iter() {
            let (k, v) = kv?;
            positions.push((k.to_vec(), v.to_vec()));
        }
        // Snapshots, closed windows and alert states: an older version's
        // trees, then what the journal holds that is newer than the tree's
        // snapshot of the device (a crash may have come between a commit
        // and the trees' updates). Each device's latest records are copied
        // into two buffers, to be decoded as they are restored.
        let mut held: std::collections::BTreeMap<std::sync::Arc<str>, Held> = std::collections::BTreeMap::new();
        let (mut windows, mut states) = (Vec::new(), Vec::new());
        let keep = |buffer: &mut Vec<u8>, from: Origin, v: &[u8]| {
            let at = buffer.len();
            buffer.extend_from_slice(v);
            Some(Bytes { from, bytes: at..buffer.len() })
        };
        let mut tree_seqs = std::collections::HashMap::new();
        let mut next_seq = 0u64;
        for kv in self.devices.iter() {
            let (k, v) = kv?;
            let (d, seq) = decode_snapshot("devices", &k, &v)?;
            next_seq = next_seq.max(seq.saturating_add(1));
            tree_seqs.insert(d.id.clone(), seq);
            held_of(&mut held, &d.id).snapshot = keep(&mut windows, Origin::Tree("devices"), &v);
        }
        for kv in self.closed.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k);
            held_of(&mut held, &id).closed = keep(&mut windows, Origin::Tree("closed"), &v);
        }
        for kv in self.alert_state.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k);
            held_of(&mut held, &id).alert = keep(&mut states, Origin::Tree("alert_state"), &v);
        }
        // Layout 1's blobs (in the `journal` tree) and the files, oldest
        // first, read one at a time, twice: once to find each device's
        // latest records and the entries that count, then again to decode
        // those and copy these. Holding all of them at once made most of
        // the restore's peak (93 of 190 MB after a crash under load, benches/RESULTS.md,
        // 35).
        let mut sources: Vec<(u64, Option<sled::IVec>)> = Vec::new();
        for k in self.journal.iter().keys() {
            sources.push((seq_of(&k?), None));
        }
        for kv in self.journal_files.iter() {
            let (k, marker) = kv?;
            sources.push((seq_of(&k), Some(marker)));
        }
        sources.sort_by_key(|(seq, _)| *seq);
        if let Some((seq, _)) = sources.last() {
            next_seq = next_seq.max(seq.saturating_add(1));
        }
        let mut file = Vec::new();
        let mut tree_blob = sled::IVec::default();
        let read = |i: usize, file: &mut Vec<u8>, tree_blob: &mut sled::IVec| -> Result<(), StateError> {
            let (key, marker) = &sources[i];
            match marker {
                Some(m) => self.read_journal_file(*key, m, file),
                None => {
                    *tree_blob = self.journal.get(key.to_be_bytes())?.unwrap_or_default();
                    Ok(())
                }
            }
        };
        let mut index: std::collections::HashMap<std::sync::Arc<str>, usize, foldhash::fast::RandomState> =
            Default::default();
        let mut found: Vec<Latest> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut ordinal = 0;
        for i in 0..sources.len() {
            read(i, &mut file, &mut tree_blob)?;
            let key = sources[i].0;
            let blob: &[u8] = if sources[i].1.is_some() { &file } else { &tree_blob };
            let at_of = |part: &[u8]| part.as_ptr() as usize - blob.as_ptr() as usize;
            let here = |part: &[u8]| at_of(part)..at_of(part) + part.len();
            let newer = |device: &str| tree_seqs.get(device).is_none_or(|s| *s < key);
            let groups =
                journal::groups(blob).map_err(|source| StateError::Journal { key, device: String::new(), source })?;
            for g in groups {
                ordinal += 1;
                let device = g.device();
                let at = match index.get(device) {
                    Some(&at) => at,
                    None => {
                        let name: std::sync::Arc<str> = std::sync::Arc::from(device);
                        index.insert(name.clone(), found.len());
                        found.push(Latest::new(name));
                        found.len() - 1
                    }
                };
                let l = &mut found[at];
                match g {
                    journal::Group::Entries { entries: e, .. } => {
                        pending.push(Pending { ordinal, source: i, at, bytes: here(e) })
                    }
                    journal::Group::AlertState { state, .. } => {
                        l.alert = state.map_or(Rec::Gone, |v| Rec::At(i, here(v)))
                    }
                    // What the device had before it was forgotten went with
                    // it (the trees' records went in this checkpoint's
                    // transaction). A file's snapshots carry its number.
                    journal::Group::Forgotten { .. } => {
                        l.forgotten = ordinal;
                        let seq = match l.snapshot {
                            Rec::Kept => tree_seqs.get(device).copied(),
                            Rec::Gone => None,
                            Rec::At(j, _) => Some(sources[j].0),
                        };
                        if seq.is_none_or(|s| s < key) {
                            (l.snapshot, l.closed) = (Rec::Gone, Rec::Gone);
                        }
                    }
                    journal::Group::Snapshot { record, .. } if newer(device) => {
                        l.snapshot = Rec::At(i, here(record));
                        l.snapshot_seq = Some(snapshot_seq_of(record).unwrap_or(0));
                    }
                    journal::Group::Closed { record, .. } if newer(device) => l.closed = Rec::At(i, here(record)),
                    _ => {}
                }
            }
        }
        // What to take from each source, in order.
        let mut takes: Vec<(usize, Take, std::ops::Range<usize>)> = Vec::new();
        for (at, l) in found.iter_mut().enumerate() {
            // (A device left with no records is dropped at the end.)
            let h = held_of(&mut held, &l.device);
            match &l.snapshot {
                Rec::Kept => l.snapshot_seq = h.snapshot.as_ref().and(tree_seqs.get(&*l.device).copied()),
                Rec::Gone => {
                    l.snapshot_seq = None;
                    h.snapshot = None;
                }
                Rec::At(i, bytes) => takes.push((*i, Take::Snapshot(at), bytes.clone())),
            }
            match &l.closed {
                Rec::Kept => {}
                Rec::Gone => h.closed = None,
                Rec::At(i, bytes) => takes.push((*i, Take::Closed(at), bytes.clone())),
            }
            match &l.alert {
                Rec::Kept => {}
                Rec::Gone => h.alert = None,
                Rec::At(i, bytes) => takes.push((*i, Take::Alert(at), bytes.clone())),
            }
        }
        let (mut windows_len, mut states_len) = (0, 0);
        for (_, take, bytes) in &takes {
            match take {
                Take::Alert(_) => states_len += bytes.len(),
                _ => windows_len += bytes.len(),
            }
        }
        windows.reserve_exact(windows_len);
        states.reserve_exact(states_len);
        // Entries of a device before it was forgotten belong to a snapshot
        // that went with it: only what follows its last "forgotten" counts.
        let mut entries_len = 0;
        for p in pending {
            let l = &found[p.at];
            if !(l.snapshot_seq.is_some_and(|s| s >= sources[p.source].0) || l.forgotten > p.ordinal) {
                entries_len += p.bytes.len();
                takes.push((p.source, Take::Entries(p.at), p.bytes));
            }
        }
        // Stable: the entries stay in order.
        takes.sort_by_key(|(i, _, _)| *i);
        let mut entries = Vec::with_capacity(entries_len);
        let mut replay = Vec::new();
        let mut last = None;
        for (i, take, bytes) in takes {
            if last != Some(i) {
                read(i, &mut file, &mut tree_blob)?;
                last = Some(i);
            }
            let key = sources[i].0;
            let blob: &[u8] = if sources[i].1.is_some() { &file } else { &tree_blob };
            let part = blob.get(bytes).unwrap_or_default();
            let from = Origin::Journal(key);
            match take {
                Take::Snapshot(at) => held_of(&mut held, &found[at].device).snapshot = keep(&mut windows, from, part),
                Take::Closed(at) => held_of(&mut held, &found[at].device).closed = keep(&mut windows, from, part),
                Take::Alert(at) => held_of(&mut held, &found[at].device).alert = keep(&mut states, from, part),
                Take::Entries(at) => {
                    let from = entries.len();
                    entries.extend_from_slice(part);
                    replay.push(ReplayGroup {
                        seq: key,
                        device: found[at].device.clone(),
                        entries: from..entries.len(),
                    });
                }
            }
        }
        drop(file);
        Ok(Restored {
            held: held.into_values().filter(|h| h.snapshot.is_some() || h.alert.is_some()).collect(),
            windows,
            states,
            oldest_journal: sources.first().map(|(seq, _)| *seq),
            replay,
            entries,
            next_seq,
            positions,
            outbox: decode_all(&self.outbox, "outbox", &[])?.into_iter().map(|(k, r)| (seq_of(&k), r)).collect(),
            late: decode_all(&self.late, "late", &[])?.into_iter().map(|(k, t)| (seq_of(&k), t)).collect(),
            quarantine: decode_all(&self.quarantine, "quarantine", &[])?
                .into_iter()
                .map(|(k, t)| (seq_of(&k), t))
                .collect(),
        })
    }

    /// Writes a checkpoint atomically and flushes it to disk.
    pub fn checkpoint(&self, c: &Checkpoint<'_>) -> Result<Written, StateError> {
        let mut w = Written::default();
        let late = encode_log(&c.late, &mut w)?;
        let quarantine = encode_log(&c.quarantine, &mut w)?;
        let from = c.devices.journal_from.to_be_bytes();
        let stale_blobs: Vec<sled::IVec> = self.journal.range(..from).keys().collect::<Result<_, _>>()?;
        let stale: Vec<sled::IVec> = self.journal_files.range(..from).keys().collect::<Result<_, _>>()?;
        let (outbox_gone, outbox_added) = self.outbox_changes(&c.outbox, &mut w)?;
        // The history records not written yet (the daemon writes them as
        // it makes them), before the transaction.
        let h = self.write_history(&c.alerts, &c.windows)?;
        w.records += h.records;
        w.bytes += h.bytes;
        self.write_window_groups(c.seq)?;
        // The late store and the quarantine are kept for inspection: not
        // state a restart must have exactly as checkpointed, so they go
        // before the transaction, a record at a time. Inside it, a full
        // late store's turnover (10,000 late readings a second replace all
        // 10,000 it keeps, at every checkpoint) held sled's copy of every
        // leaf it touched: RSS 150-175 MB (benches/RESULTS.md, 33). A
        // crash before the commit leaves records of readings that come
        // again; a failed checkpoint's are written again by the next.
        write_log(&self.late, c.late.removed.clone(), &late)?;
        write_log(&self.quarantine, c.quarantine.removed.clone(), &quarantine)?;
        // The journal file before the transaction that makes it count.
        let marker = self.write_journal(c, &mut w)?;
        // Records: the trees' (those written after the commit too), and
        // the journal entries as one.
        w.records += 2 * (c.devices.updated.len() + c.devices.to_snapshot.len())
            + usize::from(!c.devices.logged.is_empty())
            + c.devices.forgotten.len()
            + c.alert_states.len()
            + c.positions.len()
            + c.positions_removed.len()
            + late.len()
            + quarantine.len()
            + outbox_gone.len()
            + outbox_added.len();
        let trees = (&self.devices, &self.closed, &self.journal, &self.journal_files, &self.positions, &self.outbox);
        let result: Result<(), TransactionError<()>> = trees.transaction(|(d, cl, jt, jf, p, o)| {
            for k in &stale_blobs {
                jt.remove(k)?;
            }
            for k in &stale {
                jf.remove(k)?;
            }
            if let Some(m) = &marker {
                jf.insert(&c.seq.to_be_bytes(), m.as_slice())?;
            }
            for id in &c.devices.forgotten {
                d.remove(id.as_bytes())?;
                cl.remove(id.as_bytes())?;
            }
            for (k, v) in &c.positions {
                p.insert(k.as_slice(), v.as_slice())?;
            }
            for k in &c.positions_removed {
                p.remove(k.as_slice())?;
            }
            for k in &outbox_gone {
                o.remove(k)?;
            }
            for (k, v) in &outbox_added {
                o.insert(k, v.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        let committed = match result {
            Ok(()) => self.db.flush().map(|_| ()),
            Err(TransactionError::Storage(e)) => Err(e),
            Err(TransactionError::Abort(())) => unreachable!("the checkpoint transaction never aborts"),
        };
        if let Err(e) = committed {
            // Without its marker the file does not count; the next open
            // would remove it, this saves the space until then.
            if marker.is_some() {
                let _ = self.remove_journal_file(c.seq);
            }
            return Err(e.into());
        }
        for k in &stale {
            self.remove_journal_file(seq_of(k))?;
        }
        // The journal files are the only copy of the snapshots, closed
        // windows and alert states (module docs). The trees of an older
        // version go once a checkpoint holds what they held.
        let trees = self.legacy_devices.load(Ordering::Relaxed) && c.full;
        let states = self.legacy_states.load(Ordering::Relaxed) && c.all_states;
        if trees {
            self.devices.clear()?;
            self.closed.clear()?;
        }
        if states {
            self.alert_state.clear()?;
        }
        if trees || states {
            self.db.flush()?;
            self.legacy_devices.fetch_and(!trees, Ordering::Relaxed);
            self.legacy_states.fetch_and(!states, Ordering::Relaxed);
            tracing::info!("device records of an older version now in the journal files, their trees emptied");
        }
        // A forgotten device's history goes with it: otherwise devices that
        // come and go would grow the history without bound.
        if !c.devices.forgotten.is_empty() {
            let starts = self.starts_newest_first()?;
            let gone: Vec<&str> = c.devices.forgotten.iter().map(|d| &**d).collect();
            self.cut_devices(&gone, &starts)?;
        }
        Ok(w)
    }

    /// Writes checkpoint `c`'s journal file: the devices forgotten, the
    /// snapshots, each with its closed windows, the journal entries, the
    /// alert states (module docs). It goes to the file a chunk at a time as
    /// it is made: at a window close it is a few MB, which the checkpoint
    /// held whole, twice while it grew. Returns the file's marker (`None`:
    /// nothing to write, no file).
    fn write_journal(&self, c: &Checkpoint<'_>, w: &mut Written) -> Result<Option<Marker>, StateError> {
        if c.devices.is_empty() && c.alert_states.is_empty() {
            return Ok(None);
        }
        let path = self.journal_path(c.seq);
        let err = |what| {
            let path = path.clone();
            move |source| StateError::File { what, path, source }
        };
        let done =
            std::fs::File::create(&path).map_err(err("create")).and_then(|f| {
                let mut file = JournalFile { f, hash: ChunkHash::default() };
                self.fill_journal(c, &mut file).map_err(|e| e.at(&path))?;
                file.f.sync_data().map_err(err("sync"))?;
                // The file's name must be on disk too before its marker is.
                std::fs::File::open(&self.journal_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|source| StateError::File { what: "sync", path: self.journal_dir.clone(), source })?;
                w.bytes += file.hash.len as usize;
                Ok(Some(file.hash.marker()))
            });
        if done.is_err() {
            // A checkpoint that fails is tried again under a new number:
            // without this, a full disk would leave a file a second.
            let _ = self.remove_journal_file(c.seq);
        }
        done
    }

    fn fill_journal(&self, c: &Checkpoint<'_>, file: &mut JournalFile) -> Result<(), JournalFault> {
        let mut blob = journal::BlobWriter::default();
        let mut v = Vec::new();
        let mut write = |chunk: &[u8]| file.write(chunk);
        for id in &c.devices.forgotten {
            blob.forgotten(id);
        }
        // The snapshots to take are taken one at a time, each written and
        // dropped before the next.
        let taken = c.devices.to_snapshot.iter().map(|id| {
            c.engine
                .and_then(|e| e.snapshot_of(id))
                .map(std::borrow::Cow::Owned)
                .ok_or_else(|| StateError::NoSnapshot(id.to_string()))
        });
        for d in c.devices.updated.iter().map(|d| Ok(std::borrow::Cow::Borrowed(d))).chain(taken) {
            let d = d?;
            // Before the snapshot, always (none is an empty list): a
            // restore takes the closed windows a snapshot's file has.
            encode_closed(&d.closed, &mut v)?;
            blob.closed(&d.id, &v);
            encode_open(&d, c.seq, &mut v)?;
            blob.snapshot(&d.id, &v);
            blob.drain(&mut write)?;
        }
        for (id, e) in &c.devices.logged {
            blob.entries(id, e);
            blob.drain(&mut write)?;
        }
        for (id, (s, b)) in &c.alert_states {
            let present = encode_state(*s, *b, &mut v)?;
            blob.alert_state(id, present.then_some(v.as_slice()));
            blob.drain(&mut write)?;
        }
        blob.finish(&mut write)?;
        Ok(())
    }

    /// Writes window and alert records (the latest of each alert) and
    /// trims both histories. History, not state: outside any checkpoint's
    /// transaction and one record at a time (sled copies a leaf for every
    /// insert and frees the old copies only after the operation, so the
    /// 10,000 windows that close together held ~100 MB inside one
    /// transaction). A crash before the checkpoint that covers them means
    /// the readings come again and make the same records under the same
    /// keys (window start, `alert_id`), and the policy state that made an
    /// alert is in the checkpoint.
    pub fn write_history(&self, alerts: &[Alert], windows: &[WindowRecord]) -> Result<Written, StateError> {
        let mut w = Written::default();
        if self.window_keep() > 0 && !windows.is_empty() {
            let mut pending = self.pending_windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in windows {
                let v = self.encode_window(r)?;
                w.bytes += v.len();
                history::push(pending.entry((r.start_ms, history::bucket(&r.device_id))).or_default(), &v);
            }
            w.records += windows.len();
        }
        for a in alerts {
            let v = self.encode_alert(a)?;
            w.bytes += v.len();
            if self.alerts.insert(alert_key(&a.alert_id), v)?.is_none() {
                self.alert_count.fetch_add(1, Ordering::Relaxed);
            }
            if a.status == crate::alerts::Status::Cleared {
                self.cleared_alerts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((a.updated_at_ms, a.alert_id.as_str().into()));
            }
        }
        w.records += alerts.len();
        if !windows.is_empty() {
            self.trim_windows(windows)?;
        }
        if !alerts.is_empty() {
            self.trim_alerts()?;
        }
        Ok(w)
    }

    /// Keeps the windows of the newest [`Store::window_keep`] starts,
    /// with `added` just written. The history may hold [`TRIM_SLACK`] more
    /// starts before the oldest go.
    fn trim_windows(&self, added: &[WindowRecord]) -> Result<(), StateError> {
        let keep = self.window_keep();
        self.with_starts(|starts| {
            if keep > 0 {
                starts.extend(added.iter().map(|r| r.start_ms));
            }
            if starts.len() <= keep + TRIM_SLACK && (keep > 0 || starts.is_empty()) {
                return Ok(());
            }
            while starts.len() > keep {
                let Some(oldest) = starts.pop_first() else { break };
                self.cut_start(oldest)?;
            }
            Ok(())
        })
    }

    /// Writes the window records grouped since the last call, each group
    /// under checkpoint number `seq` (after what the key holds already: a
    /// number used again after a crash).
    fn write_window_groups(&self, seq: u64) -> Result<(), StateError> {
        let mut pending = self.pending_windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(((start, bucket), group)) = pending.pop_first() {
            let k = history::key(start, bucket, seq);
            let done = match self.windows.get(k) {
                Ok(Some(old)) => {
                    let mut v = Vec::with_capacity(old.len() + group.len());
                    v.extend_from_slice(&old);
                    v.extend_from_slice(&group);
                    self.windows.insert(k, v)
                }
                Ok(None) => self.windows.insert(k, group.as_slice()),
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                // Kept for the next checkpoint.
                pending.insert((start, bucket), group);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Removes the windows of one start, a batch at a time.
    fn cut_start(&self, start_ms: i64) -> Result<(), StateError> {
        self.pending_windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|&(start, _), _| start != start_ms);
        let prefix = start_bytes(start_ms);
        loop {
            let keys: Vec<sled::IVec> =
                self.windows.scan_prefix(prefix).keys().take(CUT_BATCH).collect::<Result<_, _>>()?;
            // One remove at a time: in a batch sled held a copy of a leaf
            // for every key until the end.
            for k in &keys {
                self.windows.remove(k)?;
            }
            if keys.len() < CUT_BATCH {
                return Ok(());
            }
        }
    }

    /// Removes every window of the devices `gone`: their buckets' groups
    /// at every start of `starts` (the history's) are written again
    /// without them.
    fn cut_devices(&self, gone: &[&str], starts: &[i64]) -> Result<(), StateError> {
        let buckets: std::collections::BTreeSet<u16> = gone.iter().map(|d| history::bucket(d)).collect();
        let mut pending = self.pending_windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for &start in starts {
            for &b in &buckets {
                if let Some(g) = pending.get_mut(&(start, b)) {
                    if let Some(kept) = history::without(b"pending", g, gone)? {
                        *g = kept;
                    }
                }
                for kv in self.windows.scan_prefix(history::prefix(start, b)) {
                    let (k, v) = kv?;
                    match history::without(&k, &v, gone)? {
                        Some(kept) if kept.is_empty() => drop(self.windows.remove(k)?),
                        Some(kept) => drop(self.windows.insert(k, kept)?),
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the window starts in the history, found at the first
    /// call with one seek per start (not a read of the whole tree, which
    /// would slow a restart down with the history's size).
    fn with_starts<R>(
        &self,
        f: impl FnOnce(&mut std::collections::BTreeSet<i64>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let mut guard = self.window_starts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let starts = match &mut *guard {
            Some(s) => s,
            None => guard.insert(self.read_starts()?),
        };
        f(starts)
    }

    /// The distinct starts in `window_history`, from the tree.
    fn read_starts(&self) -> Result<std::collections::BTreeSet<i64>, StateError> {
        let mut starts = std::collections::BTreeSet::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(k) = self.windows.range(from.as_slice()..).keys().next() {
            let k = k?;
            match history_start(&k) {
                Some(start) => {
                    starts.insert(start);
                    match start.checked_add(1) {
                        Some(n) => from = start_bytes(n).to_vec(),
                        None => break,
                    }
                }
                // Not a key of ours (shorter than a start): past it.
                None => {
                    from = k.to_vec();
                    from.push(0);
                }
            }
        }
        Ok(starts)
    }

    fn starts_newest_first(&self) -> Result<Vec<i64>, StateError> {
        self.with_starts(|s| Ok(s.iter().rev().copied().collect()))
    }

    /// Keeps at most [`ALERT_HISTORY`] alerts, dropping the oldest cleared
    /// ones (down to 90 %, so this runs seldom). Alerts not cleared stay.
    fn trim_alerts(&self) -> Result<(), StateError> {
        // Counted, not `Tree::len`: that reads the whole tree, through
        // sled's cache, and this runs whenever alerts were written.
        if self.alert_count.load(Ordering::Relaxed) <= self.alert_trim_at.load(Ordering::Relaxed) {
            return Ok(());
        }
        let len = self.alert_count.load(Ordering::Relaxed);
        let excess = len.saturating_sub(ALERT_HISTORY * 9 / 10);
        let mut cleared = self.cleared_alerts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cleared.len() > 2 * ALERT_HISTORY {
            // Entries of alerts changed again since pile up only between
            // trims; past this many, from the tree again.
            *cleared = alert_index(&self.alerts)?.1;
        }
        let mut removed = 0;
        while removed < excess {
            let Some((t, id)) = cleared.pop_first() else { break };
            // Still cleared, and this its latest change? Otherwise a later
            // entry stands for it, or it is not to go.
            let key = alert_key(&id);
            let Some(v) = self.alerts.get(&key)? else { continue };
            let h: AlertHead<'_> = decode("alert_history", &key, &v)?;
            if h.status != crate::alerts::Status::Cleared || h.updated_at_ms != t {
                continue;
            }
            // One remove at a time: in one batch sled held a copy of a leaf
            // (up to 16 records of ~1.2 KB) for each of the ~1,000 alerts
            // until the end, the largest transient of a 30-minute soak.
            self.alerts.remove(key)?;
            removed += 1;
        }
        drop(cleared);
        let left = len - removed;
        self.alert_count.store(left, Ordering::Relaxed);
        // Alerts not cleared may keep it above the bound: read it all again
        // only after a tenth more, not at every write.
        self.alert_trim_at.store(ALERT_HISTORY.max(left + ALERT_HISTORY / 10), Ordering::Relaxed);
        Ok(())
    }

    /// The `outbox` keys an [`OutboxDelta`] removes (those the tree
    /// holds) and the records it adds, encoded.
    fn outbox_changes(&self, d: &OutboxDelta, w: &mut Written) -> Result<OutboxChanges, StateError> {
        let gone = if d.removed.is_empty() {
            Vec::new()
        } else {
            let (from, to) = (d.removed.start.to_be_bytes(), d.removed.end.to_be_bytes());
            self.outbox.range(from..to).keys().collect::<Result<_, _>>()?
        };
        let mut added = Vec::with_capacity(d.added.len());
        for (seq, r) in &d.added {
            let v = encode(&**r)?;
            w.bytes += v.len();
            added.push((seq.to_be_bytes(), v));
        }
        Ok((gone, added))
    }

    /// Brings the `outbox` tree up to date outside a checkpoint (at
    /// shutdown, once the sink has delivered what it could), and flushes.
    pub fn write_outbox(&self, d: &OutboxDelta) -> Result<(), StateError> {
        let mut w = Written::default();
        let (gone, added) = self.outbox_changes(d, &mut w)?;
        let mut batch = sled::Batch::default();
        for k in gone {
            batch.remove(k);
        }
        for (k, v) in added {
            batch.insert(&k, v);
        }
        self.outbox.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// An `alert_history` record: the postcard [`Alert`] without its
    /// feature values, then, if it has any, postcard `(u64, Vec<f64>)`: the
    /// id of their names in `feature_names` ([`names`]) and the values. An
    /// older faultline reads such a record with no features. With the
    /// names table full and the names not in it, the [`Alert`] as it is,
    /// names and all, as records were before the table.
    fn encode_alert(&self, a: &Alert) -> Result<Vec<u8>, StateError> {
        if a.features.is_empty() {
            return encode(a);
        }
        let Some(id) = self.names.id(a.features.names())? else {
            return encode(a);
        };
        let v = encode(&Alert { features: crate::alerts::Features::default(), ..a.clone() })?;
        postcard::to_extend(&(id, a.features.values()), v).map_err(StateError::Encode)
    }

    /// An `alert_history` record ([`Store::encode_alert`]; older ones hold
    /// the names beside the values). Values whose names are not found read
    /// as no features.
    fn decode_alert(&self, key: &[u8], v: &[u8]) -> Result<Alert, StateError> {
        let (mut a, values) = self.decode_named::<Alert, f64>("alert_history", key, v)?;
        if let Some((names, values)) = values {
            a.features = crate::alerts::Features::new(names, values);
        }
        Ok(a)
    }

    /// A record of `tree` that may end in values stored without their
    /// names ([`Store::encode_alert`], [`Store::encode_window`]): the
    /// record before them, and the values with their names if there are
    /// any and the names are found ([`names::FeatureNames::get`]).
    fn decode_named<T: serde::de::DeserializeOwned, V: serde::de::DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
        v: &[u8],
    ) -> Result<(T, Option<Named<V>>), StateError> {
        let (record, rest) = postcard::take_from_bytes::<T>(v).map_err(corrupt(tree, key))?;
        if rest.is_empty() {
            return Ok((record, None));
        }
        let (id, values): (u64, Vec<V>) = decode(tree, key, rest)?;
        Ok((record, self.names.get(id)?.map(|names| (names, values))))
    }

    /// A `window_groups` record: the postcard [`WindowRecord`] without its
    /// signals, then, if it has any, postcard `(u64, Vec<(f64, f64)>)`: the
    /// id of the signals' names in `feature_names` ([`names`]) and each
    /// one's mean and deviation. An older faultline reads such a record
    /// with no signals. With the names table full and the names not in
    /// it, the [`WindowRecord`] as it is, names and all.
    fn encode_window(&self, r: &WindowRecord) -> Result<Vec<u8>, StateError> {
        let id = if r.signals.is_empty() {
            None
        } else {
            match self.names.id_of(r.signals.iter().map(|(n, _, _)| n.as_str()), None)? {
                Some(id) => Some(id),
                // The names table full: the record as before it, names and all.
                None => return encode(r),
            }
        };
        let head = WindowHead {
            device_id: &r.device_id,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            readings: r.readings,
            score: r.score,
            model: &r.model,
            model_version: &r.model_version,
            update: r.update,
            signals: &[],
        };
        let v = encode(&head)?;
        match id {
            Some(id) => postcard::to_extend(&(id, MeansAndDeviations(&r.signals)), v).map_err(StateError::Encode),
            None => Ok(v),
        }
    }

    /// A `window_groups` record ([`Store::encode_window`]; older ones hold
    /// the names beside the values). Values whose names are not found read
    /// as no signals.
    fn decode_window(&self, key: &[u8], v: &[u8]) -> Result<WindowRecord, StateError> {
        let (mut w, values) = self.decode_named::<WindowRecord, (f64, f64)>("window_groups", key, v)?;
        if let Some((names, values)) = values {
            w.signals = names.iter().zip(values).map(|(n, (m, sd))| (n.clone(), m, sd)).collect();
        }
        Ok(w)
    }

    /// Latest record of every alert (history), by the start in the id, then id.
    pub fn alerts(&self) -> Result<Vec<Alert>, StateError> {
        self.alerts_where(|_| true)
    }

    /// The latest record of alert `alert_id`, if the history has it.
    pub fn alert(&self, alert_id: &str) -> Result<Option<Alert>, StateError> {
        let key = alert_key(alert_id);
        self.alerts.get(&key)?.map(|v| self.decode_alert(&key, &v)).transpose()
    }

    /// The alerts whose head `keep` chooses, by the start in the id, then
    /// id, decoded in the same pass.
    pub fn alerts_where(&self, keep: impl Fn(&AlertHead<'_>) -> bool) -> Result<Vec<Alert>, StateError> {
        let mut out = Vec::new();
        for kv in self.alerts.iter() {
            let (k, v) = kv?;
            if keep(&decode("alert_history", &k, &v)?) {
                out.push(self.decode_alert(&k, &v)?);
            }
        }
        Ok(out)
    }

    /// Calls `f` with the key and the head of every alert in the history,
    /// by the start in the id, then id, decoding nothing past the head.
    pub fn scan_alert_heads(&self, mut f: impl FnMut(&sled::IVec, AlertHead<'_>)) -> Result<(), StateError> {
        for kv in self.alerts.iter() {
            let (k, v) = kv?;
            f(&k, decode("alert_history", &k, &v)?);
        }
        Ok(())
    }

    /// The alerts whose head `keep` chooses, by their latest change, newest
    /// first (ties by id): how many there are, and those from `skip` on, at
    /// most `take`. Only those are decoded in full, so a page of the
    /// dashboard costs a page, not the history.
    pub fn alerts_page(
        &self,
        keep: impl Fn(&AlertHead<'_>) -> bool,
        skip: usize,
        take: usize,
    ) -> Result<(usize, Vec<Alert>), StateError> {
        let mut chosen: Vec<(std::cmp::Reverse<i64>, sled::IVec)> = Vec::new();
        self.scan_alert_heads(|k, h| {
            if keep(&h) {
                chosen.push((std::cmp::Reverse(h.updated_at_ms), k.clone()));
            }
        })?;
        chosen.sort();
        let mut page = Vec::with_capacity(take.min(chosen.len().saturating_sub(skip)));
        for (_, k) in chosen.iter().skip(skip).take(take) {
            // Trimmed since the scan: the page is one shorter.
            if let Some(v) = self.alerts.get(k)? {
                page.push(self.decode_alert(k, &v)?);
            }
        }
        Ok((chosen.len(), page))
    }

    /// The last `limit` windows of a device, newest first: one read per
    /// start the history holds, newest first, until `limit` are found (no
    /// reverse iteration: sled 0.34's can panic on some tree shapes,
    /// "fucked up tree traversal next_back").
    /// The groups and the records not written yet count, the last record
    /// of a window the one that counts.
    pub fn windows(&self, device_id: &str, limit: usize) -> Result<Vec<WindowRecord>, StateError> {
        let mut out = Vec::new();
        let bucket = history::bucket(device_id);
        let mut found = Vec::new();
        for start in self.starts_newest_first()? {
            if out.len() >= limit {
                break;
            }
            found.clear();
            for kv in self.windows.scan_prefix(history::prefix(start, bucket)) {
                let (k, v) = kv?;
                history::of_device(&k, &v, device_id, &mut found, |k, r| self.decode_window(k, r))?;
            }
            let pending = self.pending_windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(g) = pending.get(&(start, bucket)) {
                history::of_device(b"pending", g, device_id, &mut found, |k, r| self.decode_window(k, r))?;
            }
            drop(pending);
            out.extend(found.pop());
        }
        Ok(out)
    }

    /// Every kept window of every device, in time then device order.
    pub fn all_windows(&self) -> Result<Vec<WindowRecord>, StateError> {
        let mut all = std::collections::BTreeMap::new();
        let mut add = |k: &[u8], v: &[u8]| {
            for r in history::records(v) {
                let w = self.decode_window(k, r.map_err(|e| history::corrupt(k, e))?)?;
                all.insert((w.start_ms, w.device_id.clone()), w);
            }
            Ok::<_, StateError>(())
        };
        for kv in self.windows.iter() {
            let (k, v) = kv?;
            add(&k, &v)?;
        }
        for g in self.pending_windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            add(b"pending", g)?;
        }
        Ok(all.into_values().collect())
    }

    /// Records maintenance feedback: `[start, end)` of a device had a fault or not.
    pub fn put_label(&self, device_id: &str, start_ms: i64, end_ms: i64, fault: bool) -> Result<(), StateError> {
        self.labels.insert(window_key(device_id, start_ms), encode(&(end_ms, fault))?)?;
        Ok(())
    }

    /// Labels of a device: (start, end, fault), oldest first.
    pub fn labels(&self, device_id: &str) -> Result<Vec<(i64, i64, bool)>, StateError> {
        let all: Vec<(sled::IVec, (i64, bool))> = decode_all(&self.labels, "labels", &device_prefix(device_id))?;
        Ok(all.into_iter().map(|(k, (end, fault))| (start_of(&k), end, fault)).collect())
    }

    /// History records stored with their names since the store opened,
    /// the names table being full ([`names::MAX_LISTS`]).
    pub fn names_inline(&self) -> u64 {
        self.names.inline()
    }

    /// Size of the database on disk, bytes, journal files included.
    pub fn size_on_disk(&self) -> u64 {
        let files: u64 = std::fs::read_dir(&self.journal_dir)
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        self.db.size_on_disk().unwrap_or(0) + files
    }

    /// Checkpoint `seq`'s journal file.
    fn journal_path(&self, seq: u64) -> PathBuf {
        self.journal_dir.join(format!("{seq:016x}"))
    }

    /// Reads checkpoint `seq`'s journal file into `blob` and checks it
    /// against its marker `m`.
    fn read_journal_file(&self, seq: u64, m: &[u8], blob: &mut Vec<u8>) -> Result<(), StateError> {
        use std::io::Read;
        let path = self.journal_path(seq);
        blob.clear();
        std::fs::File::open(&path).and_then(|mut f| f.read_to_end(blob)).map_err(|source| StateError::File {
            what: "read",
            path: path.clone(),
            source,
        })?;
        let fits = match m.len() {
            MARKER_BYTES => m[0] == MARKER_CHUNKED && ChunkHash::of(blob).marker().as_slice() == m,
            // Layout 2's: the whole file hashed at once.
            OLD_MARKER_BYTES => old_marker(blob).as_slice() == m,
            _ => false,
        };
        if !fits {
            return Err(StateError::JournalFile { path, seq, dir: self.dir.clone() });
        }
        Ok(())
    }

    /// Removes checkpoint `seq`'s journal file, if it is there.
    fn remove_journal_file(&self, seq: u64) -> Result<(), StateError> {
        let path = self.journal_path(seq);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::File { what: "remove", path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Flushes everything written so far.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush()?;
        Ok(())
    }
}

/// A layout 2 journal file's marker: its length and hash.
fn old_marker(blob: &[u8]) -> [u8; OLD_MARKER_BYTES] {
    let mut m = [0u8; OLD_MARKER_BYTES];
    m[..8].copy_from_slice(&(blob.len() as u64).to_be_bytes());
    m[8..].copy_from_slice(&hash128(blob).to_be_bytes());
    m
}

/// A journal file's length and hash, taken a [`journal::CHUNK`] at a time
/// as it is written: each chunk hashed with the hash so far as the seed
/// (two lanes, like [`hash128`]).
#[derive(Debug, Clone)]
struct ChunkHash {
    len: u64,
    a: u64,
    b: u64,
}

impl Default for ChunkHash {
    fn default() -> Self {
        ChunkHash { len: 0, a: 0x6a6f_7572_6e61_6c01, b: 0x6a6f_7572_6e61_6c02 }
    }
}

impl ChunkHash {
    /// The next chunk: [`journal::CHUNK`] bytes, or fewer for the last.
    fn update(&mut self, chunk: &[u8]) {
        use std::hash::BuildHasher;
        self.a = foldhash::quality::FixedState::with_seed(self.a).hash_one(chunk);
        self.b = foldhash::quality::FixedState::with_seed(self.b).hash_one(chunk);
        self.len += chunk.len() as u64;
    }

    /// Of a whole file, chunk by chunk.
    fn of(blob: &[u8]) -> ChunkHash {
        let mut h = ChunkHash::default();
        for c in blob.chunks(journal::CHUNK) {
            h.update(c);
        }
        h
    }

    fn marker(&self) -> Marker {
        let mut m = [0u8; MARKER_BYTES];
        m[0] = MARKER_CHUNKED;
        m[1..9].copy_from_slice(&self.len.to_be_bytes());
        m[9..17].copy_from_slice(&self.a.to_be_bytes());
        m[17..].copy_from_slice(&self.b.to_be_bytes());
        m
    }
}

/// A journal file being written: its bytes hashed as they go.
struct JournalFile {
    f: std::fs::File,
    hash: ChunkHash,
}

impl JournalFile {
    fn write(&mut self, chunk: &[u8]) -> Result<(), JournalFault> {
        use std::io::Write;
        self.hash.update(chunk);
        self.f.write_all(chunk).map_err(JournalFault::Write)
    }
}

/// What can go wrong while a journal file is filled: a record that does
/// not encode, or the write (the path is added by the caller).
#[derive(Debug)]
enum JournalFault {
    Encode(StateError),
    Write(std::io::Error),
}

impl From<StateError> for JournalFault {
    fn from(e: StateError) -> Self {
        JournalFault::Encode(e)
    }
}

impl JournalFault {
    fn at(self, path: &Path) -> StateError {
        match self {
            JournalFault::Encode(e) => e,
            JournalFault::Write(source) => StateError::File { what: "write", path: path.to_owned(), source },
        }
    }
}

/// A device's `closed` record into `out` (cleared first).
fn encode_closed(closed: &[WindowSnapshot], out: &mut Vec<u8>) -> Result<(), StateError> {
    out.clear();
    postcard::to_io(closed, &mut *out).map_err(StateError::Encode)?;
    Ok(())
}

/// A device's `devices` record, written by checkpoint `seq`, into `out`
/// (cleared first).
fn encode_open(d: &DeviceSnapshot, seq: u64, out: &mut Vec<u8>) -> Result<(), StateError> {
    out.clear();
    let part = OpenPart {
        id: &d.id,
        max_ts: d.max_ts,
        last_seen_ms: d.last_seen_ms,
        signals: &d.signals,
        open: &d.open,
        closed: &[],
    };
    postcard::to_io(&part, &mut *out).map_err(StateError::Encode)?;
    out.extend_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// A device's `alert_state` record into `out` (cleared first); false when
/// it has neither, and the record goes.
fn encode_state(s: Option<&DeviceState>, b: Option<&DeviceBaseline>, out: &mut Vec<u8>) -> Result<bool, StateError> {
    out.clear();
    if s.is_none() && b.is_none() {
        return Ok(false);
    }
    postcard::to_io(s.unwrap_or(&DeviceState::default()), &mut *out).map_err(StateError::Encode)?;
    if let Some(b) = b {
        postcard::to_io(b, &mut *out).map_err(StateError::Encode)?;
    }
    Ok(true)
}

/// Checkpoint number of a journal file's name (16 hex digits).
fn journal_seq(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str().filter(|n| n.len() == 16).and_then(|n| u64::from_str_radix(n, 16).ok())
}

/// Reads every journal file in `dir` and forgets it: the restore finds
/// them in the page cache. A megabyte at a time, whatever their sizes.
fn read_ahead(dir: &Path) {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut buf = vec![0u8; 1 << 20];
    for e in entries.flatten() {
        if journal_seq(&e.file_name()).is_none() {
            continue;
        }
        if let Ok(mut f) = std::fs::File::open(e.path()) {
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// Removes the journal files without a marker: written by a checkpoint
/// whose transaction did not commit (a crash or an error between the two).
/// Files not named by a checkpoint number are not ours and stay.
fn remove_orphans(dir: &Path, markers: &sled::Tree) -> Result<(), StateError> {
    let err = |what, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::File { what, path, source }
    };
    for e in std::fs::read_dir(dir).map_err(err("read", dir))? {
        let e = e.map_err(err("read", dir))?;
        let Some(seq) = journal_seq(&e.file_name()) else { continue };
        if !markers.contains_key(seq.to_be_bytes())? {
            let path = e.path();
            std::fs::remove_file(&path).map_err(err("remove", &path))?;
        }
    }
    Ok(())
}

/// Puts the window state of `r` back into `engine`: each device's snapshot,
/// then the journal entries newer than it, blob by blob, and lets go of
/// them (what is left of `r` for the alert policy is smaller). Returns the
/// devices refused (past `limits.max_devices`) and the entries replayed.
pub fn restore_engine(engine: &mut Engine, r: &mut Restored) -> Result<(usize, usize), StateError> {
    let mut refused = 0;
    for d in r.devices() {
        let (d, seq) = d?;
        if !engine.restore(&d, seq) {
            refused += 1;
        }
    }
    r.windows = Vec::new();
    for h in &mut r.held {
        (h.snapshot, h.closed) = (None, None);
    }
    let replay = std::mem::take(&mut r.replay);
    let entries = std::mem::take(&mut r.entries);
    let replayed = engine
        .replay(replay.iter().map(|g| (&*g.device, g.seq, entries.get(g.entries.clone()).unwrap_or_default())))
        .map_err(|(i, source)| {
            let g = &replay[i];
            StateError::Journal { key: g.seq, device: g.device.to_string(), source }
        })?;
    Ok((refused, replayed))
}

/// Encoded records keyed by sequence number.
type Encoded = Vec<([u8; 8], Vec<u8>)>;

/// A [`LogDelta`]'s removals and its records (encoded) into `tree`.
fn write_log(tree: &sled::Tree, removed: std::ops::Range<u64>, added: &Encoded) -> Result<(), StateError> {
    for seq in removed {
        tree.remove(seq.to_be_bytes())?;
    }
    for (k, v) in added {
        tree.insert(k, v.as_slice())?;
    }
    Ok(())
}

fn encode_log<T: Serialize>(d: &LogDelta<T>, w: &mut Written) -> Result<Encoded, StateError> {
    let mut out = Vec::with_capacity(d.added.len());
    for (seq, t) in &d.added {
        let v = encode(t)?;
        w.bytes += v.len();
        out.push((seq.to_be_bytes(), v));
    }
    Ok(out)
}

/// `outbox` keys to remove, records to insert.
type OutboxChanges = (Vec<sled::IVec>, Vec<([u8; 8], Vec<u8>)>);

fn seq_of(k: &[u8]) -> u64 {
    <[u8; 8]>::try_from(k).map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
/// sled lets go of its file lock shortly after the last handle is
/// dropped (its flusher thread holds one): a reopen in the same process
/// may have to wait.
pub(crate) fn retry<T>(mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if std::time::Instant::now() < deadline && e.contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open alert of device `p1` with one feature value.
    fn sample_alert(id: &str) -> Alert {
        use crate::alerts::{Features, Origin, Severity, Status};
        Alert {
            alert_id: id.into(),
            device_id: "p1".into(),
            status: Status::Open,
            severity: Severity::Critical,
            origin: Origin::Model,
            fault_probability: 0.97,
            threshold: 0.95,
            window_start_ms: 0,
            window_end_ms: 60_000,
            model: "m".into(),
            model_version: "1".into(),
            message: "Fault likely".into(),
            raised_at_ms: 0,
            updated_at_ms: 0,
            acknowledged_by: None,
            comment: None,
            features: Features::from_iter([("T.mean".to_owned(), 71.5)]),
            contributions: Features::default(),
        }
    }

    /// What a restore decodes, all at once, for tests to compare.
    impl Restored {
        fn snaps(&self) -> Vec<DeviceSnapshot> {
            self.devices().map(|d| d.unwrap().0).collect()
        }

        fn seqs(&self) -> std::collections::HashMap<String, u64> {
            self.devices().map(|d| d.unwrap()).map(|(d, seq)| (d.id, seq)).collect()
        }

        fn states(&self) -> Vec<(String, DeviceState)> {
            self.alert_states().map(|s| s.unwrap()).map(|(id, s, _)| (id.to_owned(), s)).collect()
        }

        fn bases(&self) -> Vec<(String, DeviceBaseline)> {
            self.alert_states().map(|s| s.unwrap()).filter_map(|(id, _, b)| Some((id.to_owned(), b?))).collect()
        }
    }

    /// Device `d`'s window of minute `i`.
    fn minute_window(d: &str, i: i64) -> WindowRecord {
        WindowRecord {
            device_id: d.into(),
            start_ms: i * 60_000,
            end_ms: (i + 1) * 60_000,
            readings: 1,
            score: 0.25,
            model: "m".into(),
            model_version: "1".into(),
            update: false,
            signals: vec![("x".into(), 1.0, 0.5)],
        }
    }

    #[test]
    fn window_history_keeps_the_windows_of_the_newest_starts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let w = minute_window;
        // The windows of the newest 500 starts stay, trimmed once the
        // history holds more than 501: "b", with one window at the oldest
        // start, loses it although it has only one.
        let all: Vec<WindowRecord> = (0..560).map(|i| w("a", i * 3 - 700)).chain([w("b", -700)]).collect();
        s.checkpoint(&Checkpoint { windows: all, ..Default::default() }).unwrap();
        let a = s.windows("a", 1000).unwrap();
        assert_eq!(a.len(), WINDOWS_PER_DEVICE);
        assert_eq!(a[0].start_ms, (559 * 3 - 700) * 60_000, "newest first");
        assert_eq!(a.last().unwrap().start_ms, (60 * 3 - 700) * 60_000);
        assert!(s.windows("b", 10).unwrap().is_empty());
        assert_eq!(s.windows("a", 3).unwrap().len(), 3, "limit");
        s.checkpoint(&Checkpoint { windows: vec![w("b", 559 * 3 - 700)], ..Default::default() }).unwrap();
        assert_eq!(s.windows("b", 10).unwrap().len(), 1);
        // Later windows are trimmed once the slack (one start) is used up,
        // back to the newest 500.
        for i in 0..TRIM_SLACK as i64 {
            s.checkpoint(&Checkpoint { windows: vec![w("a", 2000 + i)], ..Default::default() }).unwrap();
        }
        assert_eq!(s.windows("a", 1000).unwrap().len(), WINDOWS_PER_DEVICE + TRIM_SLACK);
        s.checkpoint(&Checkpoint { windows: vec![w("a", 3000)], ..Default::default() }).unwrap();
        let a = s.windows("a", 1000).unwrap();
        assert_eq!((a.len(), a[0].start_ms), (WINDOWS_PER_DEVICE, 3000 * 60_000));
        // A smaller bound applies from the next window on.
        s.set_window_history(10, WINDOWS_TOTAL);
        s.checkpoint(&Checkpoint { windows: vec![w("a", 3001)], ..Default::default() }).unwrap();
        assert_eq!(s.windows("a", 1000).unwrap().len(), 10);
        // The total is shared by the devices: 20 over 4 devices, 5 starts,
        // and the slack.
        s.set_window_history(10, 20);
        s.set_window_devices(4);
        s.checkpoint(&Checkpoint { windows: vec![w("a", 3002)], ..Default::default() }).unwrap();
        assert_eq!(s.windows("a", 1000).unwrap().len(), 5);
        s.checkpoint(&Checkpoint { windows: vec![w("a", 3003)], ..Default::default() }).unwrap();
        assert_eq!(s.windows("a", 1000).unwrap().len(), 6);
        s.checkpoint(&Checkpoint { windows: vec![w("a", 3004)], ..Default::default() }).unwrap();
        assert_eq!(
            s.windows("a", 1000).unwrap()[..5].iter().map(|r| r.start_ms / 60_000).collect::<Vec<_>>(),
            [3004, 3003, 3002, 3001, 3000]
        );
        assert_eq!(s.windows("a", 1000).unwrap().len(), 5);
        // A forgotten device's history goes with it.
        let forget = Changes { forgotten: vec![std::sync::Arc::from("a")], ..Default::default() };
        s.checkpoint(&Checkpoint { devices: forget, ..Default::default() }).unwrap();
        assert!(s.windows("a", 1000).unwrap().is_empty());
        s.checkpoint(&Checkpoint { windows: vec![w("b", 3004)], ..Default::default() }).unwrap();
        assert_eq!(s.windows("b", 10).unwrap().len(), 1);
        s.set_window_history(0, WINDOWS_TOTAL);
        s.checkpoint(&Checkpoint { windows: vec![w("b", 3005)], ..Default::default() }).unwrap();
        assert!(s.windows("b", 10).unwrap().is_empty(), "0: none stored, the old ones go");
        // Labels are keyed device first (negative times included).
        s.put_label("a", -60_000, 60_000, false).unwrap();
        s.put_label("a", 120_000, 180_000, true).unwrap();
        assert_eq!(s.labels("a").unwrap(), vec![(-60_000, 60_000, false), (120_000, 180_000, true)]);
        assert!(s.labels("b").unwrap().is_empty());
    }

    #[test]
    fn windows_are_grouped_by_start_and_bucket_and_the_last_record_of_a_window_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let w = minute_window;
        // 10,000 devices' windows of one start: about one record a bucket.
        let ids: Vec<String> = (0..10_000).map(|i| format!("dev-{i:05}")).collect();
        let all: Vec<WindowRecord> = ids.iter().map(|d| w(d, 7)).collect();
        s.write_history(&[], &all[..5000]).unwrap();
        // Not written yet, read all the same.
        assert_eq!(s.windows("dev-00042", 5).unwrap(), [w("dev-00042", 7)]);
        assert_eq!(s.windows.len(), 0);
        s.checkpoint(&Checkpoint { seq: 1, windows: all[5000..].to_vec(), ..Default::default() }).unwrap();
        assert!(s.windows.len() <= usize::from(history::BUCKETS), "{} records", s.windows.len());
        assert_eq!(s.all_windows().unwrap(), all, "start, then device order");
        // Written again (late readings): the last record counts, in a later
        // checkpoint or later in the same one (a number used again after a crash).
        let mut late = w("dev-00042", 7);
        late.readings = 2;
        late.update = true;
        s.checkpoint(&Checkpoint { seq: 2, windows: vec![late.clone()], ..Default::default() }).unwrap();
        assert_eq!(s.windows("dev-00042", 5).unwrap(), [late.clone()]);
        late.readings = 3;
        s.checkpoint(&Checkpoint { seq: 2, windows: vec![late.clone(), w("dev-00042", 8)], ..Default::default() })
            .unwrap();
        assert_eq!(s.windows("dev-00042", 5).unwrap(), [w("dev-00042", 8), late.clone()]);
        assert_eq!(s.all_windows().unwrap().len(), 10_001);
        // A forgotten device leaves its group mates' windows alone.
        let mate =
            ids.iter().find(|d| *d != "dev-00042" && history::bucket(d) == history::bucket("dev-00042")).unwrap();
        s.write_history(&[], &[w("dev-00042", 9), w(mate, 9)]).unwrap();
        let forget = Changes { forgotten: vec![std::sync::Arc::from("dev-00042")], ..Default::default() };
        s.checkpoint(&Checkpoint { seq: 3, devices: forget, ..Default::default() }).unwrap();
        assert!(s.windows("dev-00042", 5).unwrap().is_empty());
        assert_eq!(s.windows(mate, 5).unwrap(), [w(mate, 9), w(mate, 7)]);
        assert_eq!(s.all_windows().unwrap().len(), 10_000);
        // All of it after a restart.
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.windows(mate, 5).unwrap(), [w(mate, 9), w(mate, 7)]);
        assert_eq!(s.all_windows().unwrap().len(), 10_000);
    }

    #[test]
    fn the_alert_history_is_keyed_time_first_and_an_older_one_by_id_moves_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let made = s.alerts().unwrap();
        assert!(made.is_empty());
        // Two devices' alerts, raised by two window closes: keyed by the
        // start first, so one close's alerts are side by side.
        let mut all = Vec::new();
        for (i, start) in ["2026-11-21T10:15:00Z", "2026-11-21T10:20:00Z"].into_iter().enumerate() {
            for d in ["pump-2", "pump-1"] {
                let mut a = sample_alert(&format!("{d}/{start}"));
                a.device_id = d.into();
                a.updated_at_ms = i as i64;
                all.push(a);
            }
        }
        let order = |s: &Store| s.alerts().unwrap().into_iter().map(|a| a.alert_id).collect::<Vec<_>>();
        let want = [
            "pump-1/2026-11-21T10:15:00Z",
            "pump-2/2026-11-21T10:15:00Z",
            "pump-1/2026-11-21T10:20:00Z",
            "pump-2/2026-11-21T10:20:00Z",
        ];
        s.write_history(&all, &[]).unwrap();
        assert_eq!(order(&s), want);
        assert_eq!(s.alert(want[3]).unwrap().as_ref(), Some(&all[2]));
        // An older store's `alerts` tree, keyed by id, and an id without a start.
        let mut odd = sample_alert("a1");
        odd.status = crate::alerts::Status::Cleared;
        let old = s.db.open_tree("alerts").unwrap();
        for a in all.iter().chain([&odd]) {
            old.insert(a.alert_id.as_bytes(), encode(a).unwrap()).unwrap();
        }
        s.alerts.clear().unwrap();
        s.flush().unwrap();
        drop((old, s));
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == b"alerts"), "the older tree is gone");
        assert_eq!(order(&s)[1..], want, "moved, in time order; the id without a start first");
        assert_eq!(s.alert("a1").unwrap().as_ref(), Some(&odd));
        assert_eq!(s.alert_count.load(Ordering::Relaxed), 5);
        assert_eq!(s.cleared_alerts.lock().unwrap().len(), 1);
    }

    #[test]
    fn alert_records_hold_the_feature_values_and_the_names_once() {
        use crate::alerts::{Features, Origin};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let names: std::sync::Arc<[String]> = (0..56).map(|i| format!("Accelerometer{i}RMS.kurtosis")).collect();
        let all: Vec<Alert> = (0..40)
            .map(|i| {
                let mut a = sample_alert(&format!("pump-{i}/2026-11-21T10:15:00Z"));
                a.features = Features::new(names.clone(), (0..56).map(|j| f64::from(i * 100 + j) / 7.0));
                if i == 3 {
                    // A baseline alert: its contributions keep their names.
                    a.origin = Origin::Baseline;
                    a.contributions = Features::from_iter([("x.std".to_owned(), 0.75)]);
                }
                if i == 4 {
                    a.features = Features::default();
                }
                a
            })
            .collect();
        s.write_history(&all, &[]).unwrap();
        // As the history orders them: by the start in the id, then the id.
        let mut all = all;
        all.sort_by_key(|a| alert_key(&a.alert_id));
        assert!(s.alerts().unwrap() == all);
        let key = alert_key(&all[0].alert_id);
        let stored = s.alerts.get(&key).unwrap().unwrap();
        let with_names = encode(&all[0]).unwrap();
        assert!(
            stored.len() + 56 * 26 <= with_names.len(),
            "{} bytes stored against {} with the names",
            stored.len(),
            with_names.len()
        );
        assert_eq!(s.names.tree.len(), 1, "one list of names for every alert of the model");
        // An older faultline reads the record, without its features.
        let old: Alert = decode("alert_history", &key, &stored).unwrap();
        assert_eq!(old, Alert { features: Features::default(), ..all[0].clone() });
        // Read back after a restart, the names shared by the records.
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        let back = s.alerts().unwrap();
        assert!(back == all);
        assert!(std::sync::Arc::ptr_eq(back[0].features.names(), back[39].features.names()));
        let (n, page) = s.alerts_page(|_| true, 3, 1).unwrap();
        assert_eq!((n, page.len()), (40, 1));
        assert_eq!(Some(&page[0]), all.iter().find(|a| a.alert_id == page[0].alert_id));
        // Names gone from the state: the record reads, without its features.
        s.names.tree.clear().unwrap();
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        let a = s.alert(&all[0].alert_id).unwrap().unwrap();
        assert_eq!(a, Alert { features: Features::default(), ..all[0].clone() });
        // A record cut inside its values is corrupt, not another alert.
        let cut = &stored[..stored.len() - 3];
        s.alerts.insert(&key, cut).unwrap();
        assert!(matches!(s.alert(&all[0].alert_id), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn an_alert_record_that_does_not_read_is_counted_and_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.alerts.insert(alert_key("a1"), &[0xff; 3][..]).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.alert_count.load(Ordering::Relaxed), 1);
        assert!(s.cleared_alerts.lock().unwrap().is_empty());
    }

    #[test]
    fn window_records_hold_the_signals_values_and_their_names_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let names = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature"];
        let w = |d: &str, i: i64| WindowRecord {
            signals: names.iter().enumerate().map(|(j, n)| ((*n).to_owned(), i as f64 + j as f64 / 3.0, 0.1)).collect(),
            ..minute_window(d, i)
        };
        let mut all = vec![w("pump-1", 0), w("pump-2", 0), w("pump-1", 1)];
        // Another list of signals, and none.
        all.push(WindowRecord { signals: vec![("Voltage".into(), 230.5, f64::NAN)], ..minute_window("pump-3", 1) });
        all.push(WindowRecord { signals: Vec::new(), ..minute_window("pump-4", 1) });
        s.write_history(&[], &all).unwrap();
        // Compared as printed: NaN is not equal to itself.
        let same = |a: &[WindowRecord], b: &[WindowRecord]| format!("{a:?}") == format!("{b:?}");
        // Not written yet, then written by a checkpoint, then after a restart.
        assert!(same(&s.windows("pump-1", 5).unwrap(), &[w("pump-1", 1), w("pump-1", 0)]));
        assert!(same(&s.all_windows().unwrap(), &all));
        s.checkpoint(&Checkpoint { seq: 1, ..Default::default() }).unwrap();
        assert!(same(&s.all_windows().unwrap(), &all));
        assert_eq!(s.names.tree.len(), 2, "one list of names for each set of signals");
        let (k, group) = s.windows.iter().next().unwrap().unwrap();
        let first = history::records(&group).next().unwrap().unwrap();
        let d = history::device_of(first).unwrap();
        let with_names = encode(&w(d, 0)).unwrap();
        // The names out, the id of their list in (a varint, at most 10 bytes).
        assert!(first.len() + names.iter().map(|n| n.len() + 1).sum::<usize>() <= with_names.len() + 10);
        // An older faultline reads the record, without its signals.
        let old: WindowRecord = decode("window_groups", &k, first).unwrap();
        assert_eq!(old, WindowRecord { signals: Vec::new(), ..w(d, 0) });
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert!(same(&s.windows("pump-3", 5).unwrap(), &all[3..4]));
        assert!(same(&s.all_windows().unwrap(), &all));
        // Names gone from the state: the windows read, without their signals.
        s.names.tree.clear().unwrap();
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.windows("pump-2", 5).unwrap(), [WindowRecord { signals: Vec::new(), ..w("pump-2", 0) }]);
    }

    #[test]
    fn with_the_names_table_full_records_hold_their_names_and_read_back_whole() {
        use crate::alerts::Features;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        // A table of one list, taken by the first window's signals.
        s.names = names::FeatureNames::open_with(&s.db, 1).unwrap();
        let w = |d: &str, signal: &str| WindowRecord {
            signals: vec![(signal.to_owned(), 1.5, 0.25)],
            ..minute_window(d, 0)
        };
        let windows = [w("pump-1", "Current"), w("pump-2", "Voltage"), w("pump-3", "Current")];
        let mut a = sample_alert("pump-2/2026-11-21T10:15:00Z");
        a.features = Features::from_iter([("Voltage.mean".to_owned(), 230.5)]);
        s.write_history(std::slice::from_ref(&a), &windows).unwrap();
        s.checkpoint(&Checkpoint { seq: 1, ..Default::default() }).unwrap();
        assert_eq!((s.names.tree.len(), s.names_inline()), (1, 2), "pump-2's window and the alert");
        let stored = s.alerts.get(alert_key(&a.alert_id)).unwrap().unwrap();
        assert_eq!(stored, encode(&a).unwrap(), "as before the table");
        // Read back after a restart, with every name.
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.all_windows().unwrap(), windows);
        assert_eq!(s.alert(&a.alert_id).unwrap(), Some(a));
    }

    #[test]
    fn the_window_history_of_one_record_a_window_moves_into_groups() {
        let dir = tempfile::tempdir().unwrap();
        let w = minute_window;
        let s = Store::open(dir.path()).unwrap();
        let old = s.db.open_tree("window_history").unwrap();
        let records = [w("pump-1", -2), w("pump-1", 0), w("pump-2", 0), w("pump-1", 1), w("pump-10", 5)];
        for r in &records {
            old.insert(history_key(r.start_ms, &r.device_id), encode(r).unwrap()).unwrap();
        }
        old.insert(b"short", b"x").unwrap();
        drop((old, s));
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == b"window_history"), "the old tree goes");
        let starts = |d: &str| s.windows(d, 10).unwrap().iter().map(|r| r.start_ms / 60_000).collect::<Vec<_>>();
        assert_eq!(starts("pump-1"), [1, 0, -2]);
        assert_eq!(starts("pump-2"), [0]);
        assert_eq!(s.windows("pump-10", 1).unwrap(), [w("pump-10", 5)]);
        assert_eq!(s.all_windows().unwrap().len(), 5);
    }

    #[test]
    fn the_window_history_of_an_older_store_moves_to_time_order_and_is_read_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let w = minute_window;
        let s = Store::open(dir.path()).unwrap();
        // Earlier versions kept the history device first, in `windows`.
        let old = s.db.open_tree("windows").unwrap();
        let records = [w("pump-1", -2), w("pump-1", 0), w("pump-1", 1), w("pump-2", 1), w("pump-10", 5)];
        for r in &records {
            old.insert(window_key(&r.device_id, r.start_ms), encode(r).unwrap()).unwrap();
        }
        old.insert(b"short", b"x").unwrap();
        drop((old, s));
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == b"windows"), "the old tree goes");
        assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == b"window_history"), "and the one after it");
        let starts = |d: &str| s.windows(d, 10).unwrap().iter().map(|r| r.start_ms / 60_000).collect::<Vec<_>>();
        assert_eq!(starts("pump-1"), [1, 0, -2]);
        assert_eq!(starts("pump-2"), [1]);
        assert_eq!(starts("pump-10"), [5]);
        assert_eq!(s.windows("pump-1", 1).unwrap()[0], w("pump-1", 1));
        let all = s.all_windows().unwrap();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|p| p[0].start_ms <= p[1].start_ms), "time order");
        // New windows after a restart join the starts read from the tree.
        s.checkpoint(&Checkpoint { windows: vec![w("pump-2", 6)], ..Default::default() }).unwrap();
        drop(s);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.windows("pump-2", 10).unwrap().iter().map(|r| r.start_ms / 60_000).collect::<Vec<_>>(), [6, 1]);
        assert!(s.windows("nobody", 10).unwrap().is_empty());
    }

    #[test]
    fn device_records_live_in_the_journal_files_and_an_older_versions_trees_move_there() {
        use crate::window::WindowSnapshot;
        let dir = tempfile::tempdir().unwrap();
        let window = |start: i64, x: f64| {
            let mut st = crate::window::SignalStats::default();
            st.push(x, start + 1, start);
            WindowSnapshot { start, stats: vec![st] }
        };
        let snap = |open: Vec<WindowSnapshot>, closed: Vec<WindowSnapshot>| DeviceSnapshot {
            id: "p".into(),
            max_ts: 9,
            last_seen_ms: 9,
            signals: vec!["a".into()],
            open,
            closed,
        };
        let ckpt = |d: DeviceSnapshot| Checkpoint {
            devices: Changes { updated: vec![d], ..Default::default() },
            ..Default::default()
        };
        let state = DeviceState::default();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.legacy(), (false, false));
            // A snapshot goes with its closed windows, changed or not, an
            // empty list too: the file is their only copy.
            let mut first = ckpt(snap(vec![window(60, 1.0)], vec![window(0, 2.0)]));
            first.alert_states = vec![("p", (Some(&state), None))];
            assert_eq!(s.checkpoint(&first).unwrap().records, 3);
            let last = snap(vec![window(120, 3.0)], vec![]);
            assert_eq!(s.checkpoint(&Checkpoint { seq: 1, ..ckpt(last.clone()) }).unwrap().records, 2);
            let r = s.restore().unwrap();
            assert_eq!(r.snaps(), vec![last]);
            assert_eq!(r.seqs()["p"], 1);
            assert_eq!(r.states().len(), 1);
            for tree in [&s.devices, &s.closed, &s.alert_state] {
                assert!(tree.is_empty(), "nothing in the trees");
            }
        }
        // An older version's trees: a `devices` record of the earliest
        // layout (closed windows inside) and an alert state.
        let dir = tempfile::tempdir().unwrap();
        let old = snap(vec![window(120, 1.0)], vec![window(60, 4.0)]);
        {
            let db = retry(|| sled::open(dir.path()).map_err(|e| e.to_string()));
            db.open_tree("devices").unwrap().insert("p", encode(&old).unwrap()).unwrap();
            db.open_tree("alert_state").unwrap().insert("p", encode(&state).unwrap()).unwrap();
            db.flush().unwrap();
        }
        {
            let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
            assert_eq!(s.legacy(), (true, true));
            let r = s.restore().unwrap();
            assert_eq!(r.snaps(), vec![old.clone()]);
            assert_eq!(r.states().len(), 1);
            // A checkpoint that is not full leaves the trees.
            s.checkpoint(&Checkpoint { seq: 1, ..ckpt(old.clone()) }).unwrap();
            assert_eq!(s.legacy(), (true, true));
            // A full one, with every alert state, empties them.
            let mut full = Checkpoint { seq: 2, full: true, all_states: true, ..ckpt(old.clone()) };
            full.alert_states = vec![("p", (Some(&state), None))];
            s.checkpoint(&full).unwrap();
            assert_eq!(s.legacy(), (false, false));
            for tree in [&s.devices, &s.closed, &s.alert_state] {
                assert!(tree.is_empty(), "the older trees emptied");
            }
            s.flush().unwrap();
        }
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.legacy(), (false, false));
        let r = s.restore().unwrap();
        assert_eq!(r.snaps(), vec![old]);
        assert_eq!(r.seqs()["p"], 2);
        assert_eq!(r.states().len(), 1);
    }

    /// A journaled engine checkpointed now and then, "crashed" at several
    /// points: snapshots plus journal give back exactly its state, and the
    /// restored engine goes on to emit exactly what the original does.
    #[test]
    fn snapshots_and_journal_restore_the_engine_exactly() {
        use crate::clean::{Cleaning, Rule};
        use crate::window::{StateLimits, WindowSpec};
        const S: i64 = 1000;
        let spec = WindowSpec {
            size_ms: 60 * S,
            max_out_of_orderness_ms: 5 * S,
            allowed_lateness_ms: 60 * S,
            idle_timeout_ms: 600 * S,
        };
        let limits = StateLimits { device_ttl_ms: 900 * S, ..StateLimits::default() };
        let rules = || Cleaning::new(vec![Rule { signal: "b".into(), min: Some(-5.0), max: None }]);
        let engine = || {
            let mut e = crate::window::Engine::new(spec, limits, rules());
            e.set_journal(4);
            e
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = engine();
        // One snapshot a checkpoint for journals past their bound: the
        // others wait with their journal going on.
        a.set_snapshots_per_checkpoint(1);
        let mut seq = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut out = Vec::new();
        let mut total_replayed = 0;
        let checkpoint = |a: &mut crate::window::Engine, seq: &mut u64, full: bool| {
            let c = Checkpoint {
                seq: *seq,
                devices: a.checkpoint_changes(*seq, full),
                engine: Some(a),
                ..Default::default()
            };
            store.checkpoint(&c).unwrap();
            *seq += 1;
        };
        for i in 0..3000i64 {
            let r = next();
            // Seven devices, and now and then a new one: a device whose
            // only state is in the journal when the crash comes.
            let dev = if r % 53 == 0 { format!("n{i}") } else { format!("p{}", r % 7) };
            // Mostly in order, some out of order, some late; a new signal now and then.
            let ts = i * 700 - if r % 11 == 0 { 90 * S } else { (r % 4000) as i64 };
            let x = ((r >> 8) % 1000) as f64 / 10.0 - 10.0;
            let extra = format!("s{}", (r >> 20) % 3);
            let now = i * 100 + if r % 500 == 0 { 800 * S } else { 0 };
            if r % 97 == 0 {
                a.close_idle(now + 2000 * S, &mut out);
            }
            a.record(&dev, ts, [("a", x), ("b", -x), (extra.as_str(), x * 2.0), ("a", 0.0)], now, &mut out);
            if i % 37 == 0 {
                checkpoint(&mut a, &mut seq, i % 1000 == 0);
            }
            if i % 450 == 0 {
                // A crash right after this checkpoint; every other time
                // before the trees got its snapshots (only its journal file
                // has them then).
                if (i / 450) % 2 == 0 {
                    checkpoint(&mut a, &mut seq, false);
                } else {
                    let changes = a.checkpoint_changes(seq, false);
                    assert!(!changes.to_snapshot.is_empty());
                    let gone = |id: &str| changes.forgotten.iter().any(|f| &**f == id);
                    let before: Vec<_> = changes
                        .to_snapshot
                        .iter()
                        .map(|id| {
                            let get = |t: &sled::Tree| if gone(id) { None } else { t.get(&**id).unwrap() };
                            (id.to_string(), get(&store.devices), get(&store.closed))
                        })
                        .collect();
                    store
                        .checkpoint(&Checkpoint { seq, devices: changes, engine: Some(&a), ..Default::default() })
                        .unwrap();
                    seq += 1;
                    let put = |t: &sled::Tree, id: &str, v: Option<sled::IVec>| match v {
                        Some(v) => t.insert(id, v).unwrap(),
                        None => t.remove(id).unwrap(),
                    };
                    for (id, d, c) in before {
                        put(&store.devices, &id, d);
                        put(&store.closed, &id, c);
                    }
                }
                let mut r = store.restore().unwrap();
                let mut b = engine();
                let (refused, replayed) = restore_engine(&mut b, &mut r).unwrap();
                assert_eq!(refused, 0);
                total_replayed += replayed;
                let sorted = |e: &crate::window::Engine| {
                    let mut v = e.snapshot_all();
                    v.sort_by(|x, y| x.id.cmp(&y.id));
                    // Debug, not ==: an empty statistic holds NaN.
                    format!("{v:?}")
                };
                assert_eq!(sorted(&a), sorted(&b), "after {i} readings, {replayed} replayed");
                // Both go on alike.
                let (mut oa, mut ob) = (Vec::new(), Vec::new());
                for j in 0..20i64 {
                    let t = i * 700 + j * 7 * S;
                    a.record("p1", t, [("a", j as f64), ("s1", 1.0)], i * 100, &mut oa);
                    b.record("p1", t, [("a", j as f64), ("s1", 1.0)], i * 100, &mut ob);
                }
                assert!(!oa.is_empty());
                assert_eq!(format!("{oa:?}"), format!("{ob:?}"));
                assert_eq!(sorted(&a), sorted(&b));
                // Every other time the restored engine goes on instead, so
                // the next restore starts from what a restored engine
                // wrote: its replayed devices' journals stay in the older
                // files until their turn.
                if (i / 450) % 4 < 2 {
                    b.set_snapshots_per_checkpoint(1);
                    a = b;
                }
            }
        }
        assert!(total_replayed > 100, "the journal was used: {total_replayed} entries replayed");
        // Alert states travel in the blob; the tree gets them after the commit.
        let st = |id: &'static str, s| (id, (s, None));
        let empty = DeviceState::default();
        let c = Checkpoint {
            seq,
            devices: Changes { journal_from: seq.saturating_sub(3), ..Default::default() },
            alert_states: vec![st("p1", Some(&empty)), st("p2", Some(&empty))],
            ..Default::default()
        };
        store.checkpoint(&c).unwrap();
        let c = Checkpoint {
            seq: seq + 1,
            devices: Changes { journal_from: seq.saturating_sub(3), ..Default::default() },
            alert_states: vec![st("p2", None)],
            ..Default::default()
        };
        store.checkpoint(&c).unwrap();
        let ids = |r: Restored| r.states().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(store.restore().unwrap()), vec!["p1"]);
        // A crash between a commit and the tree's update: the blob still has it.
        store.alert_state.remove("p1").unwrap();
        assert_eq!(ids(store.restore().unwrap()), vec!["p1"]);
        let files = std::fs::read_dir(dir.path().join("journal")).unwrap().count();
        assert!(store.journal_files.len() <= 5, "old journal markers are removed: {}", store.journal_files.len());
        assert_eq!(files, store.journal_files.len(), "and their files");
    }

    /// An engine of 1-minute windows, one device snapshot in 4 checkpoints.
    fn journaled_engine() -> Engine {
        use crate::window::{StateLimits, WindowSpec};
        let spec = WindowSpec {
            size_ms: 60_000,
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 60_000,
            idle_timeout_ms: 600_000,
        };
        let mut e = Engine::new(spec, StateLimits::default(), crate::clean::Cleaning::new(vec![]));
        e.set_journal(4);
        e
    }

    #[test]
    fn a_journal_file_stays_while_it_holds_a_devices_latest_snapshot() {
        // A clean stop's full checkpoint holds the device and its alert
        // state; the restored daemon's checkpoints, with nothing to write,
        // keep that file until the device is snapshotted again.
        let engine = journaled_engine;
        let snapshots = |e: &Engine| format!("{:?}", e.snapshot_all());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = engine();
        let mut out = Vec::new();
        for i in 0..5 {
            a.record("p1", i * 1000, [("a", i as f64)], 0, &mut out);
        }
        store
            .checkpoint(&Checkpoint {
                seq: 0,
                devices: a.checkpoint_changes(0, false),
                engine: Some(&a),
                ..Default::default()
            })
            .unwrap();
        // The first window closes and a second opens.
        for i in 60..65 {
            a.record("p1", i * 1000, [("a", i as f64)], 0, &mut out);
        }
        assert_eq!(out.len(), 1);
        let state = DeviceState::default();
        let c = Checkpoint {
            seq: 1,
            devices: a.checkpoint_changes(1, true),
            engine: Some(&a),
            full: true,
            alert_states: vec![("p1", (Some(&state), None))],
            all_states: true,
            ..Default::default()
        };
        assert_eq!(c.devices.to_snapshot.len(), 1, "p1 is snapshotted");
        assert_eq!(c.devices.journal_from, 1);
        store.checkpoint(&c).unwrap();
        assert!(
            store.journal_files.get(0u64.to_be_bytes()).unwrap().is_none(),
            "a full checkpoint needs no older file"
        );
        let ids = |r: &Restored| r.states().iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        let mut r = store.restore().unwrap();
        assert_eq!(ids(&r), vec!["p1"]);
        let mut b = engine();
        restore_engine(&mut b, &mut r).unwrap();
        assert_eq!(snapshots(&b), snapshots(&a));
        // Until p1's turn its snapshot is in checkpoint 1's file (another
        // device reports: a checkpoint with nothing to write takes no turns).
        let mut seq = 2;
        loop {
            b.record("p2", seq as i64 * 1000, [("a", 1.0)], 0, &mut out);
            let c =
                Checkpoint { seq, devices: b.checkpoint_changes(seq, false), engine: Some(&b), ..Default::default() };
            let snapshotted = c.devices.to_snapshot.iter().any(|id| &**id == "p1");
            store.checkpoint(&c).unwrap();
            let kept = store.journal_files.get(1u64.to_be_bytes()).unwrap().is_some();
            assert_eq!(kept, !snapshotted, "checkpoint {seq}");
            let mut r = store.restore().unwrap();
            let mut again = engine();
            restore_engine(&mut again, &mut r).unwrap();
            let p1 = |e: &Engine| format!("{:?}", e.snapshot_all().into_iter().find(|d| d.id == "p1"));
            assert_eq!(p1(&again), p1(&a), "the device, with its closed window, at {seq}");
            if snapshotted {
                break;
            }
            seq += 1;
            assert!(seq < 8, "p1 is snapshotted at its turn");
        }
    }

    #[test]
    fn the_restore_decodes_a_device_at_a_time_and_the_engine_lets_go_of_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = journaled_engine();
        let mut out = Vec::new();
        for (i, id) in ["p1", "p2", "p3"].into_iter().enumerate() {
            a.record(id, 1000, [("a", i as f64), ("b", 1.0)], 0, &mut out);
        }
        let state = DeviceState::default();
        let c = Checkpoint {
            seq: 3,
            devices: a.checkpoint_changes(3, true),
            engine: Some(&a),
            full: true,
            alert_states: vec![("p2", (Some(&state), None)), ("p4", (Some(&state), None))],
            all_states: true,
            ..Default::default()
        };
        store.checkpoint(&c).unwrap();
        let mut r = store.restore().unwrap();
        assert_eq!(r.snapshot_count(), 3);
        let mut b = journaled_engine();
        assert_eq!(restore_engine(&mut b, &mut r).unwrap(), (0, 0));
        let sorted = |e: &Engine| {
            let mut v = e.snapshot_all();
            v.sort_by(|x, y| x.id.cmp(&y.id));
            v
        };
        assert_eq!(sorted(&b), sorted(&a));
        // The windows' records are gone, the alert states still there.
        assert!(r.windows.is_empty() && r.devices().next().is_none());
        assert_eq!(r.states(), vec![("p2".to_owned(), state.clone()), ("p4".to_owned(), state)]);
        // A record that does not decode is named when it is decoded.
        store.alert_state.insert("p0", &[0xff_u8; 3][..]).unwrap();
        let r = store.restore().unwrap();
        let e = crate::error_chain(&r.alert_states().next().unwrap().unwrap_err());
        assert!(e.contains("alert_state") && e.contains("p0"), "{e}");
        assert_eq!(r.alert_states().filter(|s| s.is_ok()).count(), 2);
    }

    #[test]
    fn a_device_forgotten_and_seen_again_is_restored_without_its_earlier_entries() {
        // Its entries before "forgotten" belong to a state that went with it.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = journaled_engine();
        let mut out = Vec::new();
        let day = 24 * 3600 * 1000;
        let checkpoint = |a: &mut Engine, seq: u64| {
            let c = a.checkpoint_changes(seq, false);
            let logged = c.logged.iter().any(|(id, _)| &**id == "p1");
            store.checkpoint(&Checkpoint { seq, devices: c, engine: Some(a), ..Default::default() }).unwrap();
            logged
        };
        // q keeps checkpoint 0's file (its journal starts there).
        a.record("q", 1000, [("a", 1.0)], 0, &mut out);
        a.record("p1", 1000, [("old", 1.0)], 0, &mut out);
        assert!(checkpoint(&mut a, 0), "p1 has entries only");
        a.record("q", 2 * day, [("a", 1.0)], 2 * day, &mut out);
        // p1's window closes, then goes, then p1.
        a.close_idle(2 * day, &mut out);
        a.close_idle(2 * day, &mut out);
        assert_eq!(a.device_count(), 1, "p1 is forgotten");
        // Seen again, off its turn (the engine's fourth device).
        a.record("r", 2 * day, [("a", 2.0)], 2 * day, &mut out);
        a.record("p1", 2 * day, [("a", 2.0)], 2 * day, &mut out);
        assert!(checkpoint(&mut a, 1));
        assert!(store.journal_files.get(0u64.to_be_bytes()).unwrap().is_some());
        let mut r = store.restore().unwrap();
        let mut b = journaled_engine();
        restore_engine(&mut b, &mut r).unwrap();
        let p1 = |e: &Engine| format!("{:?}", e.snapshot_all().into_iter().find(|d| d.id == "p1"));
        assert!(p1(&a).contains("signals: [\"a\"]"), "{}", p1(&a));
        assert_eq!(p1(&b), p1(&a));
    }

    #[test]
    fn devices_replayed_keep_their_journal_files_until_they_are_snapshotted() {
        // A restart replays the devices' journals and leaves them in their
        // files: the first checkpoint writes no snapshots, the devices are
        // snapshotted at their turn or when their journal is due, and a
        // crash at any checkpoint in between finds them all again.
        let engine = journaled_engine;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let restore = || {
            let mut r = store.restore().unwrap();
            let mut e = engine();
            restore_engine(&mut e, &mut r).unwrap();
            e
        };
        let of = |e: &Engine, id: &str| format!("{:?}", e.snapshot_all().into_iter().find(|d| d.id == id));
        let mut a = engine();
        let mut out = Vec::new();
        // Three devices, of three phases, none at its turn at checkpoint 0:
        // they have nothing but journal entries.
        let new = ["n0", "n1", "n2"];
        for (k, id) in new.iter().enumerate() {
            a.record(id, 1000, [("a", k as f64)], 0, &mut out);
        }
        let c = a.checkpoint_changes(0, false);
        assert!(c.to_snapshot.is_empty() && c.logged.len() == 3, "{c:?}");
        store.checkpoint(&Checkpoint { seq: 0, devices: c, engine: Some(&a), ..Default::default() }).unwrap();
        // A crash.
        let mut b = restore();
        let mut snapshotted = std::collections::HashSet::new();
        for seq in 1..8 {
            // Another device reports from checkpoint 2 on.
            if seq > 1 {
                b.record("busy", seq as i64 * 1000, [("a", 3.0)], 0, &mut out);
            }
            let c = b.checkpoint_changes(seq, false);
            if seq == 1 {
                assert!(c.to_snapshot.is_empty() && c.logged.is_empty(), "nothing to write at first: {c:?}");
            }
            snapshotted.extend(c.to_snapshot.iter().map(|id| id.to_string()));
            store.checkpoint(&Checkpoint { seq, devices: c, engine: Some(&b), ..Default::default() }).unwrap();
            let again = restore();
            for id in new {
                assert_eq!(of(&again, id), of(&a, id), "{id} after checkpoint {seq}");
            }
        }
        assert!(new.iter().all(|id| snapshotted.contains(*id)), "each is snapshotted in time: {snapshotted:?}");
        assert!(store.journal_files.get(0u64.to_be_bytes()).unwrap().is_none(), "and the file goes");
    }

    #[test]
    fn an_open_alert_state_holds_no_feature_values_and_its_record_does() {
        use crate::alerts::{Features, Policy, PolicyConfig, WindowScore};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut policy = Policy::new(PolicyConfig {
            threshold: 0.8,
            warning: None,
            raise_after: 1,
            clear_after: 1,
            hysteresis: 0.1,
        });
        let features = || Features::from_iter([("vibration.mean".to_owned(), 1.5), ("vibration.std".to_owned(), 0.25)]);
        let w = WindowScore {
            device_id: "p1",
            start_ms: 0,
            end_ms: 60_000,
            probability: 0.9,
            origin: crate::alerts::Origin::Baseline,
            model: "baseline",
            model_version: "1",
            features: &features,
            contributions: &|| Features::from_iter([("vibration.mean".to_owned(), 0.75)]),
        };
        let made = policy.observe(&w, 61_000);
        assert_eq!(made.len(), 1);
        assert_eq!((made[0].features.len(), made[0].contributions.len()), (2, 1), "the record has them");
        let state = policy.device_state("p1").unwrap().clone();
        assert!(state.current().unwrap().features.is_empty() && state.current().unwrap().contributions.is_empty());
        let c =
            Checkpoint { alert_states: vec![("p1", (Some(&state), None))], alerts: made.clone(), ..Default::default() };
        s.checkpoint(&c).unwrap();
        let stored = std::fs::read(s.journal_path(0)).unwrap();
        assert!(!stored.is_empty());
        assert!(!stored.windows(b"vibration".len()).any(|w| w == b"vibration"), "no feature names in the state");
        let r = s.restore().unwrap();
        assert_eq!(r.states(), vec![("p1".to_owned(), state)]);
        assert_eq!(s.alert(&made[0].alert_id).unwrap().as_ref(), Some(&made[0]));
    }

    #[test]
    fn baselines_are_stored_with_the_alert_state_and_restored() {
        use crate::baseline::{BaselineConfig, DeviceBaseline, FitConfig};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let cfg = BaselineConfig {
            features: vec!["a.mean".into(), "b.mean".into()],
            warmup_windows: 5,
            fit: FitConfig { components: 1, quantile: 0.99, t2_margin: 1.5, q_margin: 8.0 },
            adapt_rate: 0.0,
            adapt_below: 0.5,
        };
        let mut active = DeviceBaseline::default();
        for i in 0..5 {
            let v = f64::from(i);
            active.observe(&cfg, vec![v, 2.0 * v + 0.1 * (v * v)], i64::from(i) * 1000);
        }
        assert_eq!(active.version, 1);
        let mut learning = DeviceBaseline::default();
        learning.observe(&cfg, vec![1.0, 2.0], 1000);
        let alerts = DeviceState::default();
        let c = Checkpoint {
            alert_states: vec![
                ("p1", (Some(&alerts), Some(&active))),
                ("p2", (None, Some(&learning))),
                ("p3", (Some(&alerts), None)),
            ],
            ..Default::default()
        };
        s.checkpoint(&c).unwrap();
        let r = s.restore().unwrap();
        assert_eq!(r.bases(), vec![("p1".to_owned(), active.clone()), ("p2".to_owned(), learning)]);
        assert_eq!(r.states().len(), 3);
        // An older version's record in the tree, written before baselines
        // existed, is the alert state alone.
        s.alert_state.insert("p4", encode(&alerts).unwrap()).unwrap();
        let r = s.restore().unwrap();
        assert!(r.states().iter().any(|(id, _)| id == "p4"));
        assert!(!r.bases().iter().any(|(id, _)| id == "p4"));
        // Both gone: the record goes.
        let c = Checkpoint { seq: 1, alert_states: vec![("p2", (None, None))], ..Default::default() };
        s.checkpoint(&c).unwrap();
        assert!(!s.restore().unwrap().bases().iter().any(|(id, _)| id == "p2"));
    }

    #[test]
    fn a_checkpoint_round_trips_and_the_layout_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let snap = DeviceSnapshot {
            id: "pump 1".into(),
            max_ts: 5,
            last_seen_ms: 7,
            signals: vec!["a".into()],
            open: vec![],
            closed: vec![],
        };
        let rec = |i: u64| {
            let r = OutboxRecord { device_id: "pump 1".into(), payload: format!("{{\"n\":{i}}}") };
            (i, std::sync::Arc::new(r))
        };
        {
            let s = Store::open(dir.path()).unwrap();
            let c = Checkpoint {
                devices: Changes { updated: vec![snap.clone()], ..Default::default() },
                positions: vec![(b"kafka/g/t/0".to_vec(), 42i64.to_be_bytes().to_vec())],
                ..Default::default()
            };
            let w = s.checkpoint(&c).unwrap();
            // The device's open part, its (empty) closed windows, the position.
            assert_eq!(w.records, 3);
            // The late store: three pushed into a log of two, in two checkpoints.
            let reading = |i: i64| Reading { device_id: "pump 1".into(), ts_ms: i, values: vec![("a".into(), 1.0)] };
            let mut late = BoundedLog::new(2);
            let mut mark = LogMark::default();
            late.push(reading(1));
            s.checkpoint(&Checkpoint { late: mark.delta(&late), ..Default::default() }).unwrap();
            late.push(reading(2));
            late.push(reading(3));
            let d = mark.delta(&late);
            assert_eq!((d.added.len(), d.removed.clone()), (2, 0..1));
            let again = LogDelta { added: d.added.clone(), removed: d.removed.clone() };
            s.checkpoint(&Checkpoint { late: d, ..Default::default() }).unwrap();
            // Written before the transaction: a checkpoint that failed
            // after it is written again by the next, to the same records.
            s.checkpoint(&Checkpoint { late: again, ..Default::default() }).unwrap();
            // The outbox: records added, then some removed, in checkpoints
            // and outside them.
            let outbox = OutboxDelta { removed: 0..0, added: vec![rec(1), rec(2), rec(3)] };
            let w = s.checkpoint(&Checkpoint { outbox, ..Default::default() }).unwrap();
            assert_eq!(w.records, 3);
            let outbox = OutboxDelta { removed: 0..2, added: vec![rec(4)] };
            assert_eq!(s.checkpoint(&Checkpoint { outbox, ..Default::default() }).unwrap().records, 2);
            s.write_outbox(&OutboxDelta { removed: 3..4, added: vec![rec(5)] }).unwrap();
        }
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        let r = s.restore().unwrap();
        assert_eq!(r.snaps(), vec![snap]);
        assert_eq!(r.positions.len(), 1);
        assert_eq!(r.outbox.iter().map(|(q, _)| *q).collect::<Vec<_>>(), vec![2, 4, 5]);
        assert_eq!(r.outbox[0].1, *rec(2).1);
        assert_eq!(r.late.iter().map(|(q, r)| (*q, r.ts_ms)).collect::<Vec<_>>(), vec![(1, 2), (2, 3)]);
        // Forgetting removes.
        let c = Checkpoint {
            devices: Changes { forgotten: vec![std::sync::Arc::from("pump 1")], ..Default::default() },
            ..Default::default()
        };
        s.checkpoint(&c).unwrap();
        assert!(s.restore().unwrap().snaps().is_empty());
        drop(s);
        // Layout 2 (no snapshots in its journal files) is read and taken over.
        let db = retry(|| sled::open(dir.path()).map_err(|e| e.to_string()));
        db.open_tree("meta").unwrap().insert("layout", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.db.open_tree("meta").unwrap().get("layout").unwrap().unwrap().as_ref(), LAYOUT.to_be_bytes());
        assert_eq!(s.restore().unwrap().positions.len(), 1);
        drop(s);
        let db = retry(|| sled::open(dir.path()).map_err(|e| e.to_string()));
        let meta = db.open_tree("meta").unwrap();
        meta.insert("layout", &99u32.to_be_bytes()).unwrap();
        meta.flush().unwrap();
        drop((meta, db));
        let e = retry(|| match Store::open(dir.path()) {
            Ok(_) => Ok("opened".to_owned()),
            Err(e) if crate::error_chain(&e).contains("could not acquire lock") => Err(e.to_string()),
            Err(e) => Ok(e.to_string()),
        });
        assert!(e.contains("layout 99"), "{e}");
    }

    /// The alert states a restore finds, by device.
    fn state_ids(s: &Store) -> Vec<String> {
        s.restore().unwrap().states().into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn the_journal_files_read_ahead_while_the_database_opens_are_checked_by_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let empty = DeviceState::default();
        let open = || retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        {
            let s = open();
            let c = Checkpoint { seq: 7, alert_states: vec![("p1", (Some(&empty), None))], ..Default::default() };
            s.checkpoint(&c).unwrap();
        }
        // A crash between a file and its marker: read ahead too, yet it
        // does not count.
        std::fs::write(dir.path().join("journal/0000000000000008"), b"half a checkpoint").unwrap();
        let s = open();
        let r = s.restore().unwrap();
        assert_eq!(r.states().iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["p1"]);
        assert_eq!((r.next_seq, r.oldest_journal), (8, Some(7)));
        drop(s);
        // A file changed before the open is refused as if read after it.
        let path = dir.path().join("journal/0000000000000007");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let s = open();
        let e = crate::error_chain(&s.restore().unwrap_err());
        assert!(e.contains("0000000000000007") && e.contains("checkpoint 7"), "{e}");
    }

    #[test]
    fn a_journal_file_counts_only_with_its_marker_and_must_be_the_one_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = |p: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(p.join("journal"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let empty = DeviceState::default();
        {
            let s = Store::open(dir.path()).unwrap();
            let c = Checkpoint { seq: 7, alert_states: vec![("p1", (Some(&empty), None))], ..Default::default() };
            s.checkpoint(&c).unwrap();
            assert_eq!(files(dir.path()), vec!["0000000000000007"]);
            // Only the blob has it now.
            s.alert_state.clear().unwrap();
            assert_eq!(state_ids(&s), vec!["p1"]);
            assert_eq!(s.restore().unwrap().next_seq, 8);
            // A later checkpoint past it removes the file with its marker.
            let c = Checkpoint {
                seq: 8,
                devices: Changes { journal_from: 8, ..Default::default() },
                alert_states: vec![("p2", (Some(&empty), None))],
                ..Default::default()
            };
            s.checkpoint(&c).unwrap();
            assert_eq!(files(dir.path()), vec!["0000000000000008"]);
            s.flush().unwrap();
        }
        // A file whose transaction never committed (a crash in between) is
        // removed when the store opens; a file that is not a journal stays.
        std::fs::write(dir.path().join("journal/0000000000000009"), b"half a checkpoint").unwrap();
        std::fs::write(dir.path().join("journal/notes.txt"), b"an operator's").unwrap();
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(files(dir.path()), vec!["0000000000000008", "notes.txt"]);
        assert_eq!(s.restore().unwrap().next_seq, 9);
        // A file that is not the one written is refused, with what to do.
        s.alert_state.clear().unwrap();
        std::fs::write(dir.path().join("journal/0000000000000008"), b"something else").unwrap();
        let e = crate::error_chain(&s.restore().unwrap_err());
        assert!(e.contains("0000000000000008") && e.contains("checkpoint 8") && e.contains("move"), "{e}");
        std::fs::remove_file(dir.path().join("journal/0000000000000008")).unwrap();
        let e = crate::error_chain(&s.restore().unwrap_err());
        assert!(e.contains("cannot read") && e.contains("0000000000000008"), "{e}");
        s.journal_files.remove(8u64.to_be_bytes()).unwrap();

        // A file of several chunks, hashed as it was written: read whole,
        // and a byte changed in its second chunk is found.
        let ids: Vec<String> = (0..6000).map(|i| format!("line-a-pump-{i:04}")).collect();
        let c = Checkpoint {
            seq: 10,
            alert_states: ids.iter().map(|id| (id.as_str(), (Some(&empty), None))).collect(),
            ..Default::default()
        };
        s.checkpoint(&c).unwrap();
        let path = dir.path().join("journal/000000000000000a");
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > journal::CHUNK + 1000, "{} bytes", bytes.len());
        s.alert_state.clear().unwrap();
        assert_eq!(state_ids(&s), ids);
        bytes[journal::CHUNK + 500] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = crate::error_chain(&s.restore().unwrap_err());
        assert!(e.contains("000000000000000a"), "{e}");
        s.journal_files.remove(10u64.to_be_bytes()).unwrap();
        // The restore that read it put its alert states into the tree.
        s.alert_state.clear().unwrap();

        // Layout 2's files, marked with their length and a hash of the
        // whole, are still read.
        let blob = journal::encode_blob(&[], &[], &[("p9", Some(encode(&empty).unwrap()))]);
        std::fs::write(dir.path().join("journal/000000000000000b"), &blob).unwrap();
        s.journal_files.insert(11u64.to_be_bytes(), old_marker(&blob).as_slice()).unwrap();
        assert_eq!(state_ids(&s), vec!["p9"]);
        std::fs::write(dir.path().join("journal/000000000000000b"), b"not it").unwrap();
        assert!(s.restore().is_err());
    }

    #[test]
    fn the_alert_history_keeps_its_bound_and_never_drops_an_alert_not_cleared() {
        use crate::alerts::{Features, Origin, Severity, Status};
        let dir = tempfile::tempdir().unwrap();
        let alert = |i: usize, status| Alert {
            alert_id: format!("a{i:06}"),
            device_id: format!("p{}", i % 50),
            status,
            severity: Severity::Warning,
            origin: Origin::Model,
            fault_probability: 0.9,
            threshold: 0.8,
            window_start_ms: i as i64,
            window_end_ms: i as i64 + 1,
            model: "m".into(),
            model_version: "1".into(),
            message: String::new(),
            raised_at_ms: i as i64,
            updated_at_ms: i as i64,
            acknowledged_by: None,
            comment: None,
            features: Features::default(),
            contributions: Features::default(),
        };
        let open = 600;
        {
            let s = Store::open(dir.path()).unwrap();
            // Open alerts first (the oldest), then cleared ones, in chunks as
            // the daemon writes them.
            let all: Vec<Alert> = (0..ALERT_HISTORY + 1)
                .map(|i| alert(i, if i < open { Status::Open } else { Status::Cleared }))
                .collect();
            for chunk in all.chunks(64) {
                s.write_history(chunk, &[]).unwrap();
            }
            let kept = s.alerts().unwrap();
            assert_eq!(kept.len(), ALERT_HISTORY * 9 / 10, "trimmed to 90 % once past the bound");
            assert_eq!(kept.iter().filter(|a| a.status == Status::Open).count(), open, "open alerts stay");
            assert_eq!(kept.last().unwrap().alert_id, format!("a{ALERT_HISTORY:06}"), "the oldest cleared go");
            // Writing an alert again (its newer record) does not count it twice.
            for _ in 0..3 {
                s.write_history(&all[ALERT_HISTORY - 63..], &[]).unwrap();
            }
            assert_eq!(s.alerts().unwrap().len(), ALERT_HISTORY * 9 / 10);
            s.flush().unwrap();
        }
        // The count and the cleared alerts come from the tree when the store
        // opens again. The oldest cleared alert changed since: it stays.
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        let oldest =
            s.alerts().unwrap().into_iter().filter(|a| a.status == Status::Cleared).min_by_key(|a| a.updated_at_ms);
        let mut again = oldest.unwrap();
        again.updated_at_ms = 10 * ALERT_HISTORY as i64;
        s.write_history(std::slice::from_ref(&again), &[]).unwrap();
        let more: Vec<Alert> =
            (0..ALERT_HISTORY / 10 + 1).map(|i| alert(2 * ALERT_HISTORY + i, Status::Cleared)).collect();
        s.write_history(&more, &[]).unwrap();
        let kept = s.alerts().unwrap();
        assert_eq!(kept.len(), ALERT_HISTORY * 9 / 10);
        assert!(kept.contains(&again), "changed since its first clearing: not the oldest");
        assert_eq!(kept.iter().filter(|a| a.status == Status::Open).count(), open, "open alerts stay");
    }

    #[test]
    fn a_page_of_alerts_is_chosen_by_head_newest_first_and_counted() {
        use crate::alerts::Status;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let alert = |id: &str, device: &str, status, updated_at_ms| Alert {
            device_id: device.into(),
            status,
            updated_at_ms,
            ..sample_alert(id)
        };
        let all = [
            alert("a1", "p1", Status::Cleared, 10),
            alert("a2", "p1", Status::Open, 30),
            alert("a3", "p2", Status::Open, 20),
            alert("a4", "p1", Status::Acknowledged, 30),
            alert("a5", "p1", Status::Open, 5),
        ];
        s.write_history(&all, &[]).unwrap();
        let ids = |(total, page): (usize, Vec<Alert>)| {
            (total, page.into_iter().map(|a| a.alert_id).collect::<Vec<_>>().join(" "))
        };
        // Newest change first, ties by id; whole records come back.
        let (_, page) = s.alerts_page(|_| true, 0, 10).unwrap();
        assert_eq!(page[0], all[1]);
        assert_eq!(ids(s.alerts_page(|_| true, 0, 10).unwrap()), (5, "a2 a4 a3 a1 a5".into()));
        // The total counts every match, the page holds `take` from `skip`.
        let p1 = |h: &AlertHead<'_>| h.device_id == "p1" && h.status != Status::Cleared;
        assert_eq!(ids(s.alerts_page(p1, 1, 1).unwrap()), (3, "a4".into()));
        assert_eq!(ids(s.alerts_page(p1, 7, 1).unwrap()), (3, String::new()));
        let mut heads = Vec::new();
        s.scan_alert_heads(|k, h| heads.push((k.to_vec(), h.alert_id.to_owned(), h.updated_at_ms))).unwrap();
        assert_eq!(heads[3], (alert_key("a4"), "a4".to_owned(), 30));
        // One alert by id, and a choice in alert-id order.
        assert_eq!(s.alert("a3").unwrap().as_ref(), Some(&all[2]));
        assert_eq!(s.alert("a9").unwrap(), None);
        let open: Vec<String> =
            s.alerts_where(|h| h.status == Status::Open).unwrap().into_iter().map(|a| a.alert_id).collect();
        assert_eq!(open, ["a2", "a3", "a5"]);
    }

    #[test]
    fn a_layout_1_database_with_its_journal_in_sled_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let empty = encode(&DeviceState::default()).unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert("layout", &1u32.to_be_bytes()).unwrap();
            let blob = journal::encode_blob(&[], &[], &[("p1", Some(empty))]);
            db.open_tree("journal").unwrap().insert(5u64.to_be_bytes(), blob).unwrap();
            db.flush().unwrap();
        }
        let s = retry(|| Store::open(dir.path()).map_err(|e| crate::error_chain(&e)));
        assert_eq!(s.db.open_tree("meta").unwrap().get("layout").unwrap().unwrap().as_ref(), LAYOUT.to_be_bytes());
        // A new database records its layout too.
        let fresh = tempfile::tempdir().unwrap();
        let n = Store::open(fresh.path()).unwrap();
        assert_eq!(n.db.open_tree("meta").unwrap().get("layout").unwrap().unwrap().as_ref(), LAYOUT.to_be_bytes());
        assert_eq!(state_ids(&s), vec!["p1"]);
        assert_eq!(s.restore().unwrap().next_seq, 6);
        // Its blobs go like the files once no device needs them.
        let c = Checkpoint { seq: 6, devices: Changes { journal_from: 6, ..Default::default() }, ..Default::default() };
        s.checkpoint(&c).unwrap();
        assert!(s.journal.is_empty());
    }

    #[test]
    fn snapshots_are_taken_from_the_engine_as_the_file_is_written_and_without_it_the_checkpoint_fails() {
        use crate::clean::Cleaning;
        use crate::window::{StateLimits, WindowSpec};
        const S: i64 = 1000;
        let spec = WindowSpec {
            size_ms: 60 * S,
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            idle_timeout_ms: 600 * S,
        };
        let mut a = crate::window::Engine::new(spec, StateLimits::default(), Cleaning::default());
        a.set_journal(4);
        let mut out = Vec::new();
        a.record("p1", 1000, [("a", 1.0), ("b", 2.0)], 0, &mut out);
        a.record("p2", 2000, [("a", 3.0)], 0, &mut out);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Named, not taken: the checkpoint takes them from the engine.
        let devices = a.checkpoint_changes(0, true);
        assert_eq!(devices.to_snapshot.len(), 2);
        assert!(devices.updated.is_empty());
        // Without the engine nothing counts, and no file is left.
        let lost = Changes { to_snapshot: devices.to_snapshot.clone(), ..Changes::default() };
        let err =
            store.checkpoint(&Checkpoint { seq: 0, devices: lost, full: true, ..Default::default() }).unwrap_err();
        assert!(matches!(err, StateError::NoSnapshot(ref id) if id == "p1" || id == "p2"), "{err}");
        assert!(store.journal_files.get(0u64.to_be_bytes()).unwrap().is_none());
        assert!(!store.journal_path(0).exists());
        // With it, a restore has both devices as they were.
        store.checkpoint(&Checkpoint { seq: 1, devices, engine: Some(&a), full: true, ..Default::default() }).unwrap();
        let mut r = store.restore().unwrap();
        let mut b = crate::window::Engine::new(spec, StateLimits::default(), Cleaning::default());
        b.set_journal(4);
        restore_engine(&mut b, &mut r).unwrap();
        let sorted = |e: &crate::window::Engine| {
            let mut v = e.snapshot_all();
            v.sort_by(|x, y| x.id.cmp(&y.id));
            format!("{v:?}")
        };
        assert_eq!(sorted(&a), sorted(&b));
        assert!(b.snapshot_of("p1").is_some() && b.snapshot_of("p2").is_some());
    }
}
