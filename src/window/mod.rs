//! Per-device event-time tumbling windows (SPEC 2).
//!
//! [`Engine`] is synchronous and I/O-free: a source task feeds it readings
//! with [`Engine::record`], a timer calls [`Engine::close_idle`], and both
//! append the windows they close to a caller's `Vec`. Processing time is
//! passed in (`now_ms`), never read here, so tests drive it by hand.
//!
//! Per device: the watermark is the largest event time seen minus
//! `max_out_of_orderness`; a window `[start, start + size)` closes when the
//! watermark reaches its end, or when the device has been silent for
//! `idle_timeout` of processing time. A closed window is kept until the
//! watermark passes `end + allowed_lateness`; a reading for it until then
//! updates it and re-emits it marked as an update. Later readings are late:
//! counted and kept in the bounded [`LateStore`].

pub mod journal;
pub mod stats;

use std::collections::{HashMap, HashSet};

/// The device table's hasher: foldhash is several times faster than
/// SipHash on short ids and randomly seeded per process, so a producer
/// cannot choose ids that collide.
/// Keyed by the device's own id ([`Device::id`], the same allocation).
type DeviceMap = HashMap<Arc<str>, Device, foldhash::fast::RandomState>;
use std::sync::Arc;

use crate::clean::Cleaning;
use crate::reading::Reading;
pub use stats::{stat_index, SignalStats, WindowStats, STAT_NAMES};

/// Window timing, in milliseconds (config `[window]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub size_ms: i64,
    pub max_out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: i64,
}

/// Bounds on the engine's memory (config `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    pub max_devices: usize,
    pub max_signals_per_device: usize,
    /// Open windows per device; the same number bounds the closed windows
    /// kept for late updates.
    pub max_open_windows_per_device: usize,
    pub late_store: usize,
    /// A device silent this long (processing time) with no windows left is
    /// forgotten, so a burst of one-off device ids does not fill the table for good.
    pub device_ttl_ms: i64,
}

impl StateLimits {
    /// No bounds but the machine's memory: for a file processed offline,
    /// which is the whole world (`faultline features`, `evaluate`).
    pub fn unbounded() -> StateLimits {
        StateLimits {
            max_devices: usize::MAX,
            max_signals_per_device: usize::MAX,
            max_open_windows_per_device: usize::MAX,
            late_store: 0,
            device_ttl_ms: i64::MAX,
        }
    }
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_devices: 100_000,
            max_signals_per_device: 64,
            max_open_windows_per_device: 16,
            late_store: 10_000,
            device_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

/// Which bound was hit (label `limit` of `faultline_limit_hits_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Devices,
    SignalsPerDevice,
    OpenWindowsPerDevice,
    LateStore,
}

impl Limit {
    pub const ALL: [Limit; 4] =
        [Limit::Devices, Limit::SignalsPerDevice, Limit::OpenWindowsPerDevice, Limit::LateStore];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Devices => "devices",
            Limit::SignalsPerDevice => "signals_per_device",
            Limit::OpenWindowsPerDevice => "open_windows_per_device",
            Limit::LateStore => "late_store",
        }
    }
}

/// What closed a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The device's watermark passed the window's end.
    Watermark,
    /// The device was silent for `idle_timeout`.
    Idle,
    /// A reading arrived after the watermark passed the window's end, within
    /// the allowed lateness: the window is re-emitted as an update, or, if
    /// the device had no such window, created and emitted at once.
    Late,
    /// `max_open_windows_per_device` forced the oldest open window shut.
    Limit,
    /// End of input (offline feature extraction).
    Flush,
}

/// A window's statistics as emitted on close or update.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub device_id: Arc<str>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// True when this re-emits an already closed window after a late reading.
    pub update: bool,
    pub trigger: Trigger,
    /// Signals seen in the window, in the device's first-seen order, with
    /// the statistics in [`STAT_NAMES`] order.
    pub signals: Vec<(Arc<str>, [f64; 13])>,
}

impl ClosedWindow {
    /// One feature by its `<signal>.<stat>` name.
    pub fn feature(&self, name: &str) -> Option<f64> {
        let (signal, stat) = name.rsplit_once('.')?;
        let i = stat_index(stat)?;
        self.signals.iter().find(|(s, _)| s.as_ref() == signal).map(|(_, v)| v[i])
    }
}

/// What [`Engine::record`] did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Added to an open window.
    Accepted,
    /// Added to a closed window, which was re-emitted as an update (or
    /// emitted for the first time, see [`Trigger::Late`]).
    Updated,
    /// Too late: counted and put in the late store.
    Late,
    /// A new device while `max_devices` are tracked: refused.
    DeviceLimit,
}

/// Counters the metrics module publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub accepted: u64,
    pub updates: u64,
    pub late: u64,
    pub windows_closed: u64,
    pub windows_updated: u64,
    pub values_dropped_signal_limit: u64,
    pub limit_hits: [u64; 4],
    pub devices_forgotten: u64,
}

/// One of a device's signals: its name and its cleaning rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Signal {
    name: Arc<str>,
    rule: Option<usize>,
}

#[derive(Debug, Clone)]
struct Window {
    start: i64,
    stats: WindowStats,
}

#[derive(Debug)]
struct Device {
    id: Arc<str>,
    /// Changed since the last [`Engine::take_changes`].
    dirty: bool,
    max_ts: i64,
    last_seen_ms: i64,
    /// In first-seen order; shared with the devices that have the same
    /// list ([`SignalLists`]).
    signals: Arc<[Signal]>,
    /// Sorted by start.
    open: Vec<Window>,
    /// Closed but still updatable, sorted by start.
    closed: Vec<Window>,
    /// Journal entries since the last checkpoint ([`journal`]).
    journal: Vec<u8>,
    /// Journal bytes since the last snapshot, over all checkpoints.
    logged: usize,
    /// The first checkpoint whose journal holds entries of this device
    /// newer than its snapshot.
    journal_since: Option<u64>,
    /// The next checkpoint takes a snapshot: something other than a
    /// reading changed the device, and its journal was dropped.
    snap_next: bool,
    /// Its journal outgrew a snapshot: a checkpoint takes one when its
    /// budget allows ([`Engine::checkpoint_changes`]), and the journal goes
    /// on until then.
    snap_wanted: bool,
    /// Spreads the devices' periodic snapshots over checkpoints.
    phase: u64,
    /// Journal bytes worth a snapshot, set at the last one (0: none yet).
    journal_bound: usize,
    /// The checkpoint that holds the device's latest snapshot (`u64::MAX`:
    /// none yet). Its journal file must stay until a newer snapshot.
    snap_seq: u64,
}

impl Device {
    fn new(id: Arc<str>, now_ms: i64, phase: u64) -> Device {
        Device {
            id,
            dirty: false,
            max_ts: i64::MIN,
            last_seen_ms: now_ms,
            signals: Arc::default(),
            open: Vec::new(),
            closed: Vec::new(),
            journal: Vec::new(),
            logged: 0,
            journal_since: None,
            snap_next: false,
            snap_wanted: false,
            phase,
            journal_bound: 0,
            snap_seq: u64::MAX,
        }
    }

    /// Roughly what a snapshot of the device takes (a `SignalStats` is
    /// about 110 bytes encoded, and a snapshot holds the open and the
    /// closed windows).
    fn snapshot_bytes(&self) -> usize {
        let names: usize = self.signals.iter().map(|s| s.name.len() + 1).sum();
        64 + names + (self.open.len() + self.closed.len()).max(1) * self.signals.len() * 110
    }

    /// Whether the journal outgrew what a snapshot costs: about
    /// [`JOURNAL_PER_SNAPSHOT`] times the device's last snapshot (or its
    /// size now, before the first). Two things keep devices that started
    /// together from all reaching their bound at the same checkpoint, again
    /// and again (3,000-5,000 of 10,000 snapshots in one checkpoint of the
    /// memory soak, the largest transactions sled held): the bound is fixed
    /// at the snapshot, not moved when windows open and close, and it
    /// varies with the device's phase.
    fn journal_full(&self, spread: u64) -> bool {
        let spread = spread.max(1) as usize;
        let scale = spread / 2 + (self.phase as usize % spread);
        let bound = match self.journal_bound {
            0 => JOURNAL_PER_SNAPSHOT * self.snapshot_bytes(),
            b => b,
        };
        self.logged.saturating_mul(spread) > bound.saturating_mul(scale)
    }

    fn mark_snapshot(&mut self) {
        self.snap_next = true;
        self.journal = Vec::new();
    }

    fn watermark(&self, spec: &WindowSpec) -> i64 {
        self.max_ts.saturating_sub(spec.max_out_of_orderness_ms)
    }
}

