//! Model packages: loading, what is refused and why, filling, scoring.

mod common;

use std::sync::Arc;

use common::onnx::{logistic, model, node, package, value};
use common::{faultline, read_csv, stderr};
use faultline::model::Model;
use faultline::window::{ClosedWindow, Trigger};

const TOML: &str = r#"
name = "tiny"
version = "7"
[input]
name = "X"
features = ["a.mean", "b.max"]
[output]
name = "Y"
[alert]
threshold = 0.8
"#;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// tract's vectorised sigmoid is within an ulp or two of the textbook one.
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6
}

fn load_err(dir: &std::path::Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("{} was accepted", dir.display()),
        Err(e) => faultline::error_chain(&e),
    }
}

#[test]
fn a_valid_package_scores_windows_with_its_fills() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("tiny");
    package(
        &dir,
        &logistic(&[0.5, -1.0], 0.25, Some(2)),
        &TOML.replace("[output]", "fill = { \"b.max\" = 2.0 }\n[output]"),
    );
    let m = Model::load(&dir).unwrap_or_else(|e| panic!("{}", faultline::error_chain(&e)));
    assert_eq!((m.package.name.as_str(), m.package.version.as_str(), m.width()), ("tiny", "7", 2));
    assert_eq!(m.output_columns(), (1, 0));
    let got = m.run(&[1.0, 2.0, -3.0, 0.5], 2).unwrap();
    assert!(close(got[0], sigmoid(0.5 - 2.0 + 0.25)) && close(got[1], sigmoid(-1.5 - 0.5 + 0.25)), "{got:?}");

    let stats = |mean: f64, max: f64| {
        let mut s = [f64::NAN; 13];
        s[0] = 3.0;
        s[1] = mean;
        s[4] = max;
        s
    };
    let window = |signals: Vec<(&str, [f64; 13])>| ClosedWindow {
        device_id: Arc::from("pump-1"),
        start_ms: 0,
        end_ms: 60_000,
        update: false,
        trigger: Trigger::Watermark,
        signals: signals.into_iter().map(|(n, s)| (Arc::from(n), s)).collect(),
    };
    let scores = m
        .score(&[window(vec![("a", stats(1.0, 9.0)), ("b", stats(0.0, 4.0))]), window(vec![("a", stats(1.0, 9.0))])])
        .unwrap();
    assert!(close(scores[0], sigmoid(0.5 - 4.0 + 0.25)), "{scores:?}");
    // b never seen: b.max is NaN and takes the package's fill, 2.0.
    assert!(close(scores[1], sigmoid(0.5 - 2.0 + 0.25)), "{scores:?}");
}

#[test]
fn a_missing_feature_without_fill_scores_nan_not_a_made_up_number() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("tiny");
    package(&dir, &logistic(&[0.5, -1.0], 0.25, Some(2)), TOML);
    let m = Model::load(&dir).unwrap();
    let got = m.run(&[f32::NAN, 1.0, 1.0, 1.0], 2).unwrap();
    assert!(got[0].is_nan(), "tract alone gives {}", got[0]);
    assert!(close(got[1], sigmoid(0.5 - 1.0 + 0.25)), "{got:?}");
}

