//! The command line as a user meets it: exit codes, messages, files.

mod common;

use std::fs;

use common::{faultline, read_csv, stderr};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(
        &dir,
        "good.toml",
        "[[source]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopics = [\"sensors/+/telemetry\"]\n",
    );
    let o = faultline(&["check-config", "--config", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let bad =
        write(&dir, "bad.toml", "[window]\nsize = \"5 parsecs\"\ncolour = \"red\"\n[[source]]\ntype = \"mqtt\"\n");
    let o = faultline(&["check-config", "--config", &bad]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(err.contains("window.size: invalid duration \"5 parsecs\""), "{err}");
    assert!(err.contains("window.colour: unknown field"), "{err}");
    assert!(err.contains("source[0]: missing field `url`"), "{err}");

    let o = faultline(&["check-config"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
}

#[test]
fn demo_refuses_a_bad_listen_address() {
    let o = faultline(&["demo", "--listen", "nowhere"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("http.listen \"nowhere\""), "{}", stderr(&o));
}

#[test]
fn run_and_replay_say_what_is_wrong() {
    let o = faultline(&["run", "--config", "/nonexistent/faultline.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot read /nonexistent/faultline.toml"), "{}", stderr(&o));
    // The API is not served beyond loopback without authentication (SPEC 7).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    let text = format!(
        "[state]\ndir = \"{}\"\n[http]\nlisten = \"0.0.0.0:0\"\n[[source]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\ntopics = [\"t\"]\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    let o = faultline(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a configuration error: {}", stderr(&o));
    assert!(stderr(&o).contains("not a loopback address") && stderr(&o).contains("[http.auth]"), "{}", stderr(&o));
    // No target.
    let o = faultline(&["replay", "--input", "x.csv", "--topic", "t"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = faultline(&["replay", "--input", "x.csv", "--topic", "t", "--mqtt", "tcp://h:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("mqtt://"), "{}", stderr(&o));
    let o =
        faultline(&["replay", "--input", "x.csv", "--topic", "t", "--mqtt", "mqtt://127.0.0.1:1", "--speed", "fast"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A missing file, and a broker nobody runs.
    let o = faultline(&["replay", "--input", "/nonexistent.csv", "--topic", "t", "--mqtt", "mqtt://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.csv"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "ts,v\n2026-01-01T00:00:00Z,1\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let o = faultline(&["replay", "--input", csv.to_str().unwrap(), "--topic", "t", "--mqtt", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
}

/// Two devices in one file, out of order, with a label and a gap.
const MIXED: &str = "\
ts,machine,temp,vib,state,label
2026-11-21T10:00:05Z,m1,20,0.5,on,0
2026-11-21T10:00:10Z,m2,30,,on,0
2026-11-21T10:00:50Z,m1,22,0.7,on,1
2026-11-21T10:01:10Z,m1,24,NaN,on,0
2026-11-21T10:00:55Z,m1,200,0.9,on,0
2026-11-21T10:03:00Z,m1,26,1.0,off,0
2026-11-21T10:00:30Z,m1,21,0.6,on,0
";

#[test]
fn features_replaces_updated_windows_and_reports_late_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write(&dir, "mixed.csv", MIXED);
    let out = dir.path().join("f.csv");
    let run = |extra: &[&str]| {
        let mut args = vec!["features", "--input", &input, "--window", "1m", "--device-column", "machine"];
        args.extend_from_slice(&["--label-column", "label", "--output", out.to_str().expect("path")]);
        args.extend_from_slice(extra);
        faultline(&args)
    };

    // Out-of-orderness 0, lateness 0: 10:00:55 arrives after 10:01:10 moved
    // the watermark past 10:01 -> late; so is 10:00:30 (after 10:03:00).
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("7 rows, 4 windows, 2 late rows left out, 1 non-finite cells"), "{}", stderr(&o));
    let (h, rows) = read_csv(&out);
    // Signals default to the numeric columns (state is text; machine and label are taken).
    assert_eq!(&h[3..5], ["temp.count", "temp.mean"]);
    assert_eq!(h[3 + 13], "vib.count");
    assert_eq!(h.last().map(String::as_str), Some("label"));
    assert_eq!(h.len(), 3 + 2 * 13 + 1);
    let keys: Vec<(&str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        keys,
        [
            ("m1", "2026-11-21T10:00:00Z"),
            ("m1", "2026-11-21T10:01:00Z"),
            ("m1", "2026-11-21T10:03:00Z"),
            ("m2", "2026-11-21T10:00:00Z")
        ]
    );
    assert_eq!(rows[0][3], "2", "temp.count of m1's first window without the late rows");
    assert_eq!(rows[0].last().map(String::as_str), Some("1"), "label = max over the window");
    assert_eq!(rows[1][3 + 13], "0", "vib was NaN: count 0");
    assert_eq!(rows[1][3 + 14], "NaN", "vib.mean missing");
    assert_eq!(rows[3][3 + 13], "0", "m2 had no vib value");

    // With three minutes of allowed lateness both late rows update the window
    // they belong to, and the output holds its final version only.
    let o = run(&["--allowed-lateness", "3m"]);
    assert!(stderr(&o).contains("7 rows, 4 windows, 0 late rows"), "{}", stderr(&o));
    let (_, rows) = read_csv(&out);
    assert_eq!(rows[0][3], "4");
    assert_eq!(rows[0][3 + 4], "200", "temp.max includes the late 200");

    // A config's cleaning rules apply offline exactly as in the daemon.
    let cfg = write(
        &dir,
        "c.toml",
        "[window]\nsize = \"1m\"\nmax_out_of_orderness = \"0s\"\nallowed_lateness = \"3m\"\n\
         [cleaning.signals.temp]\nmax = 100.0\n\
         [[source]]\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopics = [\"t\"]\n",
    );
    let mut args = vec!["features", "--input", &input, "--config", &cfg, "--device-column", "machine"];
    args.extend_from_slice(&["--output", out.to_str().expect("path")]);
    let o = faultline(&args);
    assert!(stderr(&o).contains("1 values outside cleaning rules"), "{}", stderr(&o));
    let (_, rows) = read_csv(&out);
    assert_eq!((rows[0][3].as_str(), rows[0][3 + 4].as_str()), ("3", "22"), "200 dropped by the rule");
}

#[test]
fn features_signal_order_follows_the_signals_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write(&dir, "mixed.csv", MIXED);
    let out = dir.path().join("f.csv");
    let out_s = out.to_str().expect("path");
    let o = faultline(&["features", "--input", &input, "--window", "5m", "--signals", "vib,temp", "--output", out_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (h, rows) = read_csv(&out);
    assert_eq!((h[3].as_str(), h[16].as_str()), ("vib.count", "temp.count"));
    assert_eq!(h.len(), 3 + 26);
    // No device option: the file stem names the device.
    assert_eq!(rows[0][0], "mixed");
}

#[test]
fn features_refuses_bad_input_with_the_line_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("f.csv");
    let out_s = out.to_str().expect("path");
    let bad_time = write(&dir, "t.csv", "ts,x\n2026-11-21T10:00:00Z,1\nyesterday,2\n");
    let o = faultline(&["features", "--input", &bad_time, "--window", "1m", "--output", out_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 3: column \"ts\": \"yesterday\" is not a time"), "{}", stderr(&o));
    assert!(!out.exists() && !dir.path().join("f.partial").exists());

    let bad_num = write(&dir, "n.csv", "ts,x\n2026-11-21T10:00:00Z,1\n2026-11-21T10:00:01Z,lots\n");
    let o = faultline(&["features", "--input", &bad_num, "--window", "1m", "--signals", "x", "--output", out_s]);
    assert!(stderr(&o).contains("line 3: column \"x\": \"lots\" is not a number"), "{}", stderr(&o));

    let ragged = write(&dir, "r.csv", "ts,x\n2026-11-21T10:00:00Z,1,9\n");
    let o = faultline(&["features", "--input", &ragged, "--window", "1m", "--output", out_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));

    let o = faultline(&["features", "--input", &bad_num, "--output", out_s]);
    assert_eq!(o.status.code(), Some(2), "no window size");
    assert!(stderr(&o).contains("--window is required"), "{}", stderr(&o));

    let o = faultline(&["features", "--input", "/nonexistent.csv", "--window", "1m", "--output", out_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.csv"), "{}", stderr(&o));
}

/// `faultline evaluate` on SKAB: the per-device baseline as tuned on
/// `valve1/` (README "Baselines"), and the held-out folders reported apart.
#[test]
fn evaluate_scores_the_baseline_on_skab_and_refuses_bad_options() {
    let out = faultline(&["evaluate", "--data", "/nonexistent", "--protocol", "nab"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("only \"skab\""), "{}", stderr(&out));
    let out = faultline(&["evaluate", "--data", "/nonexistent", "--components", "9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = faultline(&["evaluate", "--data", "/nonexistent", "--adapt-rate", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--adapt-rate"), "{}", stderr(&out));
    let out = faultline(&["evaluate", "--data", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/valve1"), "{}", stderr(&out));
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data is not here");
        return;
    };
    let skab = data.join("skab");
    let out = faultline(&["evaluate", "--data", &skab.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = |name: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(&format!("| {name} ("))).unwrap_or_else(|| panic!("{text}"));
        line.split('|').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
    };
    let num = |cells: &[String], i: usize| cells[i].parse::<f64>().unwrap_or_else(|_| panic!("{cells:?}"));
    // valve1/ is where the defaults were chosen: 16 files, F1 0.824, FAR 10.8 %.
    let v1 = row("valve1/");
    assert_eq!(v1[0], "valve1/ (16)");
    assert_eq!((num(&v1, 2), num(&v1, 3)), (0.824, 10.8), "{text}");
    assert_eq!(v1[5], "16/16");
    for folder in ["valve2/", "other/", "all"] {
        let r = row(folder);
        assert!(num(&r, 2) > 0.5, "{folder}: {text}");
    }
    // The goal over all 34 files: F1 at least 0.78 with FAR at most 15 %.
    let all = row("all");
    assert_eq!(all[0], "all (34)", "{text}");
    assert!(num(&all, 2) >= 0.78 && num(&all, 3) <= 15.0, "{text}");
}
