//! CSV files as readings: the input of `faultline features` and
//! `faultline replay`, so that both read a data set the same way.
//!
//! A row is one reading: its time from the time column (RFC 3339, a naive
//! `YYYY-MM-DD hh:mm:ss` taken as UTC, or integer epoch milliseconds), its
//! device from a column or a fixed id, its values from the signal columns.
//! An empty, `NaN` or infinite cell is "not measured", exactly as a JSON
//! `null` is in a live reading.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a row's device id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceFrom {
    Fixed(String),
    Column(String),
}

/// How to read a CSV file (the options of `faultline features` and `replay`).
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Time column; default: the first column.
    pub time_column: Option<String>,
    pub device: DeviceFrom,
    pub delimiter: u8,
    /// Signal columns in output order; default: every numeric column but
    /// the time, device and label columns, in file order.
    pub signals: Option<Vec<String>>,
    pub label_column: Option<String>,
}

/// What can go wrong reading a data file. Messages leave out their
/// `source`: the command line prints the whole chain, so the cause appears
/// once, after the context.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}")]
    Csv { path: PathBuf, line: u64, source: csv::Error },
    #[error("{path}: no column {column:?} (columns: {available})")]
    MissingColumn { path: PathBuf, column: String, available: String },
    #[error("{path}: line {line}: column {column:?}: {value:?} is not a time (RFC 3339, YYYY-MM-DD hh:mm:ss or epoch milliseconds)")]
    BadTime { path: PathBuf, line: u64, column: String, value: String },
    #[error("{path}: line {line}: column {column:?}: {value:?} is not a number")]
    NotANumber { path: PathBuf, line: u64, column: String, value: String },
    #[error("{path}: line {line}: empty device id in column {column:?}")]
    EmptyDevice { path: PathBuf, line: u64, column: String },
    #[error("{path}: no numeric signal columns found; name them with --signals")]
    NoSignals { path: PathBuf },
}

/// One row as a reading.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub device_id: String,
    pub ts_ms: i64,
    /// `(signal index, value)` for the signals measured in this row.
    pub values: Vec<(usize, f64)>,
    pub label: Option<f64>,
    /// Cells that were NaN or infinite (treated as not measured).
    pub non_finite: u32,
}

/// Parses a numeric cell: `Ok(None)` for "not measured".
fn number(cell: &str) -> Result<Option<f64>, ()> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    cell.parse::<f64>().map(Some).map_err(|_| ())
}

/// Reads rows of a CSV file as readings.
pub struct CsvReader {
    path: PathBuf,
    reader: csv::Reader<File>,
    record: csv::StringRecord,
    time_idx: usize,
    time_name: String,
    device: Result<String, (usize, String)>,
    signal_idx: Vec<usize>,
    signal_names: Vec<String>,
    label_idx: Option<usize>,
}

fn open(path: &Path, delimiter: u8) -> Result<csv::Reader<File>, FileError> {
    let file = File::open(path).map_err(|source| FileError::Open { path: path.to_owned(), source })?;
    Ok(csv::ReaderBuilder::new().delimiter(delimiter).trim(csv::Trim::All).from_reader(file))
}

fn csv_err(path: &Path, e: csv::Error) -> FileError {
    let line = e.position().map_or(0, |p| p.line());
    FileError::Csv { path: path.to_owned(), line, source: e }
}

