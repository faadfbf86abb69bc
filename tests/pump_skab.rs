//! The shipped model, end to end without a broker: each held-out SKAB run
//! replayed as JSON readings through decode → windows → model → alert
//! policy gives exactly the alerts models/README.md reports (the training
//! script's own replay, written to models/pump-skab/evaluation/heldout-alerts.csv).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{shared_data, SKAB_SIGNALS};
use faultline::alerts::Status;
use faultline::clean::Cleaning;
use faultline::config::AlertsConfig;
use faultline::decode::DecodeLimits;
use faultline::model::Model;
use faultline::pipeline::Pipeline;
use faultline::scoring::{policy_config, Scorer};
use faultline::sources::file::{CsvOptions, CsvReader, DeviceFrom};
use faultline::time::format_rfc3339;
use faultline::window::{Engine, StateLimits, WindowSpec};

/// The held-out runs in the training script's order.
fn heldout(data: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for folder in ["valve2", "other"] {
        let mut files: Vec<_> = std::fs::read_dir(data.join("skab").join(folder))
            .expect("held-out folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort_by_key(|p| (p.to_string_lossy().len(), p.clone()));
        out.extend(files);
    }
    out
}

#[test]
fn heldout_runs_give_the_reported_alerts() {
    let Some(data) = shared_data() else {
        eprintln!("SKIPPED: ../shared/data is absent (set FAULTLINE_DATA to the data folder to run this test)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pump-skab");
    let model = Arc::new(Model::load(&root).unwrap_or_else(|e| panic!("{}", faultline::error_chain(&e))));
    let window = model.package.training_window().expect("the package states its window");
    // The daemon's defaults for everything but the window size, which must be the model's.
    let spec = WindowSpec {
        size_ms: window.as_millis() as i64,
        max_out_of_orderness_ms: 10_000,
        allowed_lateness_ms: 60_000,
        idle_timeout_ms: 600_000,
    };
    let policy = policy_config(&AlertsConfig::default(), model.package.threshold).expect("threshold");
    let mut scorer = Scorer::new(model, policy);
    let mut got: Vec<[String; 4]> = Vec::new();
    let mut windows = 0;
    for path in heldout(&data) {
        let folder =
            path.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let device = format!("skab-{folder}-{stem}");
        let opts = CsvOptions {
            time_column: Some("datetime".into()),
            device: DeviceFrom::Fixed(device.clone()),
            delimiter: b';',
            signals: Some(SKAB_SIGNALS.iter().map(|s| s.to_string()).collect()),
            label_column: None,
        };
        let mut reader = CsvReader::open(&path, &opts).expect("held-out run");
        let names = reader.signals().to_vec();
        let mut pipeline =
            Pipeline::new(DecodeLimits::default(), Engine::new(spec, StateLimits::default(), Cleaning::default()), 100);
        let src = pipeline.source("replay");
        let mut closed = Vec::new();
        let mut now = 0;
        let mut handle = |closed: &mut Vec<_>, now: i64, scorer: &mut Scorer| {
            let batch = scorer.process(closed, now).expect("scoring");
            windows += batch.results.len();
            for (i, a) in batch.alerts {
                let status = match a.status {
                    Status::Open => "open",
                    Status::Cleared => "cleared",
                    Status::Acknowledged => "acknowledged",
                };
                got.push([
                    a.device_id,
                    format_rfc3339(a.window_start_ms),
                    status.into(),
                    format_rfc3339(batch.results[i].end_ms),
                ]);
            }
            closed.clear();
        };
        while let Some(row) = reader.next_row().expect("row") {
            let values: serde_json::Map<String, serde_json::Value> =
                row.values.iter().map(|&(i, v)| (names[i].clone(), serde_json::json!(v))).collect();
            let payload =
                serde_json::json!({"device_id": row.device_id, "ts": row.ts_ms, "values": values}).to_string();
            now = row.ts_ms + 1000;
            assert_eq!(pipeline.ingest(src, payload.as_bytes(), None, now, &mut closed), 1, "{payload}");
            if !closed.is_empty() {
                handle(&mut closed, now, &mut scorer);
            }
        }
        pipeline.engine_mut().flush(&mut closed);
        handle(&mut closed, now, &mut scorer);
    }
    let expected = std::fs::read_to_string(root.join("evaluation/heldout-alerts.csv")).expect("expected alerts");
    let want: Vec<[String; 4]> = expected
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            [c[0].into(), c[1].into(), c[2].into(), c[3].into()]
        })
        .collect();
    assert!(windows > 150, "{windows} windows scored");
    assert!(!want.is_empty());
    assert_eq!(got, want, "alert transitions on the held-out runs");
}