#[test]
fn bad_packages_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let case = |name: &str, onnx: Vec<u8>, toml: &str| {
        let dir = tmp.path().join(name);
        package(&dir, &onnx, toml);
        load_err(&dir)
    };
    let e = case("width", logistic(&[0.5, -1.0], 0.0, Some(2)), &TOML.replace(r#""b.max"]"#, r#""b.max", "c.std"]"#));
    assert!(e.contains("has 2 columns but model.toml lists 3 features"), "{e}");
    // Width not declared: tract finds the mismatch in the weights.
    let e = case("width2", logistic(&[0.5, -1.0], 0.0, None), &TOML.replace(r#""b.max"]"#, r#""b.max", "c.std"]"#));
    assert!(e.contains("tract cannot run it with input [batch, 3]"), "{e}");
    let odd = model(
        vec![node("Relu", "r", &["X"], &["h"]), node("FluxCapacitor", "mystery_node", &["h"], &["Y"])],
        vec![value("X", &[None, Some(2)])],
        vec![value("Y", &[None, Some(1)])],
        vec![],
    );
    let e = case("op", odd, TOML);
    assert!(e.contains("mystery_node") && e.contains("FluxCapacitor"), "{e}");
    let plus = model(
        vec![node("Add", "plus", &["X", "five"], &["Y"])],
        vec![value("X", &[None, Some(2)])],
        vec![value("Y", &[None, Some(2)])],
        vec![common::onnx::floats("five", &[1], &[5.0])],
    );
    let e = case("prob", plus.clone(), TOML);
    assert!(e.contains("column 1 is not a probability: a test inference gave 5"), "{e}");
    // The same model declared a value is fine.
    let ok = tmp.path().join("value");
    package(&ok, &plus, &TOML.replace("name = \"Y\"", "name = \"Y\"\nkind = \"value\""));
    assert!(Model::load(&ok).is_ok());
    let e =
        case("out", logistic(&[0.5, -1.0], 0.0, Some(2)), &TOML.replace("name = \"Y\"", "name = \"probabilities\""));
    assert!(e.contains("output.name \"probabilities\" is not an output of model.onnx (outputs: \"Y\")"), "{e}");
    let e = case("in", logistic(&[0.5, -1.0], 0.0, Some(2)), &TOML.replace("name = \"X\"", "name = \"features\""));
    assert!(e.contains("input.name \"features\" is not an input of model.onnx (inputs: \"X\")"), "{e}");
    let e = case("feat", logistic(&[0.5, -1.0], 0.0, Some(2)), &TOML.replace("\"b.max\"", "\"b.maximum\""));
    assert!(e.contains("input.features[1]: \"b.maximum\" is not <signal>.<stat>"), "{e}");
    let e = case(
        "idx",
        logistic(&[0.5, -1.0], 0.0, Some(2)),
        &TOML.replace("name = \"Y\"", "name = \"Y\"\npositive_index = 1"),
    );
    assert!(e.contains("output.positive_index 1 is beyond the output's 1 columns"), "{e}");
    let dir = tmp.path().join("garbage");
    package(&dir, b"this is not protobuf", TOML);
    assert!(load_err(&dir).contains("not a readable ONNX model"));
}

#[test]
fn check_and_score_on_the_command_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("tiny");
    package(&dir, &logistic(&[0.5, -1.0], 0.25, Some(2)), TOML);
    let d = dir.to_str().expect("path");
    let o = faultline(&["model", "check", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("package    tiny version 7"), "{out}");
    assert!(out.contains("input      \"X\" float32 [batch, 2]"), "{out}");
    let test_line = out.lines().find(|l| l.starts_with("test ")).unwrap_or_default();
    let test_score: f32 = test_line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f32::NAN);
    assert!(close(test_score, sigmoid(0.25)) && test_line.ends_with("(from the fill values, 0 elsewhere)"), "{out}");

    // Features from a CSV, scored: the same numbers as a window would give.
    let csv = tmp.path().join("run.csv");
    std::fs::write(&csv, "ts,a,b\n2026-11-21T10:00:00Z,1,3\n2026-11-21T10:00:30Z,3,5\n2026-11-21T10:01:10Z,-1,\n")
        .expect("csv");
    let feats = tmp.path().join("f.csv");
    let scored = tmp.path().join("s.csv");
    let (c, f, s) = (csv.to_str().expect("p"), feats.to_str().expect("p"), scored.to_str().expect("p"));
    assert!(faultline(&["features", "--input", c, "--window", "1m", "--output", f]).status.success());
    let o = faultline(&["model", "score", d, "--input", f, "--output", s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (h, rows) = read_csv(&scored);
    assert_eq!(h, ["device_id", "window_start", "window_end", "probability"]);
    assert_eq!(rows.len(), 2);
    assert!(close(rows[0][3].parse::<f32>().unwrap_or(f32::NAN), sigmoid(0.5 * 2.0 - 5.0 + 0.25)), "{rows:?}");
    assert_eq!(rows[1][3], "NaN", "b unseen in the second window and no fill");

    let o = faultline(&["model", "check", tmp.path().join("nope").to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("model.toml: No such file or directory"), "{}", stderr(&o));
}

#[test]
fn check_config_refuses_a_config_whose_model_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("bad");
    package(&dir, &logistic(&[0.5, -1.0], 0.0, Some(2)), &TOML.replace(r#""b.max"]"#, r#""b.max", "c.std"]"#));
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[model]\npath = {:?}\n[[source]]\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopics = [\"t\"]\n", dir),
    )
    .expect("cfg");
    let o = faultline(&["check-config", "--config", cfg.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("model.path: the package is refused:") && stderr(&o).contains("lists 3 features"),
        "{}",
        stderr(&o)
    );
}