impl CsvReader {
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<CsvReader, FileError> {
        let mut reader = open(path, opts.delimiter)?;
        let headers = reader.headers().map_err(|e| csv_err(path, e))?.clone();
        let find = |name: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| FileError::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })
        };
        let time_idx = match &opts.time_column {
            Some(c) => find(c)?,
            None if headers.is_empty() => return Err(FileError::NoSignals { path: path.to_owned() }),
            None => 0,
        };
        let device = match &opts.device {
            DeviceFrom::Fixed(id) => Ok(id.clone()),
            DeviceFrom::Column(c) => Err((find(c)?, c.clone())),
        };
        let label_idx = opts.label_column.as_deref().map(find).transpose()?;
        let signal_idx: Vec<usize> = match &opts.signals {
            Some(names) => names.iter().map(|n| find(n)).collect::<Result<_, _>>()?,
            None => {
                let mut skip = vec![time_idx];
                skip.extend(device.as_ref().err().map(|(i, _)| *i));
                skip.extend(label_idx);
                numeric_columns(path, opts.delimiter, headers.len(), &skip)?
            }
        };
        if signal_idx.is_empty() {
            return Err(FileError::NoSignals { path: path.to_owned() });
        }
        Ok(CsvReader {
            path: path.to_owned(),
            reader,
            record: csv::StringRecord::new(),
            time_name: headers.get(time_idx).unwrap_or_default().to_owned(),
            time_idx,
            device,
            signal_names: signal_idx.iter().map(|&i| headers.get(i).unwrap_or_default().to_owned()).collect(),
            signal_idx,
            label_idx,
        })
    }

    /// Signal names, in the order of `CsvRow::values` indices.
    pub fn signals(&self) -> &[String] {
        &self.signal_names
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Result<Option<CsvRow>, FileError> {
        if !self.reader.read_record(&mut self.record).map_err(|e| csv_err(&self.path, e))? {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let rec = &self.record;
        let cell = |i: usize| rec.get(i).unwrap_or_default();
        let t = cell(self.time_idx);
        let ts_ms = crate::time::parse_cell(t).ok_or_else(|| FileError::BadTime {
            path: self.path.clone(),
            line,
            column: self.time_name.clone(),
            value: t.to_owned(),
        })?;
        let device_id = match &self.device {
            Ok(id) => id.clone(),
            Err((i, name)) => {
                let d = cell(*i);
                if d.is_empty() {
                    return Err(FileError::EmptyDevice { path: self.path.clone(), line, column: name.clone() });
                }
                d.to_owned()
            }
        };
        let mut non_finite = 0;
        let mut values = Vec::with_capacity(self.signal_idx.len());
        for (k, &i) in self.signal_idx.iter().enumerate() {
            match number(cell(i)) {
                Ok(Some(v)) if v.is_finite() => values.push((k, v)),
                Ok(Some(_)) => non_finite += 1,
                Ok(None) => {}
                Err(()) => {
                    return Err(FileError::NotANumber {
                        path: self.path.clone(),
                        line,
                        column: self.signal_names[k].clone(),
                        value: cell(i).to_owned(),
                    })
                }
            }
        }
        let label = match self.label_idx {
            None => None,
            Some(i) => number(cell(i)).map_err(|()| FileError::NotANumber {
                path: self.path.clone(),
                line,
                column: self.reader.headers().ok().and_then(|h| h.get(i)).unwrap_or_default().to_owned(),
                value: cell(i).to_owned(),
            })?,
        };
        Ok(Some(CsvRow { line, device_id, ts_ms, values, label: label.filter(|l| l.is_finite()), non_finite }))
    }
}

/// Columns (other than `skip`) whose every non-empty cell is a number, and
/// that have at least one: a first pass over the file.
fn numeric_columns(path: &Path, delimiter: u8, width: usize, skip: &[usize]) -> Result<Vec<usize>, FileError> {
    let mut reader = open(path, delimiter)?;
    let mut numeric = vec![true; width];
    let mut seen = vec![false; width];
    let mut rec = csv::StringRecord::new();
    while reader.read_record(&mut rec).map_err(|e| csv_err(path, e))? {
        for (i, c) in rec.iter().enumerate().take(width) {
            match number(c) {
                Ok(Some(_)) => seen[i] = true,
                Ok(None) => {}
                Err(()) => numeric[i] = false,
            }
        }
    }
    Ok((0..width).filter(|i| numeric[*i] && seen[*i] && !skip.contains(i)).collect())
}
