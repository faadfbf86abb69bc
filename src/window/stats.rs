//! Per-signal window statistics in one pass (SPEC 2).
//!
//! Moments are updated with the Welford / Pébay recurrences on values
//! shifted by the first value the window saw. The shift makes a signal like
//! `1e6 + small noise` as exact as `small noise`: the recurrences never see
//! the large common part, so there is no catastrophic cancellation in the
//! variance, skewness or kurtosis. The time regression for `slope` uses the
//! same co-moment update on seconds since the window start.
//!
//! Everything here is order-independent up to rounding, so readings that
//! arrive out of order inside the out-of-orderness bound give the same
//! statistics as the sorted stream (within a few ulps).

/// The statistics, in the order of SPEC 2 and of the feature columns.
pub const STAT_NAMES: [&str; 13] =
    ["count", "mean", "std", "min", "max", "rms", "ptp", "skew", "kurtosis", "crest", "slope", "first", "last"];

/// Index of a statistic by name (`"mean"` → 1).
pub fn stat_index(name: &str) -> Option<usize> {
    STAT_NAMES.iter().position(|s| *s == name)
}

/// Running statistics of one signal in one window. Serialisable as is, so
/// a checkpoint restores a window bit for bit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignalStats {
    n: u64,
    /// Shift: the first value seen; the moments below are of `x - shift`.
    shift: f64,
    mean: f64,
    m2: f64,
    m3: f64,
    m4: f64,
    min: f64,
    max: f64,
    /// Mean of t (seconds since the window start) and its co-moments.
    t_mean: f64,
    t_m2: f64,
    xt_c: f64,
    first_ts: i64,
    first: f64,
    last_ts: i64,
    last: f64,
}

impl Default for SignalStats {
    fn default() -> Self {
        SignalStats {
            n: 0,
            shift: 0.0,
            mean: 0.0,
            m2: 0.0,
            m3: 0.0,
            m4: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            t_mean: 0.0,
            t_m2: 0.0,
            xt_c: 0.0,
            first_ts: i64::MAX,
            first: f64::NAN,
            last_ts: i64::MIN,
            last: f64::NAN,
        }
    }
}

impl SignalStats {
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Adds value `x` at event time `ts_ms`; `window_start_ms` anchors the
    /// time axis of the slope. `x` must be finite (decode guarantees it).
    #[inline]
    pub fn push(&mut self, x: f64, ts_ms: i64, window_start_ms: i64) {
        let (mut times, mut values) = self.parts();
        let step = times.advance(ts_ms, window_start_ms);
        values.apply(x, &step);
        *self = SignalStats::from_parts(&times, &values);
    }

    /// The 13 statistics in [`STAT_NAMES`] order. A signal never seen has
    /// count 0 and NaN for the rest.
    pub fn finish(&self) -> [f64; 13] {
        let (times, values) = self.parts();
        finish(&times, &values)
    }

    fn times(&self) -> Times {
        Times { n: self.n, t_mean: self.t_mean, t_m2: self.t_m2, first_ts: self.first_ts, last_ts: self.last_ts }
    }

    fn parts(&self) -> (Times, Values) {
        let times = self.times();
        let values = Values {
            shift: self.shift,
            mean: self.mean,
            m2: self.m2,
            m3: self.m3,
            m4: self.m4,
            min: self.min,
            max: self.max,
            xt_c: self.xt_c,
            first: self.first,
            last: self.last,
        };
        (times, values)
    }

    fn from_parts(t: &Times, v: &Values) -> SignalStats {
        SignalStats {
            n: t.n,
            shift: v.shift,
            mean: v.mean,
            m2: v.m2,
            m3: v.m3,
            m4: v.m4,
            min: v.min,
            max: v.max,
            t_mean: t.t_mean,
            t_m2: t.t_m2,
            xt_c: v.xt_c,
            first_ts: t.first_ts,
            first: v.first,
            last_ts: t.last_ts,
            last: v.last,
        }
    }
}

/// The part of a signal's running statistics that follows only the times
/// of its readings: the count, the moments of the time axis, the first and
/// last times. Signals that took the same readings have the same times, bit
/// for bit, and share them ([`WindowStats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Times {
    n: u64,
    t_mean: f64,
    t_m2: f64,
    first_ts: i64,
    last_ts: i64,
}

