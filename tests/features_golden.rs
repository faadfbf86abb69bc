//! Golden test: `faultline features` on SKAB valve1/1.csv against the
//! independent numpy reference committed under tests/fixtures.

mod common;

use common::{faultline, read_csv, shared_data, stderr};

#[test]
fn skab_valve1_features_match_the_numpy_reference() {
    let Some(data) = shared_data() else {
        eprintln!("SKIPPED: ../shared/data is absent (set FAULTLINE_DATA to the data folder to run this test)");
        return;
    };
    let input = data.join("skab/valve1/1.csv");
    assert!(input.is_file(), "{} missing from the shared data", input.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("features.csv");
    let o = faultline(&[
        "features",
        "--input",
        input.to_str().expect("utf-8 path"),
        "--window",
        "1m",
        "--time-column",
        "datetime",
        "--delimiter",
        ";",
        "--device",
        "skab-valve1-1",
        "--label-column",
        "anomaly",
        "--output",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1145 rows, 21 windows, 0 late rows"), "{}", stderr(&o));

    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skab-valve1-1.features-1m.csv");
    let (got_header, got) = read_csv(&out);
    let (want_header, want) = read_csv(&fixture);
    assert_eq!(got_header, want_header);
    assert_eq!(got_header.len(), 3 + 9 * 13 + 1, "8 sensors + changepoint, 13 stats each, and the label");
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g[..3], w[..3], "device and window bounds");
        for ((name, a), b) in got_header.iter().zip(g).zip(w).skip(3) {
            let (a, b): (f64, f64) = (a.parse().expect("number"), b.parse().expect("number"));
            if a.is_nan() || b.is_nan() {
                assert!(a.is_nan() && b.is_nan(), "{} {name}: {a} vs {b}", g[1]);
                continue;
            }
            let rel = if a == b { 0.0 } else { (a - b).abs() / a.abs().max(b.abs()) };
            assert!(rel <= 1e-9, "{} {name}: faultline {a} vs reference {b} (relative {rel:e})", g[1]);
            worst = worst.max(rel);
        }
    }
    eprintln!("worst relative difference: {worst:e}");
}

/// The committed fixture is what the reference script computes: run when
/// `FAULTLINE_PYTHON` names a Python with numpy (`.ci/run` sets it up).
#[test]
fn the_reference_script_reproduces_the_fixture() {
    let (Some(python), Some(data)) = (std::env::var_os("FAULTLINE_PYTHON"), shared_data()) else {
        eprintln!("SKIPPED: set FAULTLINE_PYTHON to a Python with numpy (see .ci/run), and keep ../shared/data");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python)
        .arg(root.join("tests/reference/features_ref.py"))
        .arg(data.join("skab/valve1/1.csv"))
        .args(["--window-seconds", "60", "--time-column", "datetime", "--delimiter", ";"])
        .args(["--device", "skab-valve1-1", "--label-column", "anomaly"])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fixture = std::fs::read(root.join("tests/fixtures/skab-valve1-1.features-1m.csv")).expect("fixture");
    assert!(
        out.stdout == fixture,
        "tests/fixtures/skab-valve1-1.features-1m.csv is not what the reference script computes"
    );
}

/// The baseline's fixture (`tests/fixtures/baseline.json`) is what its
/// numpy reference computes, to 1e-12 relative: LAPACK's last bits may
/// differ between machines, so numbers are compared, not bytes.
#[test]
fn the_baseline_reference_script_reproduces_its_fixture() {
    let Some(python) = std::env::var_os("FAULTLINE_PYTHON") else {
        eprintln!("SKIPPED: set FAULTLINE_PYTHON to a Python with numpy and scikit-learn (see .ci/run)");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python)
        .arg(root.join("tests/reference/baseline_ref.py"))
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let now: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the script writes JSON");
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("tests/fixtures/baseline.json")).expect("fixture"))
            .expect("the fixture is JSON");
    fn same(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0), "{at}: {x} now, {y} in the fixture");
            }
            (V::Array(x), V::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    same(x, y, &format!("{at}[{i}]"));
                }
            }
            (V::Object(x), V::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
                for (k, v) in x {
                    same(v, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    same(&now, &fixture, "baseline.json");
}
