//! Every model kind data teams export (tests/reference/model_matrix.py)
//! loads through faultline's runtime and gives onnxruntime's numbers on the
//! same rows, NaN features and extremes included, to 1e-5.

use std::path::{Path, PathBuf};

use faultline::model::Model;

pub const KINDS: [&str; 11] = ["lr", "mlp", "rf", "gb", "hgb", "gbr", "xgb", "lgbm", "nn", "gte", "v5"];

/// `$FAULTLINE_MODEL_MATRIX`, or `target/model-matrix` if `.ci/run` made it.
fn matrix() -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_MODEL_MATRIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/model-matrix"));
    dir.join("rf/model.onnx").is_file().then_some(dir)
}

fn read_matrix(path: &Path) -> (Vec<f32>, usize, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let cols = lines.next().map_or(0, |h| h.split(',').count());
    let values: Vec<f32> = lines
        .flat_map(|l| l.split(',').map(|c| c.trim().parse::<f32>().unwrap_or_else(|e| panic!("{c:?}: {e}"))))
        .collect();
    let rows = values.len() / cols.max(1);
    (values, rows, cols)
}

#[test]
fn every_kind_matches_onnxruntime() {
    let Some(dir) = matrix() else {
        eprintln!("SKIPPED: no model matrix; .ci/run builds it with tests/reference/model_matrix.py");
        return;
    };
    for kind in KINDS {
        let pkg = dir.join(kind);
        let model = Model::load(&pkg).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let (rows, n, width) = read_matrix(&pkg.join("rows.csv"));
        assert_eq!(width, model.width(), "{kind}");
        let (want, _, want_cols) = read_matrix(&pkg.join("expected.csv"));
        let (got, cols) = model.run_raw(&rows, n).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(cols, want_cols, "{kind}: output columns");
        let mut worst = 0f32;
        let mut nan_rows = 0;
        for r in 0..n {
            let has_nan = rows[r * width..(r + 1) * width].iter().any(|v| v.is_nan());
            nan_rows += usize::from(has_nan);
            for c in 0..cols {
                let (a, b) = (got[r * cols + c], want[r * cols + c]);
                if a.is_nan() && b.is_nan() {
                    continue;
                }
                let err = (a - b).abs() / b.abs().max(1.0);
                worst = worst.max(err);
                assert!(
                    err <= 1e-5,
                    "{kind} row {r} col {c} (NaN in row: {has_nan}): faultline {a} vs onnxruntime {b}"
                );
            }
        }
        assert!(nan_rows >= 60, "{kind}: the rows must include NaN features");
        // One row at a time gives the same as the batch.
        for r in [0, 1, n / 2, n - 1] {
            let (one, _) =
                model.run_raw(&rows[r * width..(r + 1) * width], 1).unwrap_or_else(|e| panic!("{kind}: {e}"));
            for c in 0..cols {
                let (a, b) = (one[c], got[r * cols + c]);
                assert!(a == b || (a.is_nan() && b.is_nan()), "{kind} row {r}: single {a} vs batch {b}");
            }
        }
        eprintln!("{kind:5} {n} rows, worst relative difference {worst:e}");
    }
}

#[test]
fn the_label_output_and_a_regressor_are_not_probabilities() {
    let Some(dir) = matrix() else {
        eprintln!("SKIPPED: no model matrix");
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = |kind: &str, edit: &dyn Fn(String) -> String| {
        let to = tmp.path().join(kind);
        std::fs::create_dir_all(&to).expect("dir");
        std::fs::copy(dir.join(kind).join("model.onnx"), to.join("model.onnx")).expect("copy");
        let toml = std::fs::read_to_string(dir.join(kind).join("model.toml")).expect("toml");
        std::fs::write(to.join("model.toml"), edit(toml)).expect("write");
        match Model::load(&to) {
            Ok(_) => panic!("{kind} accepted"),
            Err(e) => faultline::error_chain(&e),
        }
    };
    let e = copy("rf", &|t| t.replace("name = \"output_probability\"", "name = \"output_label\""));
    assert!(e.contains("not numbers (is it the label output?"), "{e}");
    let e = copy("gbr", &|t| t.replace("kind = \"value\"", ""));
    assert!(e.contains("is not a probability"), "{e}");
}