impl Default for Times {
    fn default() -> Self {
        Times { n: 0, t_mean: 0.0, t_m2: 0.0, first_ts: i64::MAX, last_ts: i64::MIN }
    }
}

impl Times {
    /// Whether `other` is the same, bit for bit.
    fn same(&self, other: &Times) -> bool {
        self.n == other.n
            && self.t_mean.to_bits() == other.t_mean.to_bits()
            && self.t_m2.to_bits() == other.t_m2.to_bits()
            && self.first_ts == other.first_ts
            && self.last_ts == other.last_ts
    }
}

/// One reading's step on a [`Times`], for the values that go with it.
struct Step {
    /// The count before and after, as floats.
    n1: f64,
    n: f64,
    /// Time minus the time mean before the step.
    dt: f64,
    /// The reading is the earliest so far, or the latest (or ties it).
    is_first: bool,
    is_last: bool,
}

impl Times {
    #[inline]
    fn advance(&mut self, ts_ms: i64, window_start_ms: i64) -> Step {
        let t = (ts_ms - window_start_ms) as f64 / 1000.0;
        let n1 = self.n as f64;
        self.n += 1;
        let n = self.n as f64;
        let dt = t - self.t_mean;
        self.t_mean += dt / n;
        self.t_m2 += dt * (t - self.t_mean);
        // Ties in event time: `first` keeps the earliest arrival, `last` the latest.
        let is_first = ts_ms < self.first_ts;
        if is_first {
            self.first_ts = ts_ms;
        }
        let is_last = ts_ms >= self.last_ts;
        if is_last {
            self.last_ts = ts_ms;
        }
        Step { n1, n, dt, is_first, is_last }
    }
}

/// The rest of a signal's running statistics: the moments of its values
/// (shifted by the first), extremes, the time co-moment, first and last.
#[derive(Debug, Clone, PartialEq)]
struct Values {
    shift: f64,
    mean: f64,
    m2: f64,
    m3: f64,
    m4: f64,
    min: f64,
    max: f64,
    xt_c: f64,
    first: f64,
    last: f64,
}

impl Default for Values {
    fn default() -> Self {
        Values {
            shift: 0.0,
            mean: 0.0,
            m2: 0.0,
            m3: 0.0,
            m4: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            xt_c: 0.0,
            first: f64::NAN,
            last: f64::NAN,
        }
    }
}

impl Values {
    #[inline]
    fn apply(&mut self, x: f64, step: &Step) {
        if step.n1 == 0.0 {
            self.shift = x;
        }
        let y = x - self.shift;
        let (n1, n) = (step.n1, step.n);
        let delta = y - self.mean;
        let delta_n = delta / n;
        let delta_n2 = delta_n * delta_n;
        let term1 = delta * delta_n * n1;
        self.mean += delta_n;
        self.m4 += term1 * delta_n2 * (n * n - 3.0 * n + 3.0) + 6.0 * delta_n2 * self.m2 - 4.0 * delta_n * self.m3;
        self.m3 += term1 * delta_n * (n - 2.0) - 3.0 * delta_n * self.m2;
        self.m2 += term1;
        self.xt_c += step.dt * (y - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        if step.is_first {
            self.first = x;
        }
        if step.is_last {
            self.last = x;
        }
    }
}

/// The 13 statistics of a signal with these times and values.
fn finish(t: &Times, v: &Values) -> [f64; 13] {
    if t.n == 0 {
        let mut out = [f64::NAN; 13];
        out[0] = 0.0;
        return out;
    }
    let n = t.n as f64;
    let constant = v.min == v.max;
    let mean = v.shift + v.mean;
    let std = if t.n < 2 || constant { 0.0 } else { (v.m2 / (n - 1.0)).sqrt() };
    // rms² = mean² + population variance: no sum of squares to overflow or cancel.
    let var_pop = if constant { 0.0 } else { v.m2 / n };
    let rms = (mean * mean + var_pop).sqrt();
    let (skew, kurtosis) = if constant || v.m2 <= 0.0 {
        (0.0, 0.0)
    } else {
        (n.sqrt() * v.m3 / v.m2.powf(1.5), n * v.m4 / (v.m2 * v.m2) - 3.0)
    };
    let crest = if rms == 0.0 { 0.0 } else { v.min.abs().max(v.max.abs()) / rms };
    let slope = if t.first_ts == t.last_ts || t.t_m2 <= 0.0 { 0.0 } else { v.xt_c / t.t_m2 };
    [n, mean, std, v.min, v.max, rms, v.max - v.min, skew, kurtosis, crest, slope, v.first, v.last]
}

/// Signals past this index always keep times of their own (the shared
/// ones are marked in a 64-bit mask).
const SHARED_SIGNALS: usize = 64;

/// The running statistics of all the signals of one window, in memory:
/// the times of the signals that took every reading of the window so far
/// are held once (a signal's statistics are 120 bytes, 40 of them times;
/// 8 signals take 688 bytes here instead of 960). What a signal computes
/// is exactly what its own [`SignalStats`] would: the same operations in
/// the same order, the time part done once for all. A signal that misses a
/// reading the others take goes on with a copy of the times as they were.
#[derive(Debug, Clone, Default)]
pub struct WindowStats {
    /// The shared times.
    times: Times,
    /// Bit `i`: signal `i` follows `times`.
    shared: u64,
    /// Per signal index; a signal the window has not seen has default
    /// values and is neither shared nor in `own`.
    values: Vec<Values>,
    /// Signals with times of their own, by index (usually none).
    own: Vec<(usize, Times)>,
}

impl WindowStats {
    /// Room for `signals` signals.
    pub fn with_capacity(signals: usize) -> WindowStats {
        WindowStats { values: Vec::with_capacity(signals), ..WindowStats::default() }
    }