/// Index of `name` among a device's signals. Readings list signals in the
/// same order nearly always, so position `hint` is tried first.
#[inline]
fn signal_index(signals: &[Signal], name: &str, hint: usize) -> Option<usize> {
    if signals.get(hint).is_some_and(|s| &*s.name == name) {
        return Some(hint);
    }
    signals.iter().position(|s| &*s.name == name)
}

/// Signal names shared by every device. A plant's devices mostly report
/// the same few signals: each device holding its own copies of the names
/// took ~380 bytes a device of 8 signals. Bounded: past [`SHARED_NAMES`]
/// distinct names, a new name gets its own copy (right, just not shared).
#[derive(Debug, Default)]
struct Names(HashSet<Arc<str>>);

/// At most this many signal names are shared ([`Names`]).
const SHARED_NAMES: usize = 4096;

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        if self.0.len() < SHARED_NAMES {
            self.0.insert(n.clone());
        }
        n
    }
}

/// Signal lists shared by the devices that report the same signals (a
/// plant's devices mostly do): a list of 8 signals is 256 bytes, which each
/// of 10,000 devices held. Bounded: past [`SHARED_LISTS`] lists, the ones
/// no device uses any more are dropped, and if that frees no room a new
/// list stays the device's own (right, just not shared).
#[derive(Debug, Default)]
struct SignalLists(HashSet<Arc<[Signal]>>);

/// At most this many signal lists are shared ([`SignalLists`]).
const SHARED_LISTS: usize = 1024;

impl SignalLists {
    /// `list`, or the shared list equal to it.
    fn share(&mut self, list: Arc<[Signal]>) -> Arc<[Signal]> {
        if let Some(l) = self.0.get(&*list) {
            return l.clone();
        }
        if self.0.len() >= SHARED_LISTS {
            self.0.retain(|l| Arc::strong_count(l) > 1);
        }
        if self.0.len() < SHARED_LISTS {
            self.0.insert(list.clone());
        }
        list
    }
}

/// Bounded, oldest-out store of late readings.
pub type LateStore = crate::bounded::BoundedLog<Reading>;

/// A device's journal may hold about this many snapshots' worth of bytes
/// before the next checkpoint takes a snapshot instead: more writes less
/// per checkpoint, less replays less at a restart. Each device's bound is
/// between half and one and a half times this, by its phase
/// (`Device::journal_full`).
pub const JOURNAL_PER_SNAPSHOT: usize = 2;

/// Journal bytes a device may hold between checkpoints before they are
/// weighed against a snapshot of it: ~50 readings of 8 signals. With 512
/// bytes, 1,000 devices at 25 readings a second each (`benches/load.sh
/// latency`) were all snapshotted at every checkpoint; a few KB of entries
/// are cheap to hold and to write.
const JOURNAL_HELD_FLOOR: usize = 4096;

/// Snapshots a checkpoint takes at most for journals that outgrew their
/// bound: twice a checkpoint's share of the devices (every device's turn
/// comes once in `spread` checkpoints), at least 256. The others wait
/// for a later checkpoint, their journal going on, so that a checkpoint
/// does not hold thousands of snapshots at once: bounds reached together
/// made checkpoints of ~2,000 snapshots in the 10,000-device soak, and
/// the encoded snapshots and sled's copies of the leaves they go to were
/// most of the high-water mark above the steady state. Turns, full
/// checkpoints and changes that are not readings are not deferred.
fn snapshot_budget(devices: usize, spread: u64) -> usize {
    (devices / spread.max(1) as usize * 2).max(256)
}

/// Bytes reserved for a journal entry: about what 8 signals take.
const JOURNAL_ENTRY_GUESS: usize = 128;

/// The per-device window state of every device.
#[derive(Debug)]
pub struct Engine {
    spec: WindowSpec,
    limits: StateLimits,
    cleaning: Cleaning,
    devices: DeviceMap,
    late: LateStore,
    counters: EngineCounters,
    /// Devices changed since the last [`Engine::take_changes`], and devices forgotten.
    changed: Vec<Arc<str>>,
    forgotten: Vec<Arc<str>>,
    /// With a journal (0: none), every device with journal entries is
    /// snapshotted at least once in this many checkpoints.
    journal_spread: u64,
    /// Devices created, for their snapshot phase.
    created: u64,
    /// At most this many snapshots a checkpoint for journals that outgrew
    /// their bound, when more wanted one (None: [`snapshot_budget`]).
    snapshots_per_checkpoint: Option<usize>,
    names: Names,
    lists: SignalLists,
    /// Scratch for one reading's values ([`Cx::values`]).
    values: Vec<(usize, f64)>,
}

impl Engine {
    pub fn new(spec: WindowSpec, limits: StateLimits, cleaning: Cleaning) -> Self {
        // Config validation refuses an empty window; the engine does not rely on it.
        let spec = WindowSpec { size_ms: spec.size_ms.max(1), ..spec };
        Engine {
            spec,
            limits,
            cleaning,
            devices: DeviceMap::default(),
            late: LateStore::new(limits.late_store),
            counters: EngineCounters::default(),
            changed: Vec::new(),
            forgotten: Vec::new(),
            journal_spread: 0,
            created: 0,
            snapshots_per_checkpoint: None,
            names: Names::default(),
            lists: SignalLists::default(),
            values: Vec::new(),
        }
    }

    /// Keeps a journal of the readings taken since each device's snapshot,
    /// for [`Engine::checkpoint_changes`]; every device is snapshotted at
    /// least once in `spread` checkpoints (0 turns the journal off).
    pub fn set_journal(&mut self, spread: u64) {
        self.journal_spread = spread;
        for d in self.devices.values_mut() {
            d.mark_snapshot();
        }
    }

    /// Overrides [`snapshot_budget`] (a test makes snapshots wait).
    pub fn set_snapshots_per_checkpoint(&mut self, n: usize) {
        self.snapshots_per_checkpoint = Some(n);
    }

    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    pub fn cleaning(&self) -> &Cleaning {
        &self.cleaning
    }

    /// New cleaning rules (SIGHUP): from the next value on, every device's
    /// signals are checked against them.
    pub fn set_cleaning(&mut self, cleaning: Cleaning) {
        self.cleaning.replace_rules(cleaning);
        // The shared lists carry the old rules.
        self.lists = SignalLists::default();
        for d in self.devices.values_mut() {
            let list: Vec<Signal> = d
                .signals
                .iter()
                .map(|s| Signal { name: s.name.clone(), rule: self.cleaning.rule_for(&s.name) })
                .collect();
            d.signals = self.lists.share(list.into());
            // A journal replays under the rules of its time: start afresh.
            d.mark_snapshot();
            mark_dirty(d, &mut self.changed);
        }
    }

    pub fn late_store(&self) -> &LateStore {
        &self.late
    }

