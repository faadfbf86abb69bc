//! `model.toml` (SPEC 3): what the model reads, what it writes, its alert
//! threshold and free-form training metadata.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::window::{stat_index, STAT_NAMES};

/// `model.toml` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageToml {
    pub name: String,
    pub version: String,
    pub input: InputToml,
    pub output: OutputToml,
    #[serde(default)]
    pub alert: AlertToml,
    /// Free-form; shown in the UI. `[training.reference."<feature>"]` tables
    /// with `mean`, `std`, `p05`, `p50`, `p95` give the dashboard and drift
    /// checks each feature's training distribution.
    #[serde(default)]
    pub training: Option<toml::Table>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputToml {
    /// The ONNX input, float32 `[batch, n]`.
    pub name: String,
    /// `<signal>.<stat>` per column, in order.
    pub features: Vec<String>,
    /// Replacements for features missing in a window (NaN otherwise).
    #[serde(default)]
    pub fill: BTreeMap<String, f64>,
}

/// What the output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A fault probability in [0, 1] (the default; what alerts use).
    #[default]
    Probability,
    /// Any number, e.g. a remaining-useful-life regressor: scored and
    /// shown, never alerted on.
    Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputToml {
    /// The ONNX output: `[batch, k]` (column `positive_index`), `[batch]` or `[batch, 1]`.
    pub name: String,
    /// Column of the positive class in a `[batch, k]` output (default 1 for two columns, else 0).
    #[serde(default)]
    pub positive_index: Option<usize>,
    #[serde(default)]
    pub kind: OutputKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertToml {
    /// Default alert threshold; the config's `alerts.threshold` overrides it.
    pub threshold: Option<f64>,
}

/// A feature the model reads: a statistic of a signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub signal: String,
    /// Index into [`STAT_NAMES`].
    pub stat: usize,
    /// Value when the window lacks it.
    pub fill: f32,
}

/// A checked `model.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub input: String,
    pub features: Vec<Feature>,
    pub output: String,
    pub positive_index: Option<usize>,
    pub kind: OutputKind,
    pub threshold: Option<f64>,
    pub training: Option<toml::Table>,
}

impl Package {
    /// The window size the model was trained on (`[training] window`), if stated.
    pub fn training_window(&self) -> Option<std::time::Duration> {
        let w = self.training.as_ref()?.get("window")?.as_str()?;
        humantime::parse_duration(w).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Package {
    /// Reads and checks `dir/model.toml`.
    pub fn read(dir: &Path) -> Result<Package, PackageError> {
        let path = dir.join("model.toml");
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|source| PackageError::Read { path: shown.clone(), source })?;
        Package::parse(&text).map_err(|message| PackageError::Invalid { path: shown, message })
    }

    /// Parses and checks the text of a `model.toml`; the error lists every problem.
    pub fn parse(text: &str) -> Result<Package, String> {
        let raw: PackageToml = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let mut problems = Vec::new();
        if raw.name.trim().is_empty() {
            problems.push("name: must not be empty".to_owned());
        }
        if raw.version.trim().is_empty() {
            problems.push("version: must not be empty".to_owned());
        }
        if raw.input.features.is_empty() {
            problems.push("input.features: must list at least one feature".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        let mut features = Vec::with_capacity(raw.input.features.len());
        for (i, f) in raw.input.features.iter().enumerate() {
            if !seen.insert(f.as_str()) {
                problems.push(format!("input.features[{i}]: {f:?} is listed twice"));
            }
            match f.rsplit_once('.').and_then(|(sig, stat)| stat_index(stat).map(|k| (sig, k))) {
                Some((signal, stat)) if !signal.is_empty() => features.push(Feature {
                    name: f.clone(),
                    signal: signal.to_owned(),
                    stat,
                    fill: raw.input.fill.get(f).map_or(f32::NAN, |v| *v as f32),
                }),
                _ => problems.push(format!(
                    "input.features[{i}]: {f:?} is not <signal>.<stat> with a stat among {}",
                    STAT_NAMES.join(" ")
                )),
            }
        }
        for (k, v) in &raw.input.fill {
            if !raw.input.features.contains(k) {
                problems.push(format!("input.fill: {k:?} is not one of input.features"));
            }
            if !v.is_finite() {
                problems.push(format!("input.fill: {k:?} must be a finite number"));
            }
        }
        if let Some(t) = raw.alert.threshold {
            if !(0.0..=1.0).contains(&t) {
                problems.push("alert.threshold: must be between 0 and 1".to_owned());
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Package {
            name: raw.name,
            version: raw.version,
            input: raw.input.name,
            features,
            output: raw.output.name,
            positive_index: raw.output.positive_index,
            kind: raw.output.kind,
            threshold: raw.alert.threshold,
            training: raw.training,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
name = "pump-fault"
version = "3"
[input]
name = "features"            # ONNX input, float32 [batch, n]
features = ["Temperature.mean", "Temperature.std", "Accelerometer1RMS.rms"]
fill = { "Temperature.std" = 0.0 }   # optional NaN replacements
[output]
name = "probabilities"       # float32 [batch, 2] (column positive_index) or [batch] / [batch, 1]
positive_index = 1
[alert]
threshold = 0.8              # default; the config may override
[training]                   # optional, free-form metadata shown in the UI
dataset = "..."
trained_at = "2026-11-20T00:00:00Z"
metrics = { auc = 0.93, precision = 0.81, recall = 0.77 }
"#;

    #[test]
    fn the_spec_example_parses() {
        let p = Package::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str(), p.input.as_str()), ("pump-fault", "3", "features"));
        assert_eq!(p.features.len(), 3);
        assert_eq!(p.features[1].signal, "Temperature");
        assert_eq!(STAT_NAMES[p.features[1].stat], "std");
        assert_eq!(p.features[1].fill, 0.0);
        assert!(p.features[0].fill.is_nan());
        assert_eq!(p.positive_index, Some(1));
        assert_eq!(p.kind, OutputKind::Probability);
        assert_eq!(p.threshold, Some(0.8));
        assert!(p.training.is_some_and(|t| t.contains_key("metrics")));
    }

    #[test]
    fn signal_names_may_hold_dots_and_spaces() {
        let p = Package::parse(
            "name='m'\nversion='1'\n[input]\nname='x'\nfeatures=['Volume Flow RateRMS.mean','a.b.kurtosis']\n[output]\nname='y'\n",
        )
        .unwrap();
        assert_eq!(p.features[0].signal, "Volume Flow RateRMS");
        assert_eq!(p.features[1].signal, "a.b");
    }

    #[test]
    fn every_problem_is_named() {
        let err = Package::parse(
            "name=''\nversion='1'\n[input]\nname='x'\nfeatures=['T.mean','T.mean','T.average','nodot']\n\
             fill={'Other.mean'=1.0}\n[output]\nname='y'\n[alert]\nthreshold=2.0\n",
        )
        .unwrap_err();
        for want in [
            "name: must not be empty",
            "input.features[1]: \"T.mean\" is listed twice",
            "input.features[2]: \"T.average\" is not <signal>.<stat>",
            "input.features[3]: \"nodot\"",
            "input.fill: \"Other.mean\" is not one of input.features",
            "alert.threshold: must be between 0 and 1",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        let err = Package::parse(
            "name='m'\nversion='1'\nsurprise=1\n[input]\nname='x'\nfeatures=['a.mean']\n[output]\nname='y'\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `surprise`"), "{err}");
    }
}