    /// Adds one reading at event time `ts_ms`: its values by signal index,
    /// each signal at most once, all finite (the engine sees to both).
    pub fn push(&mut self, values: &[(usize, f64)], ts_ms: i64, window_start_ms: i64) {
        let (mut present, mut top, mut wide) = (0u64, 0usize, false);
        for &(i, _) in values {
            top = top.max(i + 1);
            if i < SHARED_SIGNALS {
                present |= 1 << i;
            } else {
                wide = true;
            }
        }
        if top > self.values.len() {
            self.values.resize_with(top, Values::default);
        }
        // Signals new to the window join the shared times while those
        // have not moved yet.
        if self.times.n == 0 {
            let mut join = present;
            for (j, _) in &self.own {
                if *j < SHARED_SIGNALS {
                    join &= !(1 << j);
                }
            }
            self.shared |= join;
        }
        let moving = self.shared & present;
        let mut all_shared = false;
        if moving != 0 {
            // The shared times move: signals that miss this reading keep
            // the times as they were.
            let mut leaving = self.shared & !present;
            while leaving != 0 {
                let i = leaving.trailing_zeros() as usize;
                leaving &= leaving - 1;
                self.own.push((i, self.times));
            }
            self.shared = moving;
            let step = self.times.advance(ts_ms, window_start_ms);
            all_shared = moving == present && !wide;
            if all_shared {
                for &(i, x) in values {
                    self.values[i].apply(x, &step);
                }
            } else {
                for &(i, x) in values {
                    if i < SHARED_SIGNALS && moving & (1 << i) != 0 {
                        self.values[i].apply(x, &step);
                    }
                }
            }
        }
        if all_shared {
            return;
        }
        for &(i, x) in values {
            if i < SHARED_SIGNALS && self.shared & (1 << i) != 0 {
                continue;
            }
            let k = match self.own.iter().position(|(j, _)| *j == i) {
                Some(k) => k,
                None => {
                    self.own.push((i, Times::default()));
                    self.own.len() - 1
                }
            };
            let step = self.own[k].1.advance(ts_ms, window_start_ms);
            self.values[i].apply(x, &step);
        }
    }

    fn times_of(&self, i: usize) -> Times {
        if i < SHARED_SIGNALS && self.shared & (1 << i) != 0 {
            return self.times;
        }
        self.own.iter().find(|(j, _)| *j == i).map_or_else(Times::default, |(_, t)| *t)
    }

    /// Signal slots (seen or not), by index.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Readings signal `i` took.
    pub fn count(&self, i: usize) -> u64 {
        if i >= self.values.len() {
            return 0;
        }
        self.times_of(i).n
    }

    /// Signal `i`'s 13 statistics, as [`SignalStats::finish`].
    pub fn finish(&self, i: usize) -> [f64; 13] {
        match self.values.get(i) {
            Some(v) => finish(&self.times_of(i), v),
            None => SignalStats::default().finish(),
        }
    }

