//! `faultline evaluate --protocol skab`: the per-device baseline scored the
//! way SKAB's outlier-detection leaderboard scores (issue 8).
//!
//! Every fault file of `valve1/`, `valve2/` and `other/` is one device run.
//! Its rows go through the daemon's own window engine in file order; each
//! closed window's features go to the device's [`DeviceBaseline`], which
//! learns from the first `warmup_windows` and scores the rest. A reading is
//! flagged when its window is (a limit passed); readings in warm-up windows
//! are the training part and are not counted. Point-level F1, FAR (false
//! alarms among normal readings) and MAR (missed among anomalous ones) are
//! then summed over the files, per folder and overall, as the leaderboard
//! does. The detection delay of a file is the end of its first flagged
//! window at or after the fault's first reading, minus that reading's time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::baseline::{BaselineConfig, DeviceBaseline, Observed};
use crate::clean::Cleaning;
use crate::sources::file::{CsvOptions, CsvReader, DeviceFrom, FileError};
use crate::window::{ClosedWindow, Engine, StateLimits, WindowSpec};

/// The folders of SKAB v0.9 with faults; `valve1/` is the tuning set, the
/// other two are held out.
pub const SKAB_FOLDERS: [&str; 3] = ["valve1", "valve2", "other"];

/// The sensor columns of a SKAB file.
pub const SKAB_SIGNALS: [&str; 8] = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
];

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("{path}: cannot list the folder")]
    List { path: PathBuf, source: std::io::Error },
    #[error("{0}: no CSV files")]
    Empty(PathBuf),
    #[error(transparent)]
    Input(#[from] FileError),
}

/// Confusion counts over readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    }

    pub fn f1(&self) -> f64 {
        Counts::ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// False alarm rate: normal readings flagged.
    pub fn far(&self) -> f64 {
        Counts::ratio(self.fp, self.fp + self.tn)
    }

    /// Missing alarm rate: anomalous readings not flagged.
    pub fn mar(&self) -> f64 {
        Counts::ratio(self.fn_, self.fn_ + self.tp)
    }
}

/// One file's result.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub folder: String,
    pub device: String,
    pub counts: Counts,
    /// Readings in warm-up windows (not counted).
    pub warmup_readings: u64,
    /// Detection delay in ms (`None`: the fault was never flagged, or the
    /// file has none).
    pub delay_ms: Option<i64>,
    pub has_fault: bool,
}

/// Evaluates one SKAB file of `folder` as device `device`.
pub fn evaluate_file(
    path: &Path,
    folder: &str,
    device: &str,
    window: WindowSpec,
    baseline: &BaselineConfig,
) -> Result<FileResult, FileError> {
    let csv = CsvOptions {
        time_column: Some("datetime".into()),
        device: DeviceFrom::Fixed(device.to_owned()),
        delimiter: b';',
        signals: Some(SKAB_SIGNALS.iter().map(|s| (*s).to_owned()).collect()),
        label_column: Some("anomaly".into()),
    };
    let mut reader = CsvReader::open(path, &csv)?;
    let signals: Vec<String> = reader.signals().to_vec();
    let limits = StateLimits::unbounded();
    let mut engine = Engine::new(window, limits, Cleaning::default());
    let mut state = DeviceBaseline::default();
    // Window start → flagged (`None`: a warm-up window).
    let mut flags: HashMap<i64, Option<bool>> = HashMap::new();
    let mut readings: Vec<(i64, bool)> = Vec::new();
    let mut out = Vec::new();
    let mut values: Vec<(&str, f64)> = Vec::with_capacity(signals.len());
    let mut judge = |out: &mut Vec<ClosedWindow>, flags: &mut HashMap<i64, Option<bool>>| {
        for w in out.drain(..) {
            let x: Vec<f64> = baseline.features.iter().map(|f| w.feature(f).unwrap_or(f64::NAN)).collect();
            let flag = match state.observe(baseline, x, w.end_ms) {
                Observed::Scored(s) => Some(s.ratio() > 1.0),
                _ => None,
            };
            flags.insert(w.start_ms, flag);
        }
    };
    while let Some(row) = reader.next_row()? {
        values.clear();
        values.extend(row.values.iter().map(|&(i, v)| (signals[i].as_str(), v)));
        readings.push((row.ts_ms, row.label.is_some_and(|l| l > 0.5)));
        engine.record(device, row.ts_ms, values.iter().copied(), 0, &mut out);
        judge(&mut out, &mut flags);
    }
    engine.flush(&mut out);
    judge(&mut out, &mut flags);
    let size = window.size_ms.max(1);
    let mut counts = Counts::default();
    let mut warmup = 0;
    let fault_start = readings.iter().find(|(_, a)| *a).map(|(t, _)| *t);
    for &(ts, anomalous) in &readings {
        match (flags.get(&ts.div_euclid(size).saturating_mul(size)).copied().flatten(), anomalous) {
            (None, _) => warmup += 1,
            (Some(true), true) => counts.tp += 1,
            (Some(true), false) => counts.fp += 1,
            (Some(false), true) => counts.fn_ += 1,
            (Some(false), false) => counts.tn += 1,
        }
    }
    let delay = fault_start.and_then(|t0| {
        let first = flags.iter().filter(|(s, f)| **f == Some(true) && **s + size > t0).map(|(s, _)| *s).min();
        first.map(|s| s + size - t0)
    });
    Ok(FileResult {
        folder: folder.to_owned(),
        device: device.to_owned(),
        counts,
        warmup_readings: warmup,
        delay_ms: delay,
        has_fault: fault_start.is_some(),
    })
}

