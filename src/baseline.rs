//! Per-device baselines (issue 8): a model of a machine's own normal,
//! learnt from its first windows, that needs no labels.
//!
//! During a warm-up a device's window feature vectors are collected; then
//! [`Fitted::fit`] standardises them, shrinks their covariance towards a
//! scaled identity (Ledoit-Wolf: few warm-up windows, many features), and
//! keeps its largest principal components. A later window is scored by
//! Hotelling's T² on those components and by Q (SPE), the squared distance
//! from their subspace, each against a limit taken from the warm-up's own
//! scores (a quantile, times a margin for each). [`Score::shares`] says how much
//! each feature contributed, so an alert can say why.
//!
//! Pure arithmetic, deterministic: the same rows give the same model, bit
//! for bit, on every run. `tests/reference/baseline_ref.py` is the numpy
//! reference the unit tests compare with.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use serde::{Deserialize, Serialize};

/// A standard deviation below this share of the feature's level (or of 1,
/// whichever is larger) is raised to it: a feature constant during the
/// warm-up would otherwise make any later change infinitely anomalous.
pub const SCALE_FLOOR: f64 = 1e-3;

/// The settings chosen on SKAB `valve1/` (README "Baselines"): the
/// defaults of `[baseline]` and of `faultline evaluate`.
pub mod tuned {
    pub const WARMUP_WINDOWS: usize = 40;
    pub const COMPONENTS: usize = 1;
    pub const QUANTILE: f64 = 0.99;
    pub const T2_MARGIN: f64 = 2.0;
    pub const Q_MARGIN: f64 = 8.0;
    pub const ADAPT_RATE: f64 = 0.1;
    pub const ADAPT_BELOW: f64 = 0.5;
}

/// How a baseline is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitConfig {
    /// Principal components kept for T² (at most the number of features).
    pub components: usize,
    /// The warm-up scores' quantile the limits start from, in (0, 1].
    pub quantile: f64,
    /// T²'s limit is its quantile times this (≥ 1 leaves room for normal
    /// windows a short warm-up did not see).
    pub t2_margin: f64,
    /// Q's likewise. Q's tail is the one a short warm-up sees least of
    /// (few windows, several residual dimensions): on SKAB `valve1/` its
    /// margin wants to be several times T²'s (README "Baselines").
    pub q_margin: f64,
}

impl FitConfig {
    /// The fewest rows [`Fitted::fit`] accepts: more than the components,
    /// so the limits come from more than a fit to its own points.
    pub fn min_rows(&self) -> usize {
        3.max(self.components + 2)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("{rows} warm-up windows for {features} features: at least {need} are needed")]
    TooFew { rows: usize, features: usize, need: usize },
    #[error("warm-up window {row} has a value that is not finite")]
    NotFinite { row: usize },
    #[error("the warm-up rows have {got} values, not {features}")]
    Width { got: usize, features: usize },
    #[error("the warm-up values are too large to standardise (their sums overflow)")]
    Overflow,
}

/// A fitted model of normal. Its size is O(p·k): for p features and k
/// components, 2p + p·k + k + 4 numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// The Ledoit-Wolf shrinkage the covariance was fitted with, in [0, 1].
    pub shrinkage: f64,
    /// The kept components' variances, largest first.
    pub eigenvalues: Vec<f64>,
    /// The kept components, column after column (p values each).
    pub components: Vec<f64>,
    pub t2_limit: f64,
    pub q_limit: f64,
}

/// One window's score against a [`Fitted`] baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub t2: f64,
    pub q: f64,
    /// `t2 / t2_limit + q / q_limit`: above 1 when the window is beyond
    /// both limits together; each term above 1 is a limit passed.
    pub t2_ratio: f64,
    pub q_ratio: f64,
    /// Each feature's share of `t2_ratio + q_ratio` (they sum to 1; a
    /// share of T² may be negative when a feature pulls towards normal).
    pub shares: Vec<f64>,
}