    /// Per signal, as a checkpoint stores them.
    pub fn to_signals(&self) -> Vec<SignalStats> {
        (0..self.values.len()).map(|i| SignalStats::from_parts(&self.times_of(i), &self.values[i])).collect()
    }

    /// From per-signal statistics: the signals with the most common times
    /// share them (any grouping computes the same).
    pub fn from_signals(signals: &[SignalStats]) -> WindowStats {
        let shareable = &signals[..signals.len().min(SHARED_SIGNALS)];
        let mut best: Option<(Times, usize)> = None;
        for (i, s) in shareable.iter().enumerate() {
            let t = s.times();
            if t.n == 0 {
                continue;
            }
            let k = shareable.iter().filter(|u| u.times().same(&t)).count();
            if best.is_none_or(|(_, b)| k > b) && shareable[..i].iter().all(|u| !u.times().same(&t)) {
                best = Some((t, k));
            }
        }
        let mut w = WindowStats { values: Vec::with_capacity(signals.len()), ..WindowStats::default() };
        if let Some((t, _)) = best {
            w.times = t;
        }
        for (i, s) in signals.iter().enumerate() {
            let (t, v) = s.parts();
            if t.n == 0 {
                // Not seen: nothing to keep but the defaults.
            } else if i < SHARED_SIGNALS && best.is_some() && t.same(&w.times) {
                w.shared |= 1 << i;
            } else {
                w.own.push((i, t));
            }
            w.values.push(v);
        }
        w
    }
}

#[cfg(test)]
pub(crate) mod reference {
    //! Two-pass textbook formulas, the yardstick for the streaming ones.