/// Evaluates every fault file of SKAB under `data` (the `skab/` folder).
pub fn evaluate_skab(
    data: &Path,
    window: WindowSpec,
    baseline: &BaselineConfig,
) -> Result<Vec<FileResult>, EvaluateError> {
    let mut results = Vec::new();
    for folder in SKAB_FOLDERS {
        let dir = data.join(folder);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| EvaluateError::List { path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        if files.is_empty() {
            return Err(EvaluateError::Empty(dir));
        }
        // Numeric order of the file stems (0, 1, 2, ... 10), as SKAB lists them.
        files.sort_by_key(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (stem.parse::<u64>().unwrap_or(u64::MAX), stem)
        });
        for path in files {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let device = format!("skab-{folder}-{stem}");
            results.push(evaluate_file(&path, folder, &device, window, baseline)?);
        }
    }
    Ok(results)
}

/// The table `faultline evaluate` prints: per folder, then all together.
pub fn report(results: &[FileResult]) -> String {
    let mut s = String::from(
        "| files | readings scored | F1 | FAR, % | MAR, % | faults detected | median detection delay |\n|---|---|---|---|---|---|---|\n",
    );
    let mut groups: Vec<(String, Vec<&FileResult>)> =
        SKAB_FOLDERS.iter().map(|f| (format!("{f}/"), results.iter().filter(|r| r.folder == *f).collect())).collect();
    groups.push(("all".to_owned(), results.iter().collect()));
    for (name, rs) in groups {
        let mut c = Counts::default();
        for r in &rs {
            c.add(&r.counts);
        }
        let faults = rs.iter().filter(|r| r.has_fault).count();
        let mut delays: Vec<i64> = rs.iter().filter_map(|r| r.delay_ms).collect();
        delays.sort_unstable();
        let median = delays.get(delays.len() / 2).map_or("-".to_owned(), |d| format!("{} s", d / 1000));
        s.push_str(&format!(
            "| {name} ({}) | {} | {:.3} | {:.1} | {:.1} | {}/{} | {} |\n",
            rs.len(),
            c.tp + c.fp + c.fn_ + c.tn,
            c.f1(),
            100.0 * c.far(),
            100.0 * c.mar(),
            delays.len(),
            faults,
            median
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_the_leaderboards() {
        let c = Counts { tp: 30, fp: 10, fn_: 20, tn: 40 };
        assert!((c.f1() - 60.0 / 90.0).abs() < 1e-12);
        assert!((c.far() - 0.2).abs() < 1e-12);
        assert!((c.mar() - 0.4).abs() < 1e-12);
        assert!(Counts::default().f1().is_nan());
    }
}