impl Score {
    /// The larger of the two ratios: above 1, a limit was passed.
    pub fn ratio(&self) -> f64 {
        self.t2_ratio.max(self.q_ratio)
    }

    /// The ratio on the alert policy's probability scale, so that one
    /// policy judges model and baseline windows alike: `1 − (1 − level)^ratio`,
    /// with `level` the probability at which a window counts as bad. A
    /// window at the warm-up's mean is 0, one at a limit is exactly
    /// `level`, one twice past it `1 − (1 − level)²` (0.96 for 0.8); it
    /// rises towards 1 without reaching it. `level` is kept in
    /// [0.001, 0.999] so that every window keeps a finite place on the scale.
    pub fn probability(&self, level: f64) -> f64 {
        let r = self.ratio();
        if r.is_nan() {
            return f64::NAN;
        }
        let level = if level.is_finite() { level.clamp(1e-3, 1.0 - 1e-3) } else { 0.5 };
        1.0 - (1.0 - level).powf(r.max(0.0))
    }
}

impl Fitted {
    /// Fits a baseline to warm-up `rows` (each with the same features).
    pub fn fit(rows: &[Vec<f64>], cfg: &FitConfig) -> Result<Fitted, FitError> {
        let p = rows.first().map_or(0, Vec::len);
        let n = rows.len();
        let need = cfg.min_rows();
        if n < need || p == 0 {
            return Err(FitError::TooFew { rows: n, features: p, need });
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != p {
                return Err(FitError::Width { got: r.len(), features: p });
            }
            if r.iter().any(|v| !v.is_finite()) {
                return Err(FitError::NotFinite { row: i });
            }
        }
        let nf = n as f64;
        let mean: Vec<f64> = (0..p).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / nf).collect();
        let scale: Vec<f64> = (0..p)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / nf;
                var.sqrt().max(SCALE_FLOOR * mean[j].abs().max(1.0))
            })
            .collect();
        // Finite readings can still overflow a sum: refuse them here rather
        // than fit NaN (which would never score) or hand NaN to the solver.
        if mean.iter().chain(&scale).any(|v| !v.is_finite()) {
            return Err(FitError::Overflow);
        }
        let z = DMatrix::from_fn(n, p, |i, j| (rows[i][j] - mean[j]) / scale[j]);
        let (cov, shrinkage) = ledoit_wolf(&z);
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]).then(a.cmp(&b)));
        let k = cfg.components.clamp(1, p);
        let mut eigenvalues = Vec::with_capacity(k);
        let mut components = Vec::with_capacity(p * k);
        for &c in &order[..k] {
            // A shrunk covariance is positive definite unless every
            // feature was constant; keep the division finite regardless.
            eigenvalues.push(eig.eigenvalues[c].max(f64::MIN_POSITIVE));
            let v = eig.eigenvectors.column(c);
            // One sign per component, so the stored model does not depend
            // on the solver's choice: the largest entry positive.
            let big = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            components.extend(v.iter().map(|x| x * sign));
        }
        let mut fitted =
            Fitted { mean, scale, shrinkage, eigenvalues, components, t2_limit: f64::NAN, q_limit: f64::NAN };
        let (mut t2s, mut qs): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| fitted.statistics(r).0).unzip();
        fitted.t2_limit = quantile(&mut t2s, cfg.quantile) * cfg.t2_margin;
        fitted.q_limit = quantile(&mut qs, cfg.quantile) * cfg.q_margin;
        // A warm-up that fits its components exactly has Q = 0 throughout:
        // a limit of 0 would flag every later window.
        let floor = f64::EPSILON * fitted.mean.len() as f64;
        fitted.t2_limit = fitted.t2_limit.max(floor);
        fitted.q_limit = fitted.q_limit.max(floor);
        let params = [fitted.shrinkage, fitted.t2_limit, fitted.q_limit];
        if fitted.components.iter().chain(&fitted.eigenvalues).chain(&params).any(|v| !v.is_finite()) {
            return Err(FitError::Overflow);
        }
        Ok(fitted)
    }

    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Moves the mean `rate` of the way towards `x` (finite values only).
    pub fn adapt(&mut self, x: &[f64], rate: f64) {
        let rate = rate.clamp(0.0, 1.0);
        for (m, v) in self.mean.iter_mut().zip(x) {
            if v.is_finite() {
                *m += rate * (v - *m);
            }
        }
    }

    /// Scores one window's features (`NaN` where a feature is missing:
    /// it then counts as normal, at the warm-up mean).
    pub fn score(&self, x: &[f64]) -> Score {
        let ((t2, q), (ct, cq)) = self.statistics(x);
        let t2_ratio = t2 / self.t2_limit;
        let q_ratio = q / self.q_limit;
        let total = t2_ratio + q_ratio;
        let shares = ct
            .iter()
            .zip(&cq)
            .map(|(a, b)| if total > 0.0 { (a / self.t2_limit + b / self.q_limit) / total } else { 0.0 })
            .collect();
        Score { t2, q, t2_ratio, q_ratio, shares }
    }

    /// T² and Q of `x`, and each feature's part of them.
    #[allow(clippy::type_complexity)]
    fn statistics(&self, x: &[f64]) -> ((f64, f64), (Vec<f64>, Vec<f64>)) {
        let p = self.mean.len();
        let k = self.eigenvalues.len();
        let z: Vec<f64> = (0..p)
            .map(|j| {
                let v = x.get(j).copied().unwrap_or(f64::NAN);
                if v.is_finite() {
                    (v - self.mean[j]) / self.scale[j]
                } else {
                    0.0
                }
            })
            .collect();
        let column = |a: usize| &self.components[a * p..(a + 1) * p];
        let t: Vec<f64> = (0..k).map(|a| column(a).iter().zip(&z).map(|(v, z)| v * z).sum()).collect();
        let t2 = (0..k).map(|a| t[a] * t[a] / self.eigenvalues[a]).sum();
        let mut ct = vec![0.0; p];
        let mut resid = z.clone();
        for (a, (ta, la)) in t.iter().zip(&self.eigenvalues).enumerate() {
            let w = ta / la;
            for (j, v) in column(a).iter().enumerate() {
                ct[j] += z[j] * v * w;
                resid[j] -= v * ta;
            }
        }
        let cq: Vec<f64> = resid.iter().map(|r| r * r).collect();
        let q = cq.iter().sum();
        ((t2, q), (ct, cq))
    }
}

