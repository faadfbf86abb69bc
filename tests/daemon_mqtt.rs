//! `faultline run` against a real mosquitto, fed by `faultline replay`:
//! windows and alerts, crashes (kill -9 at random points), a broker
//! outage, graceful shutdown. The expected windows and alerts come from
//! the library run over the same file without any interruption.

mod common;

use std::path::Path;
use std::time::Duration;

use common::brokers::{replay, Daemon, Mosquitto};
use common::skab::{
    check_against_expected, config_text, replay_args, sample, wait_quiet, write_config, Jitter, Run, ROWS,
};
use faultline::state::Store;

fn mqtt_source(url: &str) -> String {
    format!(
        "[[source]]\ntype = \"mqtt\"\nurl = \"{url}\"\ntopics = [\"plant/+/pumps/+\"]\n\
         device_from_topic = \"plant/+/pumps/{{device_id}}\"\nclient_id = \"faultline-test\"\n"
    )
}

/// mosquitto and a daemon reading from it.
fn start(broker: &Mosquitto) -> Run {
    Run::start(&mqtt_source(&broker.url()), "", &["MQTT connected"])
}

fn mqtt_replay<'a>(url: &'a str, speed: &'a str, sample: &'a str) -> Vec<&'a str> {
    replay_args(["--mqtt", url], "plant/hall-a/pumps/{device_id}", speed, sample)
}

#[test]
fn readings_over_mqtt_become_windows_and_alerts() {
    let broker = Mosquitto::start();
    let Run { dir: _dir, state, text, mut d } = start(&broker);
    let sample = sample();
    replay(&mqtt_replay(&broker.url(), "max", sample.to_str().unwrap()));
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    assert!(d.terminate().success(), "exit 0 on SIGTERM:\n{}", d.log_text());
    check_against_expected(&state, &text);
}