    pub fn late_store_mut(&mut self) -> &mut LateStore {
        &mut self.late
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Open (not yet closed) windows over all devices.
    pub fn open_window_count(&self) -> usize {
        self.devices.values().map(|d| d.open.len()).sum()
    }

    /// The device's watermark, if it has one.
    pub fn watermark(&self, device_id: &str) -> Option<i64> {
        self.devices.get(device_id).filter(|d| d.max_ts != i64::MIN).map(|d| d.watermark(&self.spec))
    }

    /// Adds one reading (already decoded and valid) at processing time
    /// `now_ms`; windows it closes or updates are appended to `out`.
    pub fn record<'v>(
        &mut self,
        device_id: &str,
        ts_ms: i64,
        values: impl IntoIterator<Item = (&'v str, f64)>,
        now_ms: i64,
        out: &mut Vec<ClosedWindow>,
    ) -> Outcome {
        self.record_as(device_id, ts_ms, values, now_ms, out, false)
    }

    /// [`Engine::record`]; `replay` (a journal entry at a restart) keeps
    /// no journal and no late reading: both were written at the time.
    fn record_as<'v>(
        &mut self,
        device_id: &str,
        ts_ms: i64,
        values: impl IntoIterator<Item = (&'v str, f64)>,
        now_ms: i64,
        out: &mut Vec<ClosedWindow>,
        replay: bool,
    ) -> Outcome {
        let dev = match self.devices.get_mut(device_id) {
            Some(dev) => dev,
            None => {
                if self.devices.len() >= self.limits.max_devices {
                    self.counters.limit_hits[Limit::Devices as usize] += 1;
                    return Outcome::DeviceLimit;
                }
                self.created += 1;
                let phase = self.created % self.journal_spread.max(1);
                let id: Arc<str> = Arc::from(device_id);
                self.devices.entry(id.clone()).or_insert(Device::new(id, now_ms, phase))
            }
        };
        mark_dirty(dev, &mut self.changed);
        let spread = self.journal_spread;
        let log = spread > 0 && !dev.snap_next && !replay;
        let before = dev.journal.len();
        let mut cx = Cx {
            spec: &self.spec,
            limits: &self.limits,
            cleaning: &mut self.cleaning,
            counters: &mut self.counters,
            names: &mut self.names,
            lists: &mut self.lists,
            values: &mut self.values,
            out,
            log,
        };
        let result = record_in(dev, &mut cx, ts_ms, values, now_ms);
        if log {
            dev.logged += dev.journal.len() - before;
            if dev.journal.len() > JOURNAL_HELD_FLOOR && dev.journal.len() > dev.snapshot_bytes() {
                // More since the last checkpoint than a snapshot of the
                // device: the checkpoint takes a snapshot, and the entries
                // go now. At 100 readings a message a device took ~800
                // readings a second, ~63 KB of entries held until the
                // checkpoint, 131 MB for 1,000 devices.
                dev.mark_snapshot();
            } else if !dev.snap_wanted && dev.journal_full(spread) {
                dev.snap_wanted = true;
            }
        }
        match result {
            Ok(outcome) => outcome,
            Err(values) => {
                self.counters.late += 1;
                if !replay {
                    let r = Reading { device_id: device_id.to_owned(), ts_ms, values };
                    if !self.late.push(r) {
                        self.counters.limit_hits[Limit::LateStore as usize] += 1;
                    }
                }
                Outcome::Late
            }
        }
    }

    /// Applies journal entries, one device's group at a time, in order (a
    /// restart, after the snapshots); each group comes with the checkpoint
    /// that wrote it. Windows they close are not emitted again: their
    /// results were stored when it happened. A device replayed keeps its
    /// journal where it is, in the files of those checkpoints, and is
    /// snapshotted at its turn or when its journal is due, as if there had
    /// been no restart. Snapshotting every device replayed at the next
    /// checkpoint made that one hold nearly all of them: after a crash
    /// under load, 9,490 snapshots, 14 MB and 163 ms against the usual 167
    /// and 20 ms (benches/RESULTS.md, 34). Returns the entries applied,
    /// or the index of a corrupt group.
    pub fn replay<'a>(
        &mut self,
        groups: impl IntoIterator<Item = (&'a str, u64, &'a [u8])>,
    ) -> Result<usize, (usize, journal::Corrupt)> {
        // Counters count what came in, once: the replay leaves them as they were.
        let (counters, cleaning) = (self.counters.clone(), self.cleaning.clone());
        let spread = self.journal_spread;
        let mut n = 0;
        let mut result = Ok(());
        // Buffers for all the groups: most hold one entry.
        let (mut values, mut out) = (Vec::new(), Vec::new());
        for (i, (device_id, seq, entries)) in groups.into_iter().enumerate() {
            match self.replay_entries(device_id, entries, &mut values, &mut out) {
                Ok(k) => n += k,
                Err(e) => {
                    result = Err((i, e));
                    break;
                }
            }
            if let Some(d) = self.devices.get_mut(device_id) {
                // Those entries are on disk already: nothing to write.
                d.dirty = false;
                d.journal_since.get_or_insert(seq);
                d.logged = d.logged.saturating_add(entries.len());
                if !d.snap_wanted && d.journal_full(spread) {
                    d.snap_wanted = true;
                }
            }
        }
        let devices = &self.devices;
        self.changed.retain(|id| devices.get(&**id).is_some_and(|d| d.dirty));
        self.counters = counters;
        self.cleaning = cleaning;
        result.map(|()| n)
    }

    fn replay_entries(
        &mut self,
        device_id: &str,
        entries: &[u8],
        values: &mut Vec<(Arc<str>, f64)>,
        out: &mut Vec<ClosedWindow>,
    ) -> Result<usize, journal::Corrupt> {
        let mut c = journal::Cursor::new(entries);
        let mut n = 0;
        while !c.is_empty() {
            let ts = c.i()?;
            let now = c.i()?;
            values.clear();
            let signals = self.devices.get(device_id).map(|d| &d.signals[..]).unwrap_or_default();
            loop {
                let name: Arc<str> = match c.u()? {
                    0 => break,
                    1 => self.names.get(c.name()?),
                    i => match signals.get(usize::try_from(i - 2).unwrap_or(usize::MAX)) {
                        Some(s) => s.name.clone(),
                        None => return Err(c.corrupt()),
                    },
                };
                values.push((name, c.f64()?));
            }
            self.record_as(device_id, ts, values.iter().map(|(k, v)| (&**k, *v)), now, out, true);
            out.clear();
            n += 1;
        }
        Ok(n)
    }

    /// Every device with the processing time it was last seen.
    pub fn devices_seen(&self) -> Vec<(Arc<str>, i64)> {
        self.devices.values().map(|d| (d.id.clone(), d.last_seen_ms)).collect()
    }

    /// Closes the open windows of devices silent for `idle_timeout`, drops
    /// closed windows nobody can update any more, and forgets devices
    /// silent for `device_ttl` with nothing left open.
    pub fn close_idle(&mut self, now_ms: i64, out: &mut Vec<ClosedWindow>) {
        let spec = self.spec;
        let ttl = self.limits.device_ttl_ms;
        let mut closed = 0;
        for dev in self.devices.values_mut() {
            let silent = now_ms.saturating_sub(dev.last_seen_ms);
            let idle = silent >= spec.idle_timeout_ms && !dev.open.is_empty();
            let expire =
                silent >= spec.idle_timeout_ms.saturating_add(spec.allowed_lateness_ms) && !dev.closed.is_empty();
            if idle || expire {
                dev.mark_snapshot();
                mark_dirty(dev, &mut self.changed);
            }
            if idle {
                for w in std::mem::take(&mut dev.open) {
                    out.push(emit(dev, &w, spec.size_ms, false, Trigger::Idle));
                    closed += 1;
                    insert_sorted(&mut dev.closed, w);
                }
            }
            // Nothing will move this device's watermark: give late readings
            // the same grace in processing time, then move the watermark past
            // what was closed, so a straggler for an expired window is late
            // instead of opening the same window a second time.
            if expire {
                if let Some(last) = dev.closed.last() {
                    let wm = last.start.saturating_add(spec.size_ms).saturating_add(spec.allowed_lateness_ms);
                    dev.max_ts = dev.max_ts.max(wm.saturating_add(spec.max_out_of_orderness_ms));
                }
                dev.closed.clear();
            }
        }
        self.counters.windows_closed += closed;
        let before = self.devices.len();
        let forgotten = &mut self.forgotten;
        self.devices.retain(|_, d| {
            let keep = !(d.open.is_empty() && d.closed.is_empty() && now_ms.saturating_sub(d.last_seen_ms) >= ttl);
            if !keep {
                forgotten.push(d.id.clone());
            }
            keep
        });
        self.counters.devices_forgotten += (before - self.devices.len()) as u64;
    }