/// What a device's baseline learns from and how (config `[baseline]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    /// Window features, by `<signal>.<stat>` name.
    pub features: Vec<String>,
    /// Windows with every feature present collected before fitting.
    pub warmup_windows: usize,
    pub fit: FitConfig,
    /// Slow adaptation: after each window judged normal (its ratio below
    /// `adapt_below`), the baseline's mean moves this share of the way to
    /// the window's features (0: never), so a slow drift of the level does
    /// not alarm, while a window near or past a limit leaves it as it is.
    pub adapt_rate: f64,
    pub adapt_below: f64,
}

impl BaselineConfig {
    /// The fewest warm-up windows a fit accepts.
    pub fn min_warmup(&self) -> usize {
        self.fit.min_rows()
    }

    /// The warm-up windows a device collects before its fit.
    pub fn warmup_needed(&self) -> usize {
        self.warmup_windows.max(self.min_warmup())
    }
}

/// A device's baseline: learning its normal, then scoring against it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceBaseline {
    /// Baselines fitted so far: 1 after the first warm-up, one more after
    /// each reset's.
    pub version: u32,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// Warm-up rows so far (at most `warmup_windows`).
    Learning { rows: Vec<Vec<f64>> },
    /// Fitted at `since_ms` (the end of the last warm-up window).
    Active { fitted: Fitted, since_ms: i64 },
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Learning { rows: Vec::new() }
    }
}

