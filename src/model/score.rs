//! `faultline model score`: a features CSV (as `faultline features` writes
//! it) scored exactly as the daemon scores windows, for the data team's
//! parity checks against their own runtime.

use std::io::Write;
use std::path::Path;

use super::{Model, ModelError};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{path}: {source}")]
    Csv { path: String, source: csv::Error },
    #[error("{path}: no column {column:?}, which the model reads")]
    MissingColumn { path: String, column: String },
    #[error("{path}: line {line}: column {column:?}: {value:?} is not a number")]
    NotANumber { path: String, line: u64, column: String, value: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
}

/// Rows scored per tract run.
const BATCH: usize = 1024;

/// Scores every row of `input` into `output` (CSV: device_id, window_start,
/// window_end, probability). Returns the number of rows.
pub fn score_csv(model: &Model, input: &Path, output: &mut dyn Write) -> Result<u64, ScoreError> {
    let path = input.display().to_string();
    let csv_err = |source| ScoreError::Csv { path: path.clone(), source };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(input).map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ScoreError::MissingColumn { path: path.clone(), column: name.to_owned() })
    };
    let keys = [find("device_id")?, find("window_start")?, find("window_end")?];
    let columns: Vec<usize> = model.package.features.iter().map(|f| find(&f.name)).collect::<Result<_, _>>()?;
    let score_name = match model.package.kind {
        super::OutputKind::Probability => "probability",
        super::OutputKind::Value => "value",
    };
    let mut w = csv::Writer::from_writer(output);
    w.write_record(["device_id", "window_start", "window_end", score_name]).map_err(csv_err)?;
    let mut ids: Vec<[String; 3]> = Vec::with_capacity(BATCH);
    let mut rows: Vec<f32> = Vec::with_capacity(BATCH * model.width());
    let mut total = 0;
    let mut flush = |ids: &mut Vec<[String; 3]>, rows: &mut Vec<f32>, w: &mut csv::Writer<&mut dyn Write>| {
        model.fill(rows);
        let scores = model.run(rows, ids.len())?;
        for (id, s) in ids.iter().zip(scores) {
            w.write_record([id[0].as_str(), id[1].as_str(), id[2].as_str(), &s.to_string()])
                .map_err(|e| ScoreError::Write(e.into()))?;
        }
        total += ids.len() as u64;
        ids.clear();
        rows.clear();
        Ok::<(), ScoreError>(())
    };
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map_or(0, |p| p.line());
        ids.push(keys.map(|k| record.get(k).unwrap_or_default().to_owned()));
        for (&c, f) in columns.iter().zip(&model.package.features) {
            let cell = record.get(c).unwrap_or_default();
            let v = if cell.is_empty() {
                f32::NAN
            } else {
                cell.parse::<f32>().map_err(|_| ScoreError::NotANumber {
                    path: path.clone(),
                    line,
                    column: f.name.clone(),
                    value: cell.to_owned(),
                })?
            };
            rows.push(v);
        }
        if ids.len() == BATCH {
            flush(&mut ids, &mut rows, &mut w)?;
        }
    }
    if !ids.is_empty() {
        flush(&mut ids, &mut rows, &mut w)?;
    }
    w.flush()?;
    Ok(total)
}