    /// What changed since the last call: snapshots of the devices whose
    /// state changed and the ids of devices forgotten, for a checkpoint.
    /// A device forgotten and seen again is in both lists: apply
    /// `forgotten` first.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for id in std::mem::take(&mut self.changed) {
            // A device not found was forgotten since: it is in `self.forgotten`.
            if let Some(dev) = self.devices.get_mut(&*id) {
                dev.dirty = false;
                changes.updated.push(snapshot(dev));
            }
        }
        changes.forgotten.append(&mut self.forgotten);
        changes
    }

    /// What a checkpoint numbered `seq` writes: the devices that need a
    /// snapshot (`full`: all of them; in `to_snapshot`, for the store to
    /// take from the engine as it writes them), the journal entries of the
    /// others, and the devices forgotten. Every device is snapshotted at
    /// its turn, once in `spread` checkpoints, silent or not, so that the
    /// older journal files can go (they are the only copy of a snapshot);
    /// but a checkpoint with nothing else to write takes no turns, so an
    /// idle daemon writes nothing. `journal_from` tells which older journal
    /// files no device needs any more, for its entries or its latest
    /// snapshot. Without a journal (`spread` 0) every checkpoint is full.
    pub fn checkpoint_changes(&mut self, seq: u64, full: bool) -> Changes {
        let spread = self.journal_spread;
        let full = full || spread == 0;
        let busy = full || !self.changed.is_empty() || !self.forgotten.is_empty();
        // Room for every device that took readings, made once: grown a
        // push at a time, the list (40 bytes a device) was copied at each
        // doubling, the old and the new copy side by side at the last one
        // (~1 MB for 10,000 devices, fresh pages at every checkpoint since
        // the trim had given them back). It is most of what a checkpoint
        // held on top of the rest (benches/RESULTS.md, 38).
        let mut changes = Changes { logged: Vec::with_capacity(self.changed.len()), ..Changes::default() };
        self.changed.clear();
        let mut oldest = seq;
        let mut budget = self.snapshots_per_checkpoint.unwrap_or_else(|| snapshot_budget(self.devices.len(), spread));
        for dev in self.devices.values_mut() {
            let turn = busy && (seq.wrapping_add(dev.phase)) % spread.max(1) == 0;
            let due = turn || dev.journal_since.is_some_and(|since| seq.saturating_sub(since) + 1 >= spread);
            let dirty = std::mem::replace(&mut dev.dirty, false);
            let must = full || dev.snap_next || due || (dirty && dev.journal.is_empty());
            let wanted = dev.snap_wanted && budget > 0;
            if wanted && !must {
                budget -= 1;
            }
            if must || wanted {
                changes.to_snapshot.push(dev.id.clone());
                dev.journal_bound = JOURNAL_PER_SNAPSHOT * dev.snapshot_bytes();
                dev.journal = Vec::new();
                dev.logged = 0;
                dev.journal_since = None;
                dev.snap_next = false;
                dev.snap_wanted = false;
                dev.snap_seq = seq;
            } else if dirty {
                let entries = std::mem::take(&mut dev.journal);
                changes.logged.push((dev.id.clone(), entries));
                dev.journal_since.get_or_insert(seq);
            }
            oldest = oldest.min(dev.journal_since.unwrap_or(seq)).min(dev.snap_seq);
        }
        changes.forgotten.append(&mut self.forgotten);
        changes.journal_from = oldest;
        changes
    }

    /// A device's state as it is now, if it is tracked.
    pub fn snapshot_of(&self, device_id: &str) -> Option<DeviceSnapshot> {
        self.devices.get(device_id).map(snapshot)
    }

    /// Every device's state (for a full checkpoint or a test).
    pub fn snapshot_all(&self) -> Vec<DeviceSnapshot> {
        self.devices.values().map(snapshot).collect()
    }

    /// Puts back a device from a checkpoint, replacing any state it had;
    /// `seq` is the checkpoint that wrote the snapshot (`u64::MAX`: none
    /// that must be kept). Devices past `max_devices` are refused
    /// (returns false).
    pub fn restore(&mut self, s: &DeviceSnapshot, seq: u64) -> bool {
        if !self.devices.contains_key(s.id.as_str()) && self.devices.len() >= self.limits.max_devices {
            self.counters.limit_hits[Limit::Devices as usize] += 1;
            return false;
        }
        let signals: Vec<Signal> = s
            .signals
            .iter()
            .map(|name| Signal { rule: self.cleaning.rule_for(name), name: self.names.get(name) })
            .collect();
        let signals = self.lists.share(signals.into());
        let window = |w: &WindowSnapshot| Window { start: w.start, stats: WindowStats::from_signals(&w.stats) };
        let mut open: Vec<Window> = s.open.iter().map(window).collect();
        let mut closed: Vec<Window> = s.closed.iter().map(window).collect();
        open.sort_by_key(|w| w.start);
        closed.sort_by_key(|w| w.start);
        self.created += 1;
        let dev = Device {
            max_ts: s.max_ts,
            signals,
            open,
            closed,
            snap_seq: seq,
            ..Device::new(Arc::from(s.id.as_str()), s.last_seen_ms, self.created % self.journal_spread.max(1))
        };
        self.devices.insert(dev.id.clone(), dev);
        true
    }

    /// Closes every open window (end of an offline input).
    pub fn flush(&mut self, out: &mut Vec<ClosedWindow>) {
        let spec = self.spec;
        for dev in self.devices.values_mut() {
            for w in std::mem::take(&mut dev.open) {
                out.push(emit(dev, &w, spec.size_ms, false, Trigger::Flush));
                self.counters.windows_closed += 1;
                insert_sorted(&mut dev.closed, w);
            }
        }
    }
}

/// One device's window state as a checkpoint stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSnapshot {
    pub id: String,
    /// Largest event time seen (`i64::MIN`: none yet).
    pub max_ts: i64,
    /// Processing time of the last reading.
    pub last_seen_ms: i64,
    /// Signal names in first-seen order; window statistics are indexed alike.
    pub signals: Vec<String>,
    pub open: Vec<WindowSnapshot>,
    pub closed: Vec<WindowSnapshot>,
}

/// One window of a [`DeviceSnapshot`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowSnapshot {
    pub start: i64,
    pub stats: Vec<SignalStats>,
}

/// What [`Engine::take_changes`] returns.
#[derive(Debug, Default)]
pub struct Changes {
    pub updated: Vec<DeviceSnapshot>,
    /// Devices to snapshot ([`Engine::checkpoint_changes`]): the store
    /// takes each snapshot from the engine as it writes it
    /// ([`crate::state::Checkpoint::engine`]), one at a time. Taken here,
    /// the few hundred of a checkpoint (~2.5 KB each with two windows of 8
    /// signals) were held together, up to 1.5 MB on top of the rest
    /// (benches/RESULTS.md, 38).
    pub to_snapshot: Vec<Arc<str>>,
    /// Devices whose change is in their journal entries instead.
    pub logged: Vec<(Arc<str>, Vec<u8>)>,
    pub forgotten: Vec<Arc<str>>,
    /// Journal blobs numbered below this are no longer needed
    /// ([`Engine::checkpoint_changes`]).
    pub journal_from: u64,
}

impl Changes {
    /// No device to write or forget (`journal_from` aside).
    pub fn is_empty(&self) -> bool {
        self.updated.is_empty() && self.to_snapshot.is_empty() && self.logged.is_empty() && self.forgotten.is_empty()
    }
}

fn snapshot(dev: &Device) -> DeviceSnapshot {
    let window = |w: &Window| WindowSnapshot { start: w.start, stats: w.stats.to_signals() };
    DeviceSnapshot {
        id: dev.id.to_string(),
        max_ts: dev.max_ts,
        last_seen_ms: dev.last_seen_ms,
        signals: dev.signals.iter().map(|s| s.name.to_string()).collect(),
        open: dev.open.iter().map(window).collect(),
        closed: dev.closed.iter().map(window).collect(),
    }
}

/// The engine's parts a device's update needs beside the device itself.
struct Cx<'a> {
    spec: &'a WindowSpec,
    limits: &'a StateLimits,
    cleaning: &'a mut Cleaning,
    counters: &'a mut EngineCounters,
    names: &'a mut Names,
    lists: &'a mut SignalLists,
    /// The reading's values by signal index (scratch, empty between readings).
    values: &'a mut Vec<(usize, f64)>,
    out: &'a mut Vec<ClosedWindow>,
    /// Write the reading to the device's journal.
    log: bool,
}