/// What one window did to a device's baseline.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Kept for the warm-up: `have` of `need` windows.
    Learning {
        have: usize,
        need: usize,
    },
    /// Left out: a feature was missing or not finite.
    Incomplete,
    /// The warm-up is complete and the baseline fitted (version `version`).
    Fitted {
        version: u32,
    },
    Scored(Score),
}

impl DeviceBaseline {
    /// Takes one window's features (in `cfg.features` order) that ended at
    /// `end_ms`.
    pub fn observe(&mut self, cfg: &BaselineConfig, x: Vec<f64>, end_ms: i64) -> Observed {
        let complete = x.len() == cfg.features.len() && x.iter().all(|v| v.is_finite());
        match &mut self.phase {
            Phase::Active { fitted, .. } => {
                let score = fitted.score(&x);
                if cfg.adapt_rate > 0.0 && complete && score.ratio() < cfg.adapt_below {
                    fitted.adapt(&x, cfg.adapt_rate);
                }
                Observed::Scored(score)
            }
            Phase::Learning { .. } if !complete => Observed::Incomplete,
            Phase::Learning { rows } => {
                let need = cfg.warmup_needed();
                rows.push(x);
                if rows.len() < need {
                    return Observed::Learning { have: rows.len(), need };
                }
                match Fitted::fit(rows, &cfg.fit) {
                    Ok(fitted) => {
                        self.version += 1;
                        self.phase = Phase::Active { fitted, since_ms: end_ms };
                        Observed::Fitted { version: self.version }
                    }
                    // Values too large to standardise (complete rows fit
                    // otherwise): the oldest goes, and learning goes on, bounded.
                    Err(_) => {
                        rows.remove(0);
                        Observed::Learning { have: rows.len(), need }
                    }
                }
            }
        }
    }

    /// Scores a window without learning from it (a late update of a
    /// window already taken); `None` while learning.
    pub fn score(&self, x: &[f64]) -> Option<Score> {
        match &self.phase {
            Phase::Active { fitted, .. } => Some(fitted.score(x)),
            Phase::Learning { .. } => None,
        }
    }

    /// Forgets the fitted baseline and learns anew ("machine serviced").
    pub fn reset(&mut self) {
        self.phase = Phase::default();
    }

    /// Warm-up windows collected, while learning.
    pub fn learning(&self) -> Option<usize> {
        match &self.phase {
            Phase::Learning { rows } => Some(rows.len()),
            Phase::Active { .. } => None,
        }
    }
}

/// The Ledoit-Wolf (2004) shrunk covariance of the rows of `z` (centred
/// columns), towards `mu·I` with `mu` the mean variance, and the shrinkage.
fn ledoit_wolf(z: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let (n, p) = z.shape();
    let nf = n as f64;
    let s = z.transpose() * z / nf;
    let mu = s.trace() / p as f64;
    let mut target = DMatrix::identity(p, p);
    target *= mu;
    let d2 = (&s - &target).norm_squared();
    let mut b2 = 0.0;
    for i in 0..n {
        let r: DVector<f64> = z.row(i).transpose();
        b2 += (&r * r.transpose() - &s).norm_squared();
    }
    let b2 = (b2 / (nf * nf)).min(d2);
    let shrinkage = if d2 > 0.0 { b2 / d2 } else { 1.0 };
    (target * shrinkage + s * (1.0 - shrinkage), shrinkage)
}

/// The `q` quantile of `v` with linear interpolation between order
/// statistics (numpy's default); sorts `v`.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    match v.get(lo + 1) {
        Some(hi) if frac > 0.0 => v[lo] + (hi - v[lo]) * frac,
        _ => v[lo],
    }
}

#[cfg(test)]
mod tests;