#[test]
fn kill_9_and_sigterm_at_random_points_lose_and_double_nothing() {
    let broker = Mosquitto::start();
    let Run { dir: _dir, state, text, mut d } = start(&broker);
    // About 4 s of replay (1145 s of data at 300x) with kills in between.
    let url = broker.url();
    let sample = sample();
    let publisher = std::thread::spawn(move || replay(&mqtt_replay(&url, "300", sample.to_str().unwrap())));
    let mut jitter = Jitter::new();
    let seed = jitter.seed;
    for i in 0..4 {
        let wait = jitter.ms(300, 900);
        std::thread::sleep(Duration::from_millis(wait));
        if i == 2 {
            // A clean stop mid-stream in between: same result, exit 0.
            assert!(d.terminate().success(), "{}", d.log_text());
            eprintln!("SIGTERM {i} after {wait} ms (seed {seed})");
        } else {
            d.kill9();
            eprintln!("crash {i} after {wait} ms (seed {seed})");
        }
        std::thread::sleep(Duration::from_millis(jitter.ms(0, 300)));
        d.restart();
    }
    publisher.join().expect("replay finished");
    wait_quiet(&d);
    assert!(d.terminate().success(), "{}", d.log_text());
    let log = d.log_text();
    check_against_expected(&state, &text);
    eprintln!("{}", log.lines().filter(|l| l.contains("restored")).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_broker_outage_mid_stream_loses_nothing() {
    let mut broker = Mosquitto::start();
    let Run { dir, state, text, mut d } = start(&broker);
    // Half the file, the broker goes away and comes back, the rest.
    let half = dir.path().join("first.csv");
    let rest = dir.path().join("second.csv");
    let text_csv = std::fs::read_to_string(sample()).unwrap();
    let mut lines = text_csv.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let (a, b) = body.split_at(body.len() / 2);
    std::fs::write(&half, format!("{header}\n{}\n", a.join("\n"))).unwrap();
    std::fs::write(&rest, format!("{header}\n{}\n", b.join("\n"))).unwrap();
    replay(&mqtt_replay(&broker.url(), "max", half.to_str().unwrap()));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start_again();
    d.wait_for_log("connection lost", Duration::from_secs(10));
    let connected = || d.log.lock().unwrap().iter().filter(|l| l.contains("MQTT connected")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while connected() < 2 {
        assert!(std::time::Instant::now() < deadline, "no reconnect:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log_text().contains("session_present=true"), "the session survived the broker restart");
    replay(&mqtt_replay(&broker.url(), "max", rest.to_str().unwrap()));
    wait_quiet(&d);
    assert!(d.terminate().success());
    check_against_expected(&state, &text);
}

#[test]
fn a_flood_of_queued_messages_is_acknowledged_to_the_last() {
    // The session exists, the daemon is down, 10,000 messages wait at the
    // broker; back up, the daemon takes them as fast as the broker sends
    // (no in-flight limit), and with checkpoints 3 s apart one acknowledges
    // more at once than the client's request channel holds (1,024).
    let broker = Mosquitto::start();
    let slow = |t: String| {
        let slowed = t.replace("checkpoint_interval = \"200ms\"", "checkpoint_interval = \"3s\"");
        assert_ne!(slowed, t, "the configuration's checkpoint_interval was not 200ms");
        slowed
    };
    let Run { dir: _dir, mut d, .. } = Run::start_with(&mqtt_source(&broker.url()), "", &["MQTT connected"], slow);
    assert!(d.terminate().success(), "{}", d.log_text());
    let url = broker.url();
    replay(&["--devices", "50", "--readings", "10000", "--mqtt", &url, "--topic", "plant/hall-a/pumps/{device_id}"]);
    d.restart();
    d.wait_for_payloads(10_000, Duration::from_secs(120));
    let most = d.log.lock().unwrap().iter().filter_map(|l| common::brokers::field(l, "owed")).max().unwrap_or(0);
    assert!(most > 1024, "one checkpoint acknowledged {most} at most:\n{}", d.log_text());
    assert!(d.terminate().success(), "{}", d.log_text());
    // A message the broker holds no acknowledgement for comes back with the
    // session, and the daemon counts it as a redelivery it skips.
    d.restart();
    d.wait_for_log("session_present=true", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    d.wait_for_log("checkpoint in", Duration::from_secs(10));
    assert_eq!(d.last_field("skipped"), Some(0), "redelivered after a clean stop:\n{}", d.log_text());
    assert_eq!(d.last_field("payloads"), Some(0));
    assert!(d.terminate().success());
}

#[test]
fn bad_payloads_do_not_stop_the_source() {
    let broker = Mosquitto::start();
    let Run { dir, state, mut d, .. } = start(&broker);
    let jsonl = dir.path().join("mixed.jsonl");
    // Good, bad time, a batch of two, 2 MiB (past ingest.max_payload_bytes), good.
    let big = format!("{{\"ts\": 3500, \"values\": {{\"Temperature\": 1}}, \"pad\": \"{}\"}}\n", "x".repeat(2 << 20));
    let text_jsonl = [
        "{\"ts\": 1000, \"values\": {\"Temperature\": 70.5}}\n",
        "{\"ts\": \"yesterday\", \"values\": {\"Temperature\": 1}}\n",
        "[{\"ts\": 2000, \"values\": {\"Temperature\": 71}}, {\"ts\": 3000, \"Temperature\": 72}]\n",
        &big,
        "{\"ts\": 4000, \"values\": {\"Temperature\": 73}}\n",
    ]
    .concat();
    std::fs::write(&jsonl, text_jsonl).unwrap();
    replay(&["--input", jsonl.to_str().unwrap(), "--mqtt", &broker.url(), "--topic", "plant/x/pumps/p9"]);
    d.wait_for_payloads(5, Duration::from_secs(20));
    d.wait_for_log("reading refused", Duration::from_secs(5));
    assert!(d.terminate().success());
    let store = Store::open(&state).unwrap();
    let devices: Vec<_> = store.restore().unwrap().devices().map(|d| d.unwrap().0).collect();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, "p9");
    let n: u64 = devices[0].open.iter().map(|w| w.stats.iter().map(|s| s.count()).max().unwrap_or(0)).sum();
    assert_eq!(n, 4, "the four good readings, the two bad ones refused");
    let q = store.restore().unwrap().quarantine;
    let reasons: Vec<_> = q.iter().map(|(_, q)| q.reason).collect();
    use faultline::reading::Reason;
    assert_eq!(reasons, vec![Reason::BadTime, Reason::TooLarge], "kept across the restart");
    assert!(q[0].1.excerpt.contains("yesterday"), "{q:?}");
    assert!(q[1].1.excerpt.len() <= 512, "only an excerpt of the big one");
}

/// Runs a command, panicking with its output when it fails.
fn sh(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("command runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| sh(std::process::Command::new("openssl").args(args).current_dir(dir));
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"]
            .iter()
            .chain(&["-days", "2", "-subj", "/CN=faultline-test-ca"])
            .copied()
            .collect::<Vec<_>>(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={who}"),
        ]);
        openssl(
            &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
                .iter()
                .chain(&["-out", pem.as_str(), "-days", "2", "-extfile", ext.as_str()])
                .copied()
                .collect::<Vec<_>>(),
        );
    }
    use std::os::unix::fs::PermissionsExt;
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn tls_with_a_client_certificate_and_a_password() {
    let tls_port = common::brokers::free_port();
    let broker = Mosquitto::start_with(|dir| {
        certificates(dir);
        sh(std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(dir.join("passwd"))
            .args(["plant", "s3cret"]));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("passwd"), std::fs::Permissions::from_mode(0o644)).unwrap();
        format!(
            "listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n\
             cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
            d = dir.display()
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = broker.dir();
    let tls = format!(
        "username = \"plant\"\npassword = \"s3cret\"\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        d.join("ca.pem").display(),
        d.join("client.pem").display(),
        d.join("client.key").display()
    );
    let text = config_text(&state, &mqtt_source(&format!("mqtts://127.0.0.1:{tls_port}")), "")
        .replace("client_id = \"faultline-test\"\n", &format!("client_id = \"faultline-test\"\n{tls}"));
    let mut daemon = Daemon::start(&write_config(dir.path(), &text));
    daemon.wait_for_log("MQTT connected", Duration::from_secs(20));
    // Published on the plain listener, received over TLS.
    let sample = sample();
    replay(&mqtt_replay(&broker.url(), "max", sample.to_str().unwrap()));
    daemon.wait_for_payloads(ROWS, Duration::from_secs(60));
    assert!(daemon.terminate().success());

    // A wrong password: refused, retried with backoff, the daemon stays up.
    let bad = text
        .replace("s3cret", "wrong")
        .replace(&state.display().to_string(), &dir.path().join("s2").display().to_string());
    let mut daemon = Daemon::start(&write_config(dir.path(), &bad));
    let line = daemon.wait_for_log("MQTT connection lost", Duration::from_secs(20));
    assert!(line.contains("refused") || line.contains("NotAuthorized") || line.contains("BadUserName"), "{line}");
    daemon.wait_for_log("retrying in", Duration::from_secs(5));
    assert!(daemon.terminate().success(), "SIGTERM while disconnected still exits 0:\n{}", daemon.log_text());
}

#[test]
fn the_api_lists_devices_windows_and_alerts_and_acknowledges() {
    use common::brokers::http;
    let broker = Mosquitto::start();
    let Run { dir: _dir, mut d, .. } = start(&broker);
    let port = d.http_port();
    assert_eq!(http(port, "GET", "/healthz", None).0, 200);

    let (status, body) = http(port, "GET", "/readyz", None);
    assert_eq!(status, 200, "{body}");
    let sample = sample();
    replay(&mqtt_replay(&broker.url(), "max", sample.to_str().unwrap()));
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));

    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_else(|e| panic!("{e}: {s}"));
    let (status, body) = http(port, "GET", "/api/v1/devices", None);
    assert_eq!(status, 200, "{body}");
    let devices = json(&body);
    assert_eq!(devices["total"], 1);
    assert_eq!(devices["items"][0]["device_id"], "pump-1");
    let (status, body) = http(port, "GET", "/api/v1/devices/pump-1/windows?limit=3", None);
    assert_eq!(status, 200, "{body}");
    let w = json(&body);
    assert_eq!(w["items"].as_array().map(Vec::len), Some(3));
    assert!(
        w["items"][0]["window_start"].as_str().unwrap() > w["items"][1]["window_start"].as_str().unwrap(),
        "newest first"
    );

    let (status, body) = http(port, "GET", "/api/v1/alerts?status=open", None);
    assert_eq!(status, 200, "{body}");
    let open = json(&body);
    let id = open["items"][0]["alert_id"].as_str().expect("an open alert").to_owned();
    let path = format!("/api/v1/alerts/{id}/ack");
    let (status, body) =
        http(port, "POST", &path, Some(r#"{"by": "maintenance <b>Ana</b>", "comment": "checking the valve"}"#));
    assert_eq!(status, 200, "{body}");
    let acked = json(&body);
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "maintenance <b>Ana</b>");
    // The record keeps the window's feature values (the policy holds none:
    // they come from the alert's latest record).
    let features = open["items"][0]["features"].clone();
    assert!(features.as_object().is_some_and(|f| !f.is_empty()), "{open}");
    assert_eq!(acked["features"], features);
    // Once checkpointed the list shows it too.
    std::thread::sleep(Duration::from_millis(600));
    let (_, body) = http(port, "GET", "/api/v1/alerts?status=acknowledged", None);
    assert_eq!(json(&body)["items"][0]["alert_id"], id.as_str(), "{body}");

    // A restart shows the same overview (from the restored alert state, not
    // the window history): the latest window, its probability, the alert.
    let (_, before) = http(port, "GET", "/api/v1/devices", None);
    assert!(d.terminate().success(), "{}", d.log_text());
    d.restart();
    let port = d.http_port();
    let (status, after) = http(port, "GET", "/api/v1/devices", None);
    assert_eq!(status, 200, "{after}");
    let (before, after) = (&json(&before)["items"][0], &json(&after)["items"][0]);
    for field in ["device_id", "last_window_end", "fault_probability", "open_alert"] {
        assert_eq!(after[field], before[field], "{field} after a restart");
    }
    assert_eq!(after["open_alert"], id.as_str());
    let (_, body) = http(port, "GET", "/api/v1/alerts?status=acknowledged", None);
    assert_eq!(json(&body)["items"][0]["alert_id"], id.as_str(), "{body}");
    // Acknowledged again after the restart: the feature values from the store.
    let (status, body) = http(port, "POST", &path, Some(r#"{"by": "Ana", "comment": "valve replaced"}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["comment"], "valve replaced");
    assert_eq!(json(&body)["features"], features);

    // Refusals, as JSON with a message.
    for (method, path, body, want) in [
        ("GET", "/api/v1/alerts?status=maybe", None, 400),
        ("POST", "/api/v1/alerts/nope/ack", Some(r#"{"by": "x"}"#), 404),
        ("POST", path.as_str(), Some(r#"{"who": "x"}"#), 422),
        ("POST", path.as_str(), Some("not json"), 400),
        ("GET", "/api/v1/no/such/route", None, 404),
        ("POST", "/api/v1/labels", Some(r#"{"device_id": "pump-1", "start": "soon", "end": 1, "fault": true}"#), 400),
    ] {
        let (status, text) = http(port, method, path, body);
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(json(&text)["error"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {text}");
    }
    let big = format!("{{\"by\": \"{}\"}}", "x".repeat(100_000));
    assert_eq!(http(port, "POST", &path, Some(&big)).0, 413, "body limit");

    // A false-alarm label on the alert's window.
    let label = format!(
        r#"{{"device_id": "pump-1", "start": {}, "end": {}, "fault": false}}"#,
        json(&acked.to_string())["window_start"],
        json(&acked.to_string())["window_end"]
    );
    let (status, body) = http(port, "POST", "/api/v1/labels", Some(&label));
    assert_eq!(status, 200, "{body}");
    let outcome = json(&body);
    assert_eq!(outcome["false_alerts"], 1, "{body}");
    let (status, body) = http(port, "GET", "/api/v1/model", None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["name"], "pump-skab");
    let (status, body) = http(port, "GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert!(json(&body)["paths"]["/api/v1/alerts"]["get"].is_object());

    // The overview page: every device, and what a device id says is shown, never run.
    let jsonl = _dir.path().join("evil.jsonl");
    std::fs::write(
        &jsonl,
        "{\"device_id\": \"<script>alert(1)</script>\", \"ts\": 0, \"values\": {\"Temperature\": 1}}\n\
         {\"device_id\": \"<script>alert(1)</script>\", \"ts\": 300000, \"values\": {\"Temperature\": 2}}\n",
    )
    .unwrap();
    replay(&["--input", jsonl.to_str().unwrap(), "--mqtt", &broker.url(), "--topic", "plant/x/pumps/evil"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (status, page) = http(port, "GET", "/", None);
        assert_eq!(status, 200, "{page}");
        if page.contains("alert(1)") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "the device never showed: {page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains("pump-1") && page.contains("/api/v1/devices"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || page.contains("&#60;script&#62;"),
        "escaped: {page}"
    );
    assert!(!page.contains("<script>alert(1)"), "never raw: {page}");
    // Its page too (charts titled with it, alert history), and every other page.
    let (status, dev) = http(port, "GET", "/devices/%3Cscript%3Ealert(1)%3C%2Fscript%3E", None);
    assert_eq!(status, 200, "{dev}");
    assert!(dev.contains("&lt;script&gt;alert(1)") || dev.contains("&#60;script&#62;"), "{dev}");
    assert!(!dev.contains("<script>alert(1)"), "never raw: {dev}");
    for path in ["/devices/pump-1", "/alerts", "/alerts?status=open&severity=critical&device_id=pump-1", "/models"] {
        let (status, page) = http(port, "GET", path, None);
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains("pump-"), "{path}: {page}");
    }
    let (status, page) = http(port, "GET", "/devices/no-such-pump", None);
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("<html"), "pages answer errors as pages: {page}");
    let (status, page) = http(port, "GET", "/alerts?from=yesterday", None);
    assert_eq!(status, 400, "{page}");
    assert!(d.terminate().success());
}

/// The sample's configuration with 10 s windows, no model, and a baseline
/// of the eight signals' means.
fn baseline_only(text: String) -> String {
    let mut out = Vec::new();
    let mut skip = false;
    for line in text.lines() {
        if line == "[model]" {
            skip = true;
            continue;
        }
        if skip {
            skip = false;
            continue;
        }
        out.push(line.replace("size = \"2m\"", "size = \"10s\""));
    }
    let features: Vec<String> = common::SKAB_SIGNALS.iter().map(|s| format!("\"{s}.mean\"")).collect();
    format!("{}\n[baseline]\nfeatures = [{}]\nwarmup_windows = 40\n", out.join("\n"), features.join(", "))
}

#[test]
fn baselines_learn_alert_with_reasons_survive_a_restart_and_learn_again_on_reset() {
    use common::brokers::http;
    let broker = Mosquitto::start();
    let Run { dir: _dir, text, mut d, .. } =
        Run::start_with(&mqtt_source(&broker.url()), "", &["MQTT connected"], baseline_only);
    let sample = sample();
    replay(&mqtt_replay(&broker.url(), "max", sample.to_str().unwrap()));
    d.wait_for_payloads(ROWS, Duration::from_secs(60));
    wait_quiet(&d);
    let port = d.http_port();
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_else(|e| panic!("{e}: {s}"));

    // The same alerts as the library over the file, all from the baseline.
    let want = common::skab::expected(&text);
    assert!(!want.alerts.is_empty(), "the sample's fault is flagged");
    let (status, body) = http(port, "GET", "/api/v1/alerts", None);
    assert_eq!(status, 200, "{body}");
    let items = json(&body)["items"].as_array().unwrap().clone();
    let got: std::collections::BTreeMap<String, String> = items
        .iter()
        .map(|a| (a["alert_id"].as_str().unwrap().to_owned(), a["status"].as_str().unwrap().to_owned()))
        .collect();
    let want_alerts: std::collections::BTreeMap<String, String> =
        want.alerts.iter().map(|(k, v)| (k.clone(), v.to_lowercase())).collect();
    assert_eq!(got, want_alerts, "alerts and their latest status");
    for a in &items {
        assert_eq!(
            (&a["origin"], &a["model"], &a["model_version"]),
            (&"baseline".into(), &"baseline".into(), &"1".into()),
            "{a}"
        );
        let why = a["contributions"].as_object().expect("contributions");
        assert!(!why.is_empty() && why.len() <= 5, "{a}");
        assert!(why.keys().all(|k| k.ends_with(".mean")), "{a}");
    }
    let baseline = |port| {
        let (status, body) = http(port, "GET", "/api/v1/devices", None);
        assert_eq!(status, 200, "{body}");
        json(&body)["items"][0]["baseline"].clone()
    };
    let b = baseline(port);
    assert_eq!((&b["state"], &b["version"], &b["need"]), (&"active".into(), &1.into(), &40.into()), "{b}");
    let since = b["since_ms"].clone();
    assert!(b["t2_ratio"].is_number() && b["q_ratio"].is_number(), "the latest window's anomaly score: {b}");
    let (status, page) = http(port, "GET", "/devices/pump-1", None);
    assert_eq!(status, 200);
    assert!(page.contains("Baseline of normal") && page.contains("Machine serviced: learn normal again"), "{page}");
    let (_, metrics) = http(port, "GET", "/metrics", None);
    assert!(metrics.contains("faultline_baselines{state=\"active\"} 1"), "{metrics}");

    // A restart keeps the fitted baseline.
    assert!(d.terminate().success(), "{}", d.log_text());
    d.restart();
    let port = d.http_port();
    let b = baseline(port);
    assert_eq!((&b["state"], &b["version"], &b["since_ms"]), (&"active".into(), &1.into(), &since), "{b}");

    // The machine was serviced: learn again; that too survives a restart.
    let (status, body) = http(port, "POST", "/api/v1/devices/pump-1/baseline/reset", None);
    assert_eq!(status, 200, "{body}");
    let r = json(&body);
    assert_eq!((&r["state"], &r["have"], &r["version"]), (&"learning".into(), &0.into(), &1.into()), "{r}");
    let (status, body) = http(port, "POST", "/api/v1/devices/nobody/baseline/reset", None);
    assert_eq!(status, 404, "{body}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(d.terminate().success(), "{}", d.log_text());
    d.restart();
    let port = d.http_port();
    assert_eq!(baseline(port)["state"], "learning");
    let (_, page) = http(port, "GET", "/devices/pump-1", None);
    assert!(page.contains("learning: 0 of 40 windows"), "{page}");
    assert!(d.terminate().success(), "{}", d.log_text());
}