/// Adds a reading to `dev`. `Err` carries the values of a late reading
/// back for the late store.
fn record_in<'v>(
    dev: &mut Device,
    cx: &mut Cx<'_>,
    ts_ms: i64,
    values: impl IntoIterator<Item = (&'v str, f64)>,
    now_ms: i64,
) -> Result<Outcome, Vec<(String, f64)>> {
    let spec = *cx.spec;
    let start = ts_ms.div_euclid(spec.size_ms) * spec.size_ms;
    let end = start.saturating_add(spec.size_ms);
    dev.last_seen_ms = now_ms;
    let wm = dev.watermark(&spec);
    let known = dev.signals.len();
    if cx.log {
        // One allocation for the entry (most journals hold one or two
        // between checkpoints), not a string of reallocations as it grows.
        dev.journal.reserve(JOURNAL_ENTRY_GUESS);
        journal::put_i(&mut dev.journal, ts_ms);
        journal::put_i(&mut dev.journal, now_ms);
    }

    // Where does the reading go?
    enum Slot {
        Open(usize),
        Closed(usize),
        NewOpen,
        NewClosed,
    }
    let slot = if let Some(i) = dev.open.iter().position(|w| w.start == start) {
        Slot::Open(i)
    } else if let Some(i) = dev.closed.iter().position(|w| w.start == start) {
        if wm < end.saturating_add(spec.allowed_lateness_ms) {
            Slot::Closed(i)
        } else {
            return Err(late_values(dev, cx.log, values));
        }
    } else if dev.max_ts != i64::MIN && end <= wm {
        if wm < end.saturating_add(spec.allowed_lateness_ms) {
            Slot::NewClosed
        } else {
            return Err(late_values(dev, cx.log, values));
        }
    } else {
        Slot::NewOpen
    };

    let window = match slot {
        Slot::Open(i) => &mut dev.open[i],
        Slot::Closed(i) => &mut dev.closed[i],
        Slot::NewOpen => {
            if dev.open.len() >= cx.limits.max_open_windows_per_device.max(1) {
                // Close the oldest early rather than refuse data.
                let w = dev.open.remove(0);
                cx.out.push(emit(dev, &w, spec.size_ms, false, Trigger::Limit));
                cx.counters.windows_closed += 1;
                cx.counters.limit_hits[Limit::OpenWindowsPerDevice as usize] += 1;
                insert_sorted(&mut dev.closed, w);
            }
            let i =
                insert_sorted(&mut dev.open, Window { start, stats: WindowStats::with_capacity(dev.signals.len()) });
            &mut dev.open[i]
        }
        Slot::NewClosed => {
            let i =
                insert_sorted(&mut dev.closed, Window { start, stats: WindowStats::with_capacity(dev.signals.len()) });
            &mut dev.closed[i]
        }
    };

    // A name repeated within one reading counts once, with its first value.
    let mut seen_low: u64 = 0;
    let mut seen_high: Vec<usize> = Vec::new();
    for (hint, (name, v)) in values.into_iter().enumerate() {
        let found = signal_index(&dev.signals, name, hint);
        if cx.log {
            match found {
                Some(i) if i < known => journal::put_u(&mut dev.journal, i as u64 + 2),
                _ => {
                    dev.journal.push(1);
                    journal::put_name(&mut dev.journal, name);
                }
            }
            dev.journal.extend_from_slice(&v.to_le_bytes());
        }
        let idx = match found {
            Some(i) => i,
            None if dev.signals.len() >= cx.limits.max_signals_per_device => {
                cx.counters.values_dropped_signal_limit += 1;
                cx.counters.limit_hits[Limit::SignalsPerDevice as usize] += 1;
                continue;
            }
            None => {
                // A new list (shared at the end of the reading).
                let mut list = dev.signals.to_vec();
                list.push(Signal { name: cx.names.get(name), rule: cx.cleaning.rule_for(name) });
                dev.signals = list.into();
                dev.signals.len() - 1
            }
        };
        if idx < 64 {
            if seen_low & (1 << idx) != 0 {
                continue;
            }
            seen_low |= 1 << idx;
        } else if seen_high.contains(&idx) {
            continue;
        } else {
            seen_high.push(idx);
        }
        if let Some(rule) = dev.signals[idx].rule {
            if !cx.cleaning.check(rule, v) {
                continue;
            }
        }
        cx.values.push((idx, v));
    }
    window.stats.push(cx.values, ts_ms, start);
    cx.values.clear();

    if cx.log {
        dev.journal.push(0);
    }
    if dev.signals.len() > known {
        dev.signals = cx.lists.share(std::mem::take(&mut dev.signals));
    }

    let outcome = match slot {
        Slot::Open(_) | Slot::NewOpen => {
            cx.counters.accepted += 1;
            Outcome::Accepted
        }
        Slot::Closed(i) => {
            cx.out.push(emit(dev, &dev.closed[i], spec.size_ms, true, Trigger::Late));
            cx.counters.updates += 1;
            cx.counters.windows_updated += 1;
            Outcome::Updated
        }
        Slot::NewClosed => {
            if let Some(w) = dev.closed.iter().find(|w| w.start == start) {
                cx.out.push(emit(dev, w, spec.size_ms, false, Trigger::Late));
            }
            cx.counters.updates += 1;
            cx.counters.windows_closed += 1;
            Outcome::Updated
        }
    };

    // Advance the watermark and close what it passed.
    if ts_ms > dev.max_ts {
        dev.max_ts = ts_ms;
        let wm = dev.watermark(&spec);
        let open = dev.open.len();
        while dev.open.first().is_some_and(|w| w.start.saturating_add(spec.size_ms) <= wm) {
            let w = dev.open.remove(0);
            cx.out.push(emit(dev, &w, spec.size_ms, false, Trigger::Watermark));
            cx.counters.windows_closed += 1;
            insert_sorted(&mut dev.closed, w);
        }
        if dev.open.len() < open {
            // The reading that closed a window opened the next one first.
            dev.open.shrink_to(dev.open.len().max(1));
        }
        dev.closed.retain(|w| w.start.saturating_add(spec.size_ms).saturating_add(spec.allowed_lateness_ms) > wm);
        if dev.closed.is_empty() && dev.closed.capacity() > 0 {
            // Past the lateness nothing is closed until the next window
            // closes: 10,000 empty lists held ~1 MB of room.
            dev.closed = Vec::new();
        }
    }
    let keep = cx.limits.max_open_windows_per_device.max(1);
    if dev.closed.len() > keep {
        let excess = dev.closed.len() - keep;
        dev.closed.drain(..excess);
    }
    Ok(outcome)
}

/// Lists the device among those changed since the last checkpoint, once.
fn mark_dirty(dev: &mut Device, changed: &mut Vec<Arc<str>>) {
    if !dev.dirty {
        dev.dirty = true;
        changed.push(dev.id.clone());
    }
}