    pub fn stats(points: &[(i64, f64)], window_start: i64) -> [f64; 13] {
        let n = points.len() as f64;
        if points.is_empty() {
            let mut out = [f64::NAN; 13];
            out[0] = 0.0;
            return out;
        }
        let xs: Vec<f64> = points.iter().map(|p| p.1).collect();
        let ts: Vec<f64> = points.iter().map(|p| (p.0 - window_start) as f64 / 1000.0).collect();
        // Deviations from the first value are exact for nearby values, so the
        // reference keeps its digits for `1e6 + noise` too.
        let x0 = xs[0];
        let ds: Vec<f64> = xs.iter().map(|x| x - x0).collect();
        let dmean = ds.iter().sum::<f64>() / n;
        let mean = x0 + dmean;
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let m = |k: i32| ds.iter().map(|d| (d - dmean).powi(k)).sum::<f64>() / n;
        let (m2, m3, m4) = (m(2), m(3), m(4));
        let constant = min == max;
        let std = if points.len() < 2 || constant { 0.0 } else { (m2 * n / (n - 1.0)).sqrt() };
        let rms = (xs.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        let (skew, kurt) = if constant { (0.0, 0.0) } else { (m3 / m2.powf(1.5), m4 / (m2 * m2) - 3.0) };
        let crest = if rms == 0.0 { 0.0 } else { min.abs().max(max.abs()) / rms };
        let tmean = ts.iter().sum::<f64>() / n;
        let sxx: f64 = ts.iter().map(|t| (t - tmean).powi(2)).sum();
        let sxy: f64 = ts.iter().zip(&ds).map(|(t, d)| (t - tmean) * (d - dmean)).sum();
        let slope = if sxx == 0.0 { 0.0 } else { sxy / sxx };
        let first_i = (0..points.len()).min_by_key(|&i| (points[i].0, i)).unwrap_or(0);
        let last_i = (0..points.len()).max_by_key(|&i| (points[i].0, i)).unwrap_or(0);
        [n, mean, std, min, max, rms, max - min, skew, kurt, crest, slope, xs[first_i], xs[last_i]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(points: &[(i64, f64)], start: i64) -> [f64; 13] {
        let mut s = SignalStats::default();
        for &(t, x) in points {
            s.push(x, t, start);
        }
        s.finish()
    }

    /// Agreement to `rel` relative to the scale of the quantity: the
    /// moments' natural scale is the spread of the data, not their own
    /// (possibly near-zero) value.
    fn close(a: f64, b: f64, scale: f64, rel: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * scale.max(a.abs()).max(b.abs()).max(f64::MIN_POSITIVE)
    }

    fn assert_close(got: [f64; 13], want: [f64; 13], spread: f64) {
        for (i, name) in STAT_NAMES.iter().enumerate() {
            // Dimensionless statistics (skew, kurtosis, crest) are O(1); value-like ones scale with the data.
            let scale = match *name {
                "skew" | "kurtosis" | "crest" | "count" => 1.0,
                _ => spread,
            };
            assert!(close(got[i], want[i], scale, 1e-9), "{name}: streaming {} vs two-pass {}", got[i], want[i]);
        }
    }

    #[test]
    fn hand_computed_window() {
        // x = 1, 2, 3, 4 at t = 0, 1, 2, 3 s.
        let s = stream(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)], 0);
        assert_eq!(s[0], 4.0);
        assert_eq!(s[1], 2.5);
        assert!((s[2] - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!((s[3], s[4], s[6]), (1.0, 4.0, 3.0));
        assert!((s[5] - 7.5f64.sqrt()).abs() < 1e-15);
        assert!(s[7].abs() < 1e-15);
        assert!((s[8] - (-1.36)).abs() < 1e-12); // excess kurtosis of a uniform 4-point set
        assert!((s[9] - 4.0 / 7.5f64.sqrt()).abs() < 1e-15);
        assert!((s[10] - 1.0).abs() < 1e-15);
        assert_eq!((s[11], s[12]), (1.0, 4.0));
    }

    #[test]
    fn degenerate_cases() {
        let single = stream(&[(5, 3.0)], 0);
        assert_eq!(single, [1.0, 3.0, 0.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 3.0, 3.0]);
        let constant = stream(&[(0, 1e6 + 0.1), (1000, 1e6 + 0.1), (2000, 1e6 + 0.1)], 0);
        assert_eq!(
            &constant[2..],
            &[0.0, 1e6 + 0.1, 1e6 + 0.1, 1e6 + 0.1, 0.0, 0.0, 0.0, 1.0, 0.0, 1e6 + 0.1, 1e6 + 0.1]
        );
        let zeros = stream(&[(0, 0.0), (10, 0.0)], 0);
        assert_eq!(zeros[5], 0.0);
        assert_eq!(zeros[9], 0.0, "crest is 0 when rms is 0");
        let same_time = stream(&[(7, 1.0), (7, 5.0)], 0);
        assert_eq!(same_time[10], 0.0, "slope needs two distinct times");
        assert_eq!((same_time[11], same_time[12]), (1.0, 5.0), "ties: first arrival is first, last arrival is last");
        let none = SignalStats::default().finish();
        assert_eq!(none[0], 0.0);
        assert!(none[1..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn large_offset_small_noise_keeps_its_variance() {
        // 1e6 + noise of 1e-3: naive sum-of-squares variance loses every digit here.
        let pts: Vec<(i64, f64)> =
            (0..1000).map(|i| (i * 100, 1e6 + 1e-3 * ((i * 7919 % 1000) as f64 / 1000.0 - 0.5))).collect();
        let got = stream(&pts, 0);
        let noise: Vec<(i64, f64)> = pts.iter().map(|&(t, x)| (t, x - 1e6)).collect();
        let want = reference::stats(&noise, 0);
        // std, skew, kurtosis and slope are shift-invariant.
        for i in [2, 7, 8, 10] {
            assert!(close(got[i], want[i], 1e-3, 1e-7), "{}: {} vs {}", STAT_NAMES[i], got[i], want[i]);
        }
    }

    fn window_points() -> impl Strategy<Value = Vec<(i64, f64)>> {
        let offset = prop_oneof![Just(0.0), -1e3..1e3f64, Just(1e6), Just(-4.2e7)];
        let scale = prop_oneof![Just(1.0), Just(1e-3), Just(1e3)];
        (offset, scale, prop::collection::vec((0i64..300_000, -1.0..1.0f64), 1..200))
            .prop_map(|(o, s, pts)| pts.into_iter().map(|(t, x)| (t, o + s * x)).collect())
    }

    /// Readings of a window: time, and the values of some of its signals
    /// (indices up to 69, past the 64 that can share times).
    fn readings() -> impl Strategy<Value = Vec<(i64, Vec<(usize, f64)>)>> {
        let signal = prop_oneof![8 => 0usize..6, 1 => 62usize..70];
        let reading = (
            0i64..120_000,
            prop::collection::btree_map(signal, -1e3..1e3f64, 0..5).prop_map(|m| m.into_iter().collect::<Vec<_>>()),
        );
        prop::collection::vec(reading, 0..60)
    }

    fn bits(s: &SignalStats) -> String {
        // Debug prints every field; NaN == NaN here, unlike PartialEq.
        format!("{s:?}")
    }

    proptest! {
        /// A window's shared times give each signal exactly what its own
        /// statistics would, also after a checkpoint's round trip mid-way.
        #[test]
        fn shared_times_compute_what_each_signal_would(rs in readings(), cut in 0usize..60, full in any::<bool>()) {
            let start = 1_800_000_000_000i64;
            let mut own: Vec<SignalStats> = Vec::new();
            let mut w = WindowStats::default();
            for (k, (t, values)) in rs.iter().enumerate() {
                if k == cut {
                    w = WindowStats::from_signals(&w.to_signals());
                }
                let values: Vec<(usize, f64)> =
                    if full { (0..4).map(|i| (i, values.first().map_or(1.0, |v| v.1) + i as f64)).collect() } else { values.clone() };
                for &(i, x) in &values {
                    if own.len() <= i {
                        own.resize_with(i + 1, SignalStats::default);
                    }
                    own[i].push(x, start + t, start);
                }
                w.push(&values, start + t, start);
            }
            let got = w.to_signals();
            prop_assert_eq!(got.len(), own.len());
            for (i, (a, b)) in got.iter().zip(&own).enumerate() {
                prop_assert_eq!(bits(a), bits(b), "signal {}", i);
                prop_assert_eq!(w.count(i), b.count());
                let (fa, fb) = (w.finish(i), b.finish());
                prop_assert!(fa.iter().zip(&fb).all(|(x, y)| x.to_bits() == y.to_bits()), "signal {}: {:?} vs {:?}", i, fa, fb);
            }
        }
    }

    #[test]
    fn signals_that_take_the_same_readings_hold_one_set_of_times() {
        let mut w = WindowStats::with_capacity(3);
        for t in 0..5 {
            w.push(&[(0, 1.0), (1, 2.0), (2, 3.0)], t * 1000, 0);
        }
        assert!(w.own.is_empty() && w.shared == 0b111);
        // One misses a reading: it keeps its times, the others go on.
        w.push(&[(0, 1.0), (2, 3.0)], 6000, 0);
        assert_eq!(w.own.iter().map(|(i, t)| (*i, t.n)).collect::<Vec<_>>(), [(1, 5)]);
        assert_eq!((w.count(0), w.count(1), w.count(2)), (6, 5, 6));
        // A signal new to the window once the times moved has its own.
        w.push(&[(0, 1.0), (2, 3.0), (3, 4.0)], 7000, 0);
        assert_eq!(w.count(3), 1);
        assert_eq!(w.shared, 0b101);
        // Restored from per-signal statistics, the largest group shares.
        let r = WindowStats::from_signals(&w.to_signals());
        assert_eq!((r.shared, r.own.len()), (0b101, 2));
    }

    proptest! {
        #[test]
        fn streaming_equals_two_pass(pts in window_points()) {
            let spread = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max)
                - pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let scale = spread.max(pts.iter().map(|p| p.1.abs()).fold(0.0, f64::max) * 1e-12);
            let got = stream(&pts, 0);
            let want = reference::stats(&pts, 0);
            // Centered-moment ratios are ill-conditioned when the spread is tiny relative
            // to float resolution; compare them only where the reference itself is sound.
            assert_close(got, want, scale.max(f64::MIN_POSITIVE));
        }

        #[test]
        fn order_does_not_matter(pts in window_points(), seed in any::<u64>()) {
            // Any permutation (the window sees readings in arrival order).
            let mut shuffled = pts.clone();
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let spread = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max)
                - pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let a = stream(&pts, 0);
            let b = stream(&shuffled, 0);
            let want = reference::stats(&shuffled, 0);
            // first/last follow arrival order on ties, so compare the permuted stream with the
            // reference of the same arrival order, and the rest across orders.
            assert_close(b, want, spread.max(f64::MIN_POSITIVE));
            for i in 0..11 {
                let scale = if (7..=9).contains(&i) || i == 0 { 1.0 } else { spread };
                prop_assert!(close(a[i], b[i], scale.max(f64::MIN_POSITIVE), 1e-9), "{}: {} vs {}", STAT_NAMES[i], a[i], b[i]);
            }
        }
    }
}
