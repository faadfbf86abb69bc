//! `faultline features`: window features computed offline from a CSV by
//! the daemon's own window engine, so training and serving cannot disagree.
//!
//! Rows go through [`Engine::record`] in file order exactly as live
//! readings would, with the same out-of-orderness, lateness and cleaning
//! rules; at the end of the file every open window is flushed. A window
//! re-emitted after a late row replaces its earlier version, so the output
//! holds each window's final statistics, sorted by device and start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::clean::Cleaning;
use crate::sources::file::{CsvOptions, CsvReader, FileError};
use crate::window::{ClosedWindow, Engine, StateLimits, WindowSpec, STAT_NAMES};

/// Internal signal name carrying the label column through the engine: its
/// `max` statistic is the window's label. Control characters cannot occur
/// in a real signal name.
const LABEL_SIGNAL: &str = "\u{1}label";

#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error(transparent)]
    Input(#[from] FileError),
    #[error("cannot write {name}")]
    Output { name: String, source: std::io::Error },
}

/// What the run did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub windows: u64,
    /// Rows later than the allowed lateness: left out, as the daemon would.
    pub late_rows: u64,
    /// Cells that were NaN or infinite, treated as not measured.
    pub non_finite_cells: u64,
    /// Values dropped by the cleaning rules.
    pub cleaned_values: u64,
}

/// Computes the features of `input` into `output`; `output_name` names it
/// in errors.
pub fn run(
    input: &Path,
    csv: &CsvOptions,
    spec: WindowSpec,
    cleaning: Cleaning,
    output: &mut dyn Write,
    output_name: &str,
) -> Result<Summary, FeaturesError> {
    let mut reader = CsvReader::open(input, csv)?;
    let signals: Vec<String> = reader.signals().to_vec();
    let limits = StateLimits::unbounded();
    let mut engine = Engine::new(spec, limits, cleaning);
    let mut windows: BTreeMap<(Arc<str>, i64), ClosedWindow> = BTreeMap::new();
    let mut out = Vec::new();
    let mut summary = Summary::default();
    let mut values: Vec<(&str, f64)> = Vec::with_capacity(signals.len() + 1);
    while let Some(row) = reader.next_row()? {
        summary.rows += 1;
        summary.non_finite_cells += u64::from(row.non_finite);
        values.clear();
        values.extend(row.values.iter().map(|&(i, v)| (signals[i].as_str(), v)));
        if let Some(l) = row.label {
            values.push((LABEL_SIGNAL, l));
        }
        engine.record(&row.device_id, row.ts_ms, values.iter().copied(), 0, &mut out);
        keep(&mut windows, &mut out);
    }
    engine.flush(&mut out);
    keep(&mut windows, &mut out);
    summary.windows = windows.len() as u64;
    summary.late_rows = engine.counters().late;
    summary.cleaned_values = engine.cleaning().dropped().map(|(_, _, n)| n).sum();
    write(output, &signals, csv.label_column.as_deref(), windows.values())
        .map_err(|source| FeaturesError::Output { name: output_name.to_owned(), source })?;
    Ok(summary)
}

fn keep(windows: &mut BTreeMap<(Arc<str>, i64), ClosedWindow>, out: &mut Vec<ClosedWindow>) {
    for w in out.drain(..) {
        windows.insert((w.device_id.clone(), w.start_ms), w);
    }
}

fn write<'a>(
    output: &mut dyn Write,
    signals: &[String],
    label: Option<&str>,
    windows: impl Iterator<Item = &'a ClosedWindow>,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(output);
    let mut header: Vec<String> = vec!["device_id".into(), "window_start".into(), "window_end".into()];
    for s in signals {
        header.extend(STAT_NAMES.iter().map(|stat| format!("{s}.{stat}")));
    }
    header.extend(label.map(str::to_owned));
    w.write_record(&header)?;
    let mut row: Vec<String> = Vec::with_capacity(header.len());
    let missing = crate::window::SignalStats::default().finish();
    for win in windows {
        row.clear();
        row.push(win.device_id.to_string());
        row.push(crate::time::format_rfc3339(win.start_ms));
        row.push(crate::time::format_rfc3339(win.end_ms));
        for s in signals {
            let stats = win.signals.iter().find(|(n, _)| n.as_ref() == s).map_or(&missing, |(_, v)| v);
            row.extend(stats.iter().map(|v| v.to_string()));
        }
        if label.is_some() {
            let l = win.signals.iter().find(|(n, _)| n.as_ref() == LABEL_SIGNAL).map_or(f64::NAN, |(_, v)| v[4]);
            row.push(l.to_string());
        }
        w.write_record(&row)?;
    }
    w.flush()
}
