//! Inference time per model kind: one row, and a batch of 256 rows, next
//! to onnxruntime's single-thread figures measured by
//! tests/reference/model_matrix.py on the same model files and rows.
//!
//!     target/venv/bin/python tests/reference/model_matrix.py target/model-matrix
//!     cargo bench --bench inference
//!
//! Without the matrix (no Python venv) it says so and measures nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::model::Model;

const KINDS: [&str; 11] = ["lr", "mlp", "rf", "gb", "hgb", "gbr", "xgb", "lgbm", "nn", "gte", "v5"];

fn matrix() -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_MODEL_MATRIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/model-matrix"));
    dir.join("rf/model.onnx").is_file().then_some(dir)
}

fn rows(dir: &Path, width: usize) -> Vec<f32> {
    let text = std::fs::read_to_string(dir.join("rows.csv")).unwrap_or_default();
    let rows: Vec<f32> =
        text.lines().skip(1).flat_map(|l| l.split(',').map(|c| c.parse::<f32>().unwrap_or(f32::NAN))).collect();
    // 256 rows, cycling through the test rows (NaN rows and extremes included).
    rows.chunks_exact(width).cycle().take(256).flatten().copied().collect()
}

fn ort(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("ort.json")).unwrap_or_default();
    text.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or_else(|| "?".into(), |v| format!("{v:.1} µs"))
}

fn bench(c: &mut Criterion) {
    let Some(dir) = matrix() else {
        eprintln!("no model matrix: run tests/reference/model_matrix.py target/model-matrix first");
        return;
    };
    let mut g = c.benchmark_group("inference");
    g.sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    for kind in KINDS {
        let pkg = dir.join(kind);
        let Ok(model) = Model::load(&pkg) else {
            eprintln!("{kind}: does not load");
            continue;
        };
        let batch = rows(&pkg, model.width());
        eprintln!(
            "{kind}: onnxruntime {} per row, {} per batch of 256",
            ort(&pkg, "per_row_us"),
            ort(&pkg, "batch256_us")
        );
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{kind}/row"), |b| b.iter(|| black_box(model.run(&batch[..model.width()], 1))));
        g.throughput(Throughput::Elements(256));
        g.bench_function(format!("{kind}/batch256"), |b| b.iter(|| black_box(model.run(&batch, 256))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
