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
        if self.n == 0 {
            self.shift = x;
        }
        let y = x - self.shift;
        let t = (ts_ms - window_start_ms) as f64 / 1000.0;

        let n1 = self.n as f64;
        self.n += 1;
        let n = self.n as f64;
        let delta = y - self.mean;
        let delta_n = delta / n;
        let delta_n2 = delta_n * delta_n;
        let term1 = delta * delta_n * n1;
        self.mean += delta_n;
        self.m4 += term1 * delta_n2 * (n * n - 3.0 * n + 3.0) + 6.0 * delta_n2 * self.m2 - 4.0 * delta_n * self.m3;
        self.m3 += term1 * delta_n * (n - 2.0) - 3.0 * delta_n * self.m2;
        self.m2 += term1;

        let dt = t - self.t_mean;
        self.t_mean += dt / n;
        self.t_m2 += dt * (t - self.t_mean);
        self.xt_c += dt * (y - self.mean);

        self.min = self.min.min(x);
        self.max = self.max.max(x);
        // Ties in event time: `first` keeps the earliest arrival, `last` the latest.
        if ts_ms < self.first_ts {
            self.first_ts = ts_ms;
            self.first = x;
        }
        if ts_ms >= self.last_ts {
            self.last_ts = ts_ms;
            self.last = x;
        }
    }

    /// The 13 statistics in [`STAT_NAMES`] order. A signal never seen has
    /// count 0 and NaN for the rest.
    pub fn finish(&self) -> [f64; 13] {
        if self.n == 0 {
            let mut out = [f64::NAN; 13];
            out[0] = 0.0;
            return out;
        }
        let n = self.n as f64;
        let constant = self.min == self.max;
        let mean = self.shift + self.mean;
        let std = if self.n < 2 || constant { 0.0 } else { (self.m2 / (n - 1.0)).sqrt() };
        // rms² = mean² + population variance: no sum of squares to overflow or cancel.
        let var_pop = if constant { 0.0 } else { self.m2 / n };
        let rms = (mean * mean + var_pop).sqrt();
        let (skew, kurtosis) = if constant || self.m2 <= 0.0 {
            (0.0, 0.0)
        } else {
            (n.sqrt() * self.m3 / self.m2.powf(1.5), n * self.m4 / (self.m2 * self.m2) - 3.0)
        };
        let crest = if rms == 0.0 { 0.0 } else { self.min.abs().max(self.max.abs()) / rms };
        let slope = if self.first_ts == self.last_ts || self.t_m2 <= 0.0 { 0.0 } else { self.xt_c / self.t_m2 };
        [
            n,
            mean,
            std,
            self.min,
            self.max,
            rms,
            self.max - self.min,
            skew,
            kurtosis,
            crest,
            slope,
            self.first,
            self.last,
        ]
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