/// A late reading's values, for the late store; its journal entry ends
/// without them.
fn late_values<'v>(
    dev: &mut Device,
    log: bool,
    values: impl IntoIterator<Item = (&'v str, f64)>,
) -> Vec<(String, f64)> {
    if log {
        dev.journal.push(0);
    }
    values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn insert_sorted(v: &mut Vec<Window>, w: Window) -> usize {
    // A device nearly always holds one open and one closed window: room
    // for one, not the four a first push makes (~1 MB per list at 10,000
    // devices).
    v.reserve_exact(1);
    let i = v.partition_point(|x| x.start < w.start);
    v.insert(i, w);
    i
}

fn emit(dev: &Device, w: &Window, size_ms: i64, update: bool, trigger: Trigger) -> ClosedWindow {
    ClosedWindow {
        device_id: dev.id.clone(),
        start_ms: w.start,
        end_ms: w.start.saturating_add(size_ms),
        update,
        trigger,
        signals: dev
            .signals
            .iter()
            .enumerate()
            .take(w.stats.len())
            .filter(|(i, _)| w.stats.count(*i) > 0)
            .map(|(i, sig)| (sig.name.clone(), w.stats.finish(i)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Rule;
    use proptest::prelude::*;

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;

    fn spec(ooo: i64, lateness: i64) -> WindowSpec {
        WindowSpec {
            size_ms: MIN,
            max_out_of_orderness_ms: ooo,
            allowed_lateness_ms: lateness,
            idle_timeout_ms: 10 * MIN,
        }
    }

    fn engine(spec: WindowSpec) -> Engine {
        Engine::new(spec, StateLimits::default(), Cleaning::default())
    }

    /// Records `x` for signal "v" of device "d" at event time `ts`, processing time `now`.
    fn put(e: &mut Engine, ts: i64, x: f64, now: i64) -> (Outcome, Vec<ClosedWindow>) {
        let mut out = Vec::new();
        let o = e.record("d", ts, [("v", x)], now, &mut out);
        (o, out)
    }

    fn count(w: &ClosedWindow) -> f64 {
        w.feature("v.count").unwrap_or(0.0)
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let mut e = engine(spec(0, 0));
        put(&mut e, 90 * S, 1.0, 0);
        let (_, out) = put(&mut e, 125 * S, 2.0, 0);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start_ms, out[0].end_ms), (60 * S, 120 * S));
        // Before 1970 too: floor, not truncation.
        let mut e = engine(spec(0, 0));
        put(&mut e, -1, 1.0, 0);
        let (_, out) = put(&mut e, 0, 1.0, 0);
        assert_eq!((out[0].start_ms, out[0].end_ms), (-MIN, 0));
    }

    #[test]
    fn out_of_order_readings_inside_the_bound_land_in_their_window() {
        let mut e = engine(spec(10 * S, 0));
        put(&mut e, 55 * S, 1.0, 0);
        // Watermark 55s: window [0,60) stays open.
        assert!(put(&mut e, 61 * S, 2.0, 0).1.is_empty());
        // 58s arrives after 61s but within 10s of it.
        let (o, out) = put(&mut e, 58 * S, 3.0, 0);
        assert_eq!(o, Outcome::Accepted);
        assert!(out.is_empty());
        // 70s moves the watermark to 60s: [0,60) closes with both of its readings.
        let (_, out) = put(&mut e, 70 * S, 4.0, 0);
        assert_eq!(out.len(), 1);
        assert_eq!(count(&out[0]), 2.0);
        assert_eq!(out[0].feature("v.first"), Some(1.0));
        assert_eq!(out[0].feature("v.last"), Some(3.0));
        assert_eq!(out[0].trigger, Trigger::Watermark);
        assert!(!out[0].update);
    }

    #[test]
    fn a_window_closes_exactly_when_the_watermark_reaches_its_end() {
        let mut e = engine(spec(5 * S, 0));
        put(&mut e, 10 * S, 1.0, 0);
        assert!(put(&mut e, 64 * S + 999, 1.0, 0).1.is_empty(), "watermark 59.999s < 60s");
        assert_eq!(put(&mut e, 65 * S, 1.0, 0).1.len(), 1, "watermark 60s = end");
        assert_eq!(e.watermark("d"), Some(60 * S));
    }

    #[test]
    fn late_readings_within_allowed_lateness_update_and_reemit() {
        let mut e = engine(spec(0, 30 * S));
        put(&mut e, 10 * S, 1.0, 0);
        let (_, out) = put(&mut e, 70 * S, 1.0, 0);
        assert_eq!(count(&out[0]), 1.0);
        // Watermark 70s < 60s + 30s: the reading updates [0,60).
        let (o, out) = put(&mut e, 20 * S, 5.0, 0);
        assert_eq!(o, Outcome::Updated);
        assert_eq!(out.len(), 1);
        assert!(out[0].update);
        assert_eq!(out[0].trigger, Trigger::Late);
        assert_eq!(count(&out[0]), 2.0);
        assert_eq!(out[0].feature("v.max"), Some(5.0));
        // Watermark 90s = 60s + 30s: now too late; counted and stored.
        put(&mut e, 90 * S, 1.0, 0);
        let (o, out) = put(&mut e, 30 * S, 9.0, 0);
        assert_eq!(o, Outcome::Late);
        assert!(out.is_empty());
        assert_eq!(e.counters().late, 1);
        let stored: Vec<_> = e.late_store().iter().cloned().collect();
        assert_eq!(stored, vec![Reading { device_id: "d".into(), ts_ms: 30 * S, values: vec![("v".into(), 9.0)] }]);
    }

    #[test]
    fn a_device_holds_room_for_the_windows_it_has_not_for_four() {
        let mut e = engine(spec(0, 30 * S));
        put(&mut e, 10 * S, 1.0, 0);
        put(&mut e, 70 * S, 1.0, 0);
        let caps = |e: &Engine| {
            let d = &e.devices["d"];
            (d.open.len(), d.open.capacity(), d.closed.len(), d.closed.capacity())
        };
        assert_eq!(caps(&e), (1, 1, 1, 1), "one open and one closed window");
        // An out-of-order reading opens a second window: room for two.
        let mut e = engine(spec(90 * S, 0));
        put(&mut e, 70 * S, 1.0, 0);
        put(&mut e, 10 * S, 1.0, 0);
        assert_eq!(caps(&e), (2, 2, 0, 0));
        assert_eq!(e.devices["d"].open[0].start, 0, "still sorted by start");
    }

    #[test]
    fn a_late_reading_for_a_window_that_never_existed_is_emitted_at_once() {
        let mut e = engine(spec(0, 2 * MIN));
        put(&mut e, 150 * S, 1.0, 0);
        // [0,60) never had a reading; watermark 150s < 60s + 120s.
        let (o, out) = put(&mut e, 30 * S, 2.0, 0);
        assert_eq!(o, Outcome::Updated);
        assert_eq!(out.len(), 1);
        assert!(!out[0].update);
        assert_eq!((out[0].start_ms, count(&out[0])), (0, 1.0));
    }

    #[test]
    fn without_lateness_anything_behind_the_watermark_is_late() {
        let mut e = engine(spec(0, 0));
        put(&mut e, 10 * S, 1.0, 0);
        put(&mut e, 60 * S, 1.0, 0);
        assert_eq!(put(&mut e, 59 * S, 1.0, 0).0, Outcome::Late);
        // Inside the open window it is fine, even behind the newest reading.
        put(&mut e, 70 * S, 1.0, 0);
        assert_eq!(put(&mut e, 65 * S, 1.0, 0).0, Outcome::Accepted);
    }

    #[test]
    fn idle_devices_close_on_processing_time() {
        let mut e = engine(spec(10 * S, 30 * S));
        put(&mut e, 10 * S, 1.0, 1_000);
        put(&mut e, 20 * S, 2.0, 2_000);
        let mut out = Vec::new();
        e.close_idle(2_000 + 10 * MIN - 1, &mut out);
        assert!(out.is_empty(), "not silent long enough");
        e.close_idle(2_000 + 10 * MIN, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].trigger, count(&out[0])), (Trigger::Idle, 2.0));
        // The machine comes back with a reading for the same window: an update.
        let (o, out) = put(&mut e, 30 * S, 3.0, 3_000 + 10 * MIN);
        assert_eq!(o, Outcome::Updated);
        assert!(out[0].update);
        assert_eq!(count(&out[0]), 3.0);
        // Another idle close has nothing open to close.
        let mut out = Vec::new();
        e.close_idle(100 * MIN, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn idle_closed_windows_expire_and_silent_devices_are_forgotten() {
        let limits = StateLimits { device_ttl_ms: 60 * MIN, ..Default::default() };
        let mut e = Engine::new(spec(0, MIN), limits, Cleaning::default());
        put(&mut e, 10 * S, 1.0, 0);
        let mut out = Vec::new();
        e.close_idle(10 * MIN, &mut out);
        assert_eq!(out.len(), 1);
        e.close_idle(11 * MIN, &mut out);
        // Past idle + lateness the closed window is gone: a reading for it is late.
        let (o, _) = put(&mut e, 20 * S, 1.0, 11 * MIN);
        assert_eq!(o, Outcome::Late);
        assert_eq!(e.device_count(), 1);
        let mut out = Vec::new();
        e.close_idle(11 * MIN + 60 * MIN, &mut out);
        assert_eq!(out.len(), 0, "{out:?}");
        // The late reading did not open a window, so the device had nothing left.
        assert_eq!(e.device_count(), 0);
        assert_eq!(e.counters().devices_forgotten, 1);
    }

    #[test]
    fn open_window_limit_closes_the_oldest_early() {
        let limits = StateLimits { max_open_windows_per_device: 2, ..Default::default() };
        let mut e = Engine::new(spec(10 * MIN, 10 * MIN), limits, Cleaning::default());
        put(&mut e, 0, 1.0, 0);
        put(&mut e, MIN, 1.0, 0);
        let (o, out) = put(&mut e, 2 * MIN, 1.0, 0);
        assert_eq!(o, Outcome::Accepted);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start_ms, out[0].trigger), (0, Trigger::Limit));
        assert_eq!(e.counters().limit_hits[Limit::OpenWindowsPerDevice as usize], 1);
        assert_eq!(e.open_window_count(), 2);
        // The early-closed window still takes updates.
        let (o, out) = put(&mut e, 5 * S, 2.0, 0);
        assert_eq!(o, Outcome::Updated);
        assert_eq!(count(&out[0]), 2.0);
    }

    #[test]
    fn signal_limit_drops_new_signals_only() {
        let limits = StateLimits { max_signals_per_device: 2, ..Default::default() };
        let mut e = Engine::new(spec(0, 0), limits, Cleaning::default());
        let mut out = Vec::new();
        e.record("d", 0, [("a", 1.0), ("b", 2.0), ("c", 3.0)], 0, &mut out);
        e.record("d", 1, [("c", 3.0), ("a", 4.0)], 0, &mut out);
        e.record("d", MIN, [("a", 1.0)], 0, &mut out);
        assert_eq!(out.len(), 1);
        let names: Vec<&str> = out[0].signals.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(out[0].feature("a.count"), Some(2.0));
        assert_eq!(e.counters().values_dropped_signal_limit, 2);
        assert_eq!(e.counters().limit_hits[Limit::SignalsPerDevice as usize], 2);
    }

    #[test]
    fn a_name_repeated_in_one_reading_counts_once_with_its_first_value() {
        let limits = StateLimits { max_signals_per_device: 200, ..Default::default() };
        let mut e = Engine::new(spec(0, 0), limits, Cleaning::default());
        let mut out = Vec::new();
        e.record("d", 0, [("a", 1.0), ("b", 5.0), ("a", 2.0)], 0, &mut out);
        // Beyond 64 signals too.
        let many: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        let mut vals: Vec<(&str, f64)> = many.iter().map(|n| (n.as_str(), 1.0)).collect();
        vals.push(("s99", 7.0));
        e.record("d", 1, vals, 0, &mut out);
        e.flush(&mut out);
        assert_eq!(out[0].feature("a.count"), Some(1.0));
        assert_eq!(out[0].feature("a.mean"), Some(1.0));
        assert_eq!(out[0].feature("s99.count"), Some(1.0));
        assert_eq!(out[0].feature("s99.max"), Some(1.0));
    }

    #[test]
    fn cleaning_drops_values_not_readings() {
        let cleaning = Cleaning::new(vec![Rule { signal: "t".into(), min: Some(0.0), max: Some(100.0) }]);
        let mut e = Engine::new(spec(0, 0), StateLimits::default(), cleaning);
        let mut out = Vec::new();
        e.record("d", 0, [("t", 50.0), ("p", 1.0)], 0, &mut out);
        e.record("d", 1, [("t", 500.0), ("p", 2.0)], 0, &mut out);
        e.record("d", 2, [("t", -5.0), ("p", 3.0)], 0, &mut out);
        e.flush(&mut out);
        assert_eq!(out[0].feature("t.count"), Some(1.0));
        assert_eq!(out[0].feature("p.count"), Some(3.0));
        let dropped: Vec<_> = e.cleaning().dropped().map(|(s, r, n)| (s.to_owned(), r.as_str(), n)).collect();
        assert_eq!(dropped, vec![("t".to_owned(), "below_min", 1), ("t".to_owned(), "above_max", 1)]);
    }

    #[test]
    fn late_store_is_bounded() {
        let limits = StateLimits { late_store: 3, ..Default::default() };
        let mut e = Engine::new(spec(0, 0), limits, Cleaning::default());
        put(&mut e, 10 * MIN, 1.0, 0);
        for i in 0..10 {
            assert_eq!(put(&mut e, i * S, i as f64, 0).0, Outcome::Late);
        }
        assert_eq!(e.late_store().len(), 3);
        assert_eq!(e.late_store().evicted, 7);
        let kept: Vec<i64> = e.late_store().iter().map(|r| r.ts_ms).collect();
        assert_eq!(kept, vec![7 * S, 8 * S, 9 * S]);
        assert_eq!(e.counters().limit_hits[Limit::LateStore as usize], 7);
    }

    #[test]
    fn devices_have_their_own_watermarks() {
        let mut e = engine(spec(0, 0));
        let mut out = Vec::new();
        e.record("a", 10 * MIN, [("v", 1.0)], 0, &mut out);
        // Device b is far behind a, and that is fine.
        assert_eq!(e.record("b", 10 * S, [("v", 1.0)], 0, &mut out), Outcome::Accepted);
        assert!(out.is_empty());
    }

    #[test]
    fn devices_started_together_take_their_snapshots_at_different_checkpoints() {
        let spread = 60;
        // Out-of-orderness and lateness: windows open and close on the way.
        let mut e = engine(spec(10 * S, 30 * S));
        e.set_journal(spread);
        let mut out = Vec::new();
        let signals = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let ids: Vec<String> = (0..600).map(|i| format!("dev-{i:04}")).collect();
        let mut per_checkpoint = Vec::new();
        // One reading per device and second, a checkpoint every second.
        for seq in 0..240u64 {
            let t = seq as i64 * S;
            for id in &ids {
                e.record(id, t, signals.map(|s| (s, t as f64)), t, &mut out);
            }
            out.clear();
            per_checkpoint.push(e.checkpoint_changes(seq, false).to_snapshot.len());
        }
        // Past the start, the snapshots are spread: 600 devices snapshot
        // about every 20-60 s, and windows closing together do not bring
        // them together.
        let most = per_checkpoint[5..].iter().copied().max().unwrap_or(0);
        let all: usize = per_checkpoint[5..].iter().sum();
        assert!(all > 600 * 2, "journals do bring snapshots: {all}");
        assert!(most < 600 / 5, "at most {most} of 600 devices in one checkpoint: {per_checkpoint:?}");
    }

    #[test]
    fn every_device_silent_too_is_snapshotted_at_its_turn_unless_all_are_and_its_latest_snapshot_is_kept() {
        let spread = 10;
        let mut e = engine(spec(10 * S, 30 * S));
        e.set_journal(spread);
        let mut out = Vec::new();
        for i in 0..30 {
            e.record(&format!("dev-{i:02}"), 0, [("a", 1.0)], 0, &mut out);
        }
        // Restored from an older checkpoint's file: kept until its own turn.
        let mut restored = e.snapshot_all().remove(0);
        restored.id = "restored".into();
        assert!(e.restore(&restored, 3));
        let first = e.checkpoint_changes(5, false);
        assert_eq!(first.journal_from, 3, "the restored device's snapshot is in checkpoint 3's file");
        // Only one device reports any more: the silent ones are still
        // snapshotted once in `spread` checkpoints, and no file holding a
        // device's latest snapshot is given up.
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut t = 0;
        for seq in 6..6 + 3 * spread {
            t += S;
            e.record("busy", t, [("a", 1.0)], 0, &mut out);
            let c = e.checkpoint_changes(seq, false);
            assert!(c.logged.iter().all(|(id, _)| &**id == "busy"));
            for id in &c.to_snapshot {
                last.insert(id.to_string(), seq);
            }
            let oldest = last.values().copied().min().unwrap_or(0);
            if last.len() == 32 {
                assert!(c.journal_from <= oldest, "{seq}: {} past {oldest}", c.journal_from);
                assert!(seq - oldest < spread, "{seq}: a snapshot from {oldest}");
            }
        }
        assert_eq!(last.len(), 32, "every device snapshotted");
        // Nobody reports: no turns are taken (the last reporter's journal
        // becomes a snapshot, once), and nothing a device needs is given up.
        for seq in 6 + 3 * spread..6 + 6 * spread {
            let c = e.checkpoint_changes(seq, false);
            assert!(c.logged.is_empty() && c.to_snapshot.iter().all(|id| &**id == "busy"), "{seq}: {c:?}");
            for id in &c.to_snapshot {
                last.insert(id.to_string(), seq);
            }
            assert!(c.journal_from <= last.values().copied().min().unwrap_or(0), "{seq}");
        }
        assert!(last.iter().filter(|(id, _)| *id != "busy").all(|(_, &s)| s < 6 + 3 * spread));
    }

    #[test]
    fn journals_past_their_bound_wait_for_a_checkpoint_with_room_for_their_snapshot() {
        let spread = 60;
        let run = |cap: usize| {
            let mut e = engine(spec(10 * S, 30 * S));
            e.set_journal(spread);
            e.set_snapshots_per_checkpoint(cap);
            let mut out = Vec::new();
            let ids: Vec<String> = (0..1000).map(|i| format!("dev-{i:04}")).collect();
            let (mut counts, mut logged) = (Vec::new(), 0usize);
            for seq in 0..120u64 {
                let t = seq as i64 * S;
                for id in &ids {
                    e.record(id, t, [("a", t as f64), ("b", 1.0)], t, &mut out);
                }
                out.clear();
                let c = e.checkpoint_changes(seq, false);
                counts.push(c.to_snapshot.len());
                logged += c.logged.len();
                // A device is in the snapshots or the journal, not both.
                assert!(c.logged.iter().all(|(id, _)| !c.to_snapshot.contains(id)));
            }
            (counts, logged, e)
        };
        let (free, _, _) = run(100_000);
        let (capped, logged, e) = run(40);
        // Without a cap, devices that started together pass their bound together.
        let most_free = free.iter().copied().max().unwrap_or(0);
        assert!(most_free > 100, "{free:?}");
        // With one, a checkpoint takes at most 40 of them, besides the
        // devices whose turn it is (1,000 / 60) and new devices.
        let most = capped[1..].iter().copied().max().unwrap_or(0);
        assert!(most <= 40 + 1000 / 60 + 2, "{capped:?}");
        // The waiting devices went on with their journal, and most got
        // their snapshot: fewer than a fifth still wait at the end.
        assert!(logged > 1000 * 100);
        assert!(e.devices.values().filter(|d| d.snap_wanted).count() < 200, "{capped:?}");
    }

    #[test]
    fn a_device_holds_no_more_journal_between_checkpoints_than_a_snapshot_of_it() {
        let mut e = engine(spec(10 * S, 30 * S));
        e.set_journal(60);
        let mut out = Vec::new();
        let signals = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for seq in 0..5u64 {
            // 500 readings a checkpoint for one device (~40 KB of entries),
            // one for the other.
            for k in 0..500 {
                let t = seq as i64 * S + k;
                e.record("busy", t, signals.map(|s| (s, t as f64)), t, &mut out);
                let d = &e.devices["busy"];
                assert!(
                    d.journal.len() <= d.snapshot_bytes().max(JOURNAL_HELD_FLOOR),
                    "{seq}/{k}: {}",
                    d.journal.len()
                );
            }
            let t = seq as i64 * S;
            e.record("slow", t, signals.map(|s| (s, t as f64)), t, &mut out);
            let c = e.checkpoint_changes(seq, false);
            // The busy device's readings are in its snapshot, not in
            // entries: every one so far, those whose entries went included.
            assert!(c.to_snapshot.iter().any(|id| &**id == "busy"), "busy snapshotted");
            let busy = e.snapshot_of("busy").expect("busy tracked");
            assert_eq!(busy.open.len(), 1, "{seq}");
            let counts: Vec<u64> = busy.open[0].stats.iter().map(|s| s.count()).collect();
            assert_eq!(counts, vec![500 * (seq + 1); 8], "{seq}");
            assert!(c.logged.iter().all(|(id, _)| &**id != "busy"), "{seq}");
            if seq > 0 {
                assert!(c.logged.iter().any(|(id, _)| &**id == "slow"), "{seq}: the slow one journals");
            }
        }
        assert!(e.devices["busy"].journal.is_empty() && !e.devices["busy"].snap_next);
    }

    #[test]
    fn memory_bound_holds_under_a_flood_of_devices() {
        let limits = StateLimits { max_devices: 1000, ..Default::default() };
        let mut e = Engine::new(spec(0, 0), limits, Cleaning::default());
        let mut out = Vec::new();
        for i in 0..50_000 {
            e.record(&format!("dev-{i}"), 0, [("v", 1.0)], 0, &mut out);
        }
        assert_eq!(e.device_count(), 1000);
        assert_eq!(e.counters().limit_hits[Limit::Devices as usize], 49_000);
    }

    #[test]
    fn devices_share_their_signal_names_up_to_a_bound() {
        let mut e = engine(spec(0, 0));
        let mut out = Vec::new();
        e.record("p1", 0, [("Temperature", 1.0), ("Pressure", 2.0)], 0, &mut out);
        e.record("p2", 0, [("Pressure", 3.0), ("Temperature", 4.0)], 0, &mut out);
        // A restored device takes the shared names too.
        let mut snap = e.snapshot_all().into_iter().find(|d| d.id == "p1").unwrap();
        snap.id = "p3".into();
        assert!(e.restore(&snap, u64::MAX));
        let name = |e: &Engine, d: &str, i: usize| e.devices[d].signals[i].name.clone();
        assert!(Arc::ptr_eq(&name(&e, "p1", 0), &name(&e, "p2", 1)));
        assert!(Arc::ptr_eq(&name(&e, "p1", 1), &name(&e, "p2", 0)));
        assert!(Arc::ptr_eq(&name(&e, "p1", 0), &name(&e, "p3", 0)));
        assert_eq!(e.names.0.len(), 2);
        // Past the bound a name is still right, just not shared.
        for i in 0..SHARED_NAMES + 10 {
            e.record(&format!("q{}", i / 16), 0, [(format!("s{i}").as_str(), 1.0)], 0, &mut out);
        }
        assert_eq!(e.names.0.len(), SHARED_NAMES);
        let last = format!("s{}", SHARED_NAMES + 9);
        assert_eq!(&*name(&e, &format!("q{}", (SHARED_NAMES + 9) / 16), (SHARED_NAMES + 9) % 16), last);
    }

    #[test]
    fn devices_with_the_same_signals_share_one_list_up_to_a_bound() {
        let mut e = engine(spec(0, 0));
        let mut out = Vec::new();
        let list = |e: &Engine, d: &str| e.devices[d].signals.clone();
        for d in ["p1", "p2"] {
            e.record(d, 0, [("a", 1.0), ("b", 2.0)], 0, &mut out);
        }
        assert!(Arc::ptr_eq(&list(&e, "p1"), &list(&e, "p2")));
        // One more signal: p2's own new list, p1's unchanged; p3 reporting
        // the same three shares p2's.
        e.record("p2", 1, [("a", 1.0), ("c", 3.0)], 1, &mut out);
        e.record("p3", 0, [("a", 1.0), ("b", 2.0), ("c", 3.0)], 0, &mut out);
        assert_eq!(list(&e, "p1").len(), 2);
        assert!(Arc::ptr_eq(&list(&e, "p2"), &list(&e, "p3")));
        let names: Vec<String> = list(&e, "p2").iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // A restored device shares too.
        let mut snap = e.snapshot_all().into_iter().find(|d| d.id == "p1").unwrap();
        snap.id = "p4".into();
        assert!(e.restore(&snap, u64::MAX));
        assert!(Arc::ptr_eq(&list(&e, "p1"), &list(&e, "p4")));
        // New cleaning rules: lists made again with them, still shared.
        e.set_cleaning(Cleaning::new(vec![Rule { signal: "b".into(), min: Some(0.0), max: None }]));
        assert!(Arc::ptr_eq(&list(&e, "p1"), &list(&e, "p4")));
        assert!(list(&e, "p1")[1].rule.is_some());
        assert!(Arc::ptr_eq(&list(&e, "p2"), &list(&e, "p3")));
        // Past the bound, lists no device uses go; a device's list is right
        // either way.
        for i in 0..SHARED_LISTS + 10 {
            e.record(&format!("q{i}"), 0, [("a", 1.0), (format!("s{i}").as_str(), 1.0)], 0, &mut out);
        }
        assert!(e.lists.0.len() <= SHARED_LISTS);
        let last = format!("q{}", SHARED_LISTS + 9);
        assert_eq!(&*list(&e, &last)[1].name, format!("s{}", SHARED_LISTS + 9));
        assert!(Arc::ptr_eq(&list(&e, "p1"), &list(&e, "p4")), "lists in use stay shared");
    }

    /// Reference: each reading's window, from the sorted stream of what was accepted.
    #[derive(Debug, Clone)]
    struct Arrival {
        ts: i64,
        x: f64,
    }

    fn arrivals(bound: i64) -> impl Strategy<Value = Vec<Arrival>> {
        // A sorted stream of event times, then each arrival delayed by up to `bound`:
        // the disorder stays inside the out-of-orderness bound.
        prop::collection::vec((0i64..5_000, 0i64..=bound, -100.0..100.0f64), 1..300).prop_map(|v| {
            let mut t = 0;
            let mut items: Vec<(i64, i64, f64)> = v
                .into_iter()
                .map(|(step, delay, x)| {
                    t += step;
                    (t + delay, t, x)
                })
                .collect();
            items.sort_by_key(|i| i.0);
            items.into_iter().map(|(_, ts, x)| Arrival { ts, x }).collect()
        })
    }

    /// A restored engine continues exactly where the snapshot left off.
    #[test]
    fn a_restored_engine_continues_bit_for_bit() {
        let sp = WindowSpec {
            size_ms: MIN,
            max_out_of_orderness_ms: 5 * S,
            allowed_lateness_ms: MIN,
            idle_timeout_ms: 10 * MIN,
        };
        let mut a = Engine::new(sp, StateLimits::default(), Cleaning::default());
        let mut out_a = Vec::new();
        let feed = |e: &mut Engine, from: i64, to: i64, out: &mut Vec<ClosedWindow>| {
            for i in from..to {
                let dev = if i % 3 == 0 { "p1" } else { "p2" };
                let x = (i as f64 * 0.37).sin() * 10.0 + 1e6;
                e.record(dev, i * 7 * S, [("a", x), ("b", -x)], i, out);
            }
        };
        feed(&mut a, 0, 40, &mut out_a);
        let changes = a.take_changes();
        assert_eq!(changes.updated.len(), 2);
        assert!(a.take_changes().updated.is_empty(), "nothing changed since");
        let mut b = Engine::new(sp, StateLimits::default(), Cleaning::default());
        for s in &changes.updated {
            assert!(b.restore(s, u64::MAX));
        }
        let (mut rest_a, mut rest_b) = (Vec::new(), Vec::new());
        feed(&mut a, 40, 90, &mut rest_a);
        feed(&mut b, 40, 90, &mut rest_b);
        a.flush(&mut rest_a);
        b.flush(&mut rest_b);
        assert!(!rest_a.is_empty());
        let key = |w: &ClosedWindow| (w.device_id.clone(), w.start_ms, w.update);
        rest_a.sort_by_key(key);
        rest_b.sort_by_key(key);
        assert_eq!(format!("{rest_a:?}"), format!("{rest_b:?}"));
        // Only the devices that changed are in the next checkpoint; a forgotten one is named.
        let mut c = Engine::new(sp, StateLimits { device_ttl_ms: 0, ..StateLimits::default() }, Cleaning::default());
        c.record("gone", 0, [("a", 1.0)], 0, &mut Vec::new());
        c.take_changes();
        c.close_idle(20 * MIN, &mut Vec::new());
        c.close_idle(40 * MIN, &mut Vec::new());
        let ch = c.take_changes();
        assert_eq!(ch.forgotten, vec![Arc::<str>::from("gone")]);
    }

    proptest! {
        #[test]
        fn disorder_within_the_bound_gives_the_sorted_result(items in arrivals(10 * S)) {
            let mut e = engine(spec(10 * S, 0));
            let mut out = Vec::new();
            for a in &items {
                prop_assert_eq!(e.record("d", a.ts, [("v", a.x)], 0, &mut out), Outcome::Accepted);
            }
            e.flush(&mut out);
            // Group by window, two-pass reference on each.
            let mut by_window: std::collections::BTreeMap<i64, Vec<(i64, f64)>> = Default::default();
            for a in &items {
                by_window.entry(a.ts.div_euclid(MIN) * MIN).or_default().push((a.ts, a.x));
            }
            prop_assert_eq!(out.len(), by_window.len());
            for w in &out {
                prop_assert!(!w.update);
                let pts = &by_window[&w.start_ms];
                let want = stats::reference::stats(pts, w.start_ms);
                let got = w.signals[0].1;
                for i in 0..13 {
                    let tol = 1e-9 * want[i].abs().max(200.0);
                    prop_assert!((got[i] - want[i]).abs() <= tol || (got[i].is_nan() && want[i].is_nan()),
                        "{}: {} vs {}", STAT_NAMES[i], got[i], want[i]);
                }
            }
        }
    }
}
