//! Loading a package into tract, checking it, and running it.
//!
//! Loaded once and optimised once: `model.toml` read and checked, the ONNX
//! graph parsed with faultline's own ML operators registered, the input
//! fixed to float32 `[batch, n]`, the chosen output made the only one,
//! `into_optimized`, `into_runnable`; then the output shape is checked and
//! a test inference must give finite values (probabilities in [0, 1]). A
//! package failing any step is refused with what is wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use super::onnx_ops;
use super::package::{OutputKind, Package, PackageError};
use crate::window::{ClosedWindow, SignalStats};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{path}: {message}")]
    Onnx { path: String, message: String },
    #[error("{dir}: {message}")]
    Check { dir: String, message: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded, checked, optimised model package.
#[derive(Debug)]
pub struct Model {
    pub package: Package,
    pub dir: PathBuf,
    /// The features' names in input order, shared by the alerts' values.
    feature_names: Arc<[String]>,
    plan: Arc<TypedRunnableModel>,
    width: usize,
    columns: usize,
    column: usize,
    /// Whether the graph decides what a missing (NaN) feature means itself
    /// (tree ensembles, `IsNaN`). Otherwise a row with a NaN feature scores
    /// NaN, as in onnxruntime: tract's sigmoid and tanh clamp their input
    /// with min/max, which turns NaN into a confident, wrong number.
    nan_aware: bool,
}

/// Operators after which NaN inputs have a defined meaning.
fn handles_nan(op_name: &str) -> bool {
    op_name.contains("TreeEnsemble") || op_name.eq_ignore_ascii_case("IsNan") || op_name.contains("Imputer")
}

/// Names of the graph's declared inputs or outputs, for error messages.
fn names(v: &[tract_onnx::pb::ValueInfoProto]) -> String {
    v.iter().map(|i| format!("{:?}", i.name)).collect::<Vec<_>>().join(", ")
}

/// The fixed width a graph input declares, if it declares one.
fn declared_width(v: &tract_onnx::pb::ValueInfoProto) -> Option<i64> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as Type;
    let Some(Type::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else { return None };
    let dims = &t.shape.as_ref()?.dim;
    match dims.get(1)?.value.as_ref()? {
        Value::DimValue(w) if dims.len() == 2 => Some(*w),
        _ => None,
    }
}

impl Model {
    /// Loads and checks the package in `dir`.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let package = Package::read(dir)?;
        let path = dir.join("model.onnx");
        let shown = path.display().to_string();
        let onnx_err = |message: String| ModelError::Onnx { path: shown.clone(), message };
        let check = |message: String| ModelError::Check { dir: dir.display().to_string(), message };

        // Output types as declared (ZipMap's sequence of maps) mean nothing to tract.
        let mut onnx = tract_onnx::onnx().with_ignore_output_types(true).with_ignore_output_shapes(true);
        onnx_ops::register(&mut onnx.op_register);
        let proto =
            onnx.proto_model_for_path(&path).map_err(|e| onnx_err(format!("not a readable ONNX model: {e:#}")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| onnx_err("no graph".into()))?;
        let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
        let real_inputs: Vec<_> = graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect();
        let Some(input_decl) = real_inputs.iter().find(|i| i.name == package.input) else {
            return Err(check(format!(
                "input.name {:?} is not an input of model.onnx (inputs: {})",
                package.input,
                real_inputs.iter().map(|i| format!("{:?}", i.name)).collect::<Vec<_>>().join(", ")
            )));
        };
        if real_inputs.len() != 1 {
            return Err(check(format!("model.onnx has {} inputs; faultline feeds exactly one", real_inputs.len())));
        }
        let width = package.features.len();
        if let Some(w) = declared_width(input_decl).filter(|&w| w > 0 && w as usize != width) {
            return Err(check(format!(
                "model.onnx input {:?} has {w} columns but model.toml lists {width} features",
                package.input
            )));
        }
        if !graph.output.iter().any(|o| o.name == package.output) {
            return Err(check(format!(
                "output.name {:?} is not an output of model.onnx (outputs: {})",
                package.output,
                names(&graph.output)
            )));
        }

        let parsed = onnx.parse(&proto, dir.to_str()).map_err(|e| onnx_err(format!("{e:#}")))?;
        let mut model = parsed.model;
        let outlet = *parsed
            .outlets_by_name
            .get(&package.output)
            .ok_or_else(|| check(format!("output {:?} not found in the graph", package.output)))?;
        let batch = model.sym("batch");
        model
            .set_input_fact(0, f32::fact([batch.to_dim(), width.to_dim()]).into())
            .map_err(|e| onnx_err(format!("{e:#}")))?;
        model.select_output_outlets(&[outlet]).map_err(|e| onnx_err(format!("{e:#}")))?;
        let typed = model.into_optimized().map_err(|e| {
            onnx_err(format!(
                "tract cannot run it with input [batch, {width}] (unsupported op, or a width mismatch): {e:#}"
            ))
        })?;
        let fact = typed.output_fact(0).map_err(|e| onnx_err(format!("{e:#}")))?.clone();
        let columns = match fact.shape.dims() {
            [_] => 1,
            [_, c] => c.to_usize().map_err(|_| check(format!("output {:?} has a symbolic width", package.output)))?,
            other => {
                return Err(check(format!(
                    "output {:?} has shape {other:?}; expected [batch], [batch, 1] or [batch, k]",
                    package.output
                )))
            }
        };
        if !fact.datum_type.is_float() {
            return Err(check(format!(
                "output {:?} holds {:?}, not numbers (is it the label output? name the probabilities)",
                package.output, fact.datum_type
            )));
        }
        let column = match (package.positive_index, columns) {
            (Some(i), c) if i < c => i,
            (Some(i), c) => return Err(check(format!("output.positive_index {i} is beyond the output's {c} columns"))),
            (None, 1) => 0,
            (None, 2) => 1,
            (None, c) => {
                return Err(check(format!("output has {c} columns: say which is the fault with output.positive_index")))
            }
        };
        let nan_aware = typed.nodes().iter().any(|n| handles_nan(&n.op().name()));
        let plan = typed.into_runnable().map_err(|e| onnx_err(format!("{e:#}")))?;
        let feature_names = package.features.iter().map(|f| f.name.clone()).collect();
        let m = Model { package, dir: dir.to_owned(), feature_names, plan, width, columns, column, nan_aware };
        m.test_inference().map_err(check)?;
        Ok(m)
    }

    /// The features' names in input order.
    pub fn feature_names(&self) -> &Arc<[String]> {
        &self.feature_names
    }

    /// What the test row is made of, for `faultline model check`.
    pub fn test_row_source(&self) -> &'static str {
        let has_reference = self.package.training.as_ref().and_then(|t| t.get("reference")).is_some();
        if has_reference {
            "the training reference means"
        } else {
            "the fill values, 0 elsewhere"
        }
    }

    /// The model's score for the test row.
    pub fn test_score(&self) -> Result<f32, ModelError> {
        Ok(self.run(&self.test_row(), 1)?.first().copied().unwrap_or(f32::NAN))
    }

    /// A test row: the training reference means where the package has them, else the fills, else 0.
    fn test_row(&self) -> Vec<f32> {
        let reference = self.package.training.as_ref().and_then(|t| t.get("reference")).and_then(|r| r.as_table());
        self.package
            .features
            .iter()
            .map(|f| {
                reference
                    .and_then(|r| r.get(&f.name))
                    .and_then(|v| v.get("mean"))
                    .and_then(|m| m.as_float().or_else(|| m.as_integer().map(|i| i as f64)))
                    .map(|m| m as f32)
                    .or(Some(f.fill).filter(|v| v.is_finite()))
                    .unwrap_or(0.0)
            })
            .collect()
    }

    fn test_inference(&self) -> Result<(), String> {
        let row = self.test_row();
        let rows: Vec<f32> = row.iter().chain(row.iter()).copied().collect();
        let (out, cols) = self.run_raw(&rows, 2).map_err(|e| format!("test inference failed: {e}"))?;
        for (i, v) in out.iter().enumerate() {
            if !v.is_finite() {
                return Err(format!("test inference gave {v} in column {}", i % cols));
            }
        }
        if self.package.kind == OutputKind::Probability {
            for v in out.iter().skip(self.column).step_by(cols) {
                if !(-1e-5..=1.0 + 1e-5).contains(v) {
                    return Err(format!(
                        "output {:?} column {} is not a probability: a test inference gave {v} \
                         (for a regressor, set output.kind = \"value\")",
                        self.package.output, self.column
                    ));
                }
            }
        }
        Ok(())
    }

    /// Number of input features (columns of a row).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Columns of the output and the one faultline reads.
    pub fn output_columns(&self) -> (usize, usize) {
        (self.columns, self.column)
    }

    /// Runs `n` rows (row-major, [`Model::width`] each) and returns every
    /// output column of every row, and the column count.
    pub fn run_raw(&self, rows: &[f32], n: usize) -> Result<(Vec<f32>, usize), ModelError> {
        if rows.len() != n * self.width {
            return Err(ModelError::Run(format!("{} values for {n} rows of {}", rows.len(), self.width)));
        }
        if n == 0 {
            return Ok((Vec::new(), self.columns));
        }
        let input = Tensor::from_shape(&[n, self.width], rows).map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let out = self.plan.run(tvec!(input.into())).map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let t = out[0].cast_to::<f32>().map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let plain = t.try_as_plain_ram().map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let v = plain.as_slice::<f32>().map_err(|e| ModelError::Run(format!("{e:#}")))?;
        if v.len() != n * self.columns {
            return Err(ModelError::Run(format!("output has {} values for {n} rows of {}", v.len(), self.columns)));
        }
        let mut v = v.to_vec();
        if !self.nan_aware {
            for (row, out) in rows.chunks_exact(self.width).zip(v.chunks_exact_mut(self.columns)) {
                if row.iter().any(|x| x.is_nan()) {
                    out.fill(f32::NAN);
                }
            }
        }
        Ok((v, self.columns))
    }

    /// The score (probability or value) of each of `n` rows.
    pub fn run(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let (v, cols) = self.run_raw(rows, n)?;
        Ok(v.into_iter().skip(self.column).step_by(cols).collect())
    }

    /// Appends the model's input row for window `w`: each feature by name,
    /// the package's fill where the window has no value. A signal the
    /// window never saw has count 0 and NaN for its other statistics, as in
    /// `faultline features`, so training and serving agree.
    pub fn assemble(&self, w: &ClosedWindow, out: &mut Vec<f32>) {
        let unseen = SignalStats::default().finish();
        let start = out.len();
        // Features come signal by signal: look a signal up once for its run of features.
        let mut current: Option<(&str, &[f64; 13])> = None;
        for f in &self.package.features {
            let stats = match current {
                Some((name, stats)) if name == &*f.signal => stats,
                _ => {
                    let stats = w.signals.iter().find(|(s, _)| **s == *f.signal).map_or(&unseen, |(_, v)| v);
                    current = Some((&f.signal, stats));
                    stats
                }
            };
            out.push(stats[f.stat] as f32);
        }
        self.fill(&mut out[start..]);
    }

    /// Replaces NaN features by the package's fill values, row by row.
    pub fn fill(&self, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(self.width) {
            for (v, f) in row.iter_mut().zip(&self.package.features) {
                if v.is_nan() {
                    *v = f.fill;
                }
            }
        }
    }

    /// Scores windows in one batch.
    pub fn score(&self, windows: &[ClosedWindow]) -> Result<Vec<f32>, ModelError> {
        self.score_rows(windows, &mut Vec::new())
    }

    /// Scores windows in one batch, leaving their input rows in `rows`
    /// (cleared first) for a caller that reports the feature values too.
    pub fn score_rows(&self, windows: &[ClosedWindow], rows: &mut Vec<f32>) -> Result<Vec<f32>, ModelError> {
        rows.clear();
        rows.reserve(windows.len() * self.width);
        for w in windows {
            self.assemble(w, rows);
        }
        self.run(rows, windows.len())
    }
}

// The daemon shares models across threads (sources, scoring, HTTP).
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
    shareable::<super::ModelHandle>();
};
