//! Running as a systemd service: the sd_notify protocol (READY=1 only once
//! the HTTP port answers, WATCHDOG=1 pings from the loop, STATUS=,
//! STOPPING=1), `/metrics` with every SPEC 8 name, and SIGHUP reloading
//! what can change at run time while refusing a bad file.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::brokers::{http, replay, Mosquitto};
use common::skab::{replay_args, sample, Run};

fn source(broker: &Mosquitto) -> String {
    format!(
        "[[source]]\ntype = \"mqtt\"\nurl = \"{}\"\ntopics = [\"plant/+/pumps/+\"]\n\
         device_from_topic = \"plant/+/pumps/{{device_id}}\"\nclient_id = \"faultline-svc\"\n",
        broker.url()
    )
}

#[test]
fn speaks_sd_notify_ready_after_http_then_watchdog_pings() {
    let broker = Mosquitto::start();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let port = common::brokers::free_port();
    let listen = format!("listen = \"127.0.0.1:{port}\"\n");
    let notify = sock_path.to_str().unwrap().to_owned();
    let Run { dir: _dir, mut d, .. } = Run::start_env(
        &source(&broker),
        "",
        &[],
        |t| t.replace("listen = \"127.0.0.1:0\"\n", &listen),
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "2000000")],
    );
    let mut buf = [0u8; 4096];
    let recv = |buf: &mut [u8]| -> String {
        let n = sock.recv(buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv(&mut buf);
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    // Ready means the port answers now, not soon.
    let (status, _) = http(port, "GET", "/healthz", None);
    assert_eq!(status, 200, "HTTP answers once READY=1 was sent");
    assert!(first.contains("STATUS=") && first.contains("devices"), "{first}");

    // WATCHDOG_USEC=2 s: a ping about every second, from the loop.
    let started = Instant::now();
    let (mut pings, mut statuses) = (0, 0);
    while started.elapsed() < Duration::from_secs(6) {
        let m = recv(&mut buf);
        pings += m.lines().filter(|l| *l == "WATCHDOG=1").count();
        statuses += m.lines().filter(|l| l.starts_with("STATUS=")).count();
    }
    assert!(pings >= 4, "{pings} watchdog pings in 6 s");
    assert!(statuses >= 1, "a STATUS= line every 5 s");

    d.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = recv(&mut buf);
        if m.lines().any(|l| l == "STOPPING=1") {
            break;
        }
        assert!(Instant::now() < deadline, "no STOPPING=1");
    }
    assert!(d.terminate().success());
}

#[test]
fn serves_every_spec_metric_with_fine_histogram_buckets() {
    let broker = Mosquitto::start();
    let Run { dir: _dir, mut d, .. } = Run::start(&source(&broker), "", &["MQTT connected"]);
    let port = d.http_port();
    let sample = sample();
    replay(&replay_args(["--mqtt", &broker.url()], "plant/hall-a/pumps/{device_id}", "max", sample.to_str().unwrap()));
    d.wait_for_payloads(1145, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let (status, text) = http(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    for name in [
        "faultline_readings_total{source=\"mqtt\"}",
        "faultline_readings_rejected_total{reason=",
        "faultline_readings_late_total",
        "faultline_windows_closed_total",
        "faultline_inference_seconds_bucket",
        "faultline_alerts_total{severity=\"critical\"}",
        "faultline_alert_outbox_pending",
        "faultline_devices",
        "faultline_model_info{name=\"pump-skab\",version=\"1\"} 1",
        "faultline_false_alerts_total",
        "faultline_build_info{version=",
        "faultline_source_connected{source=\"mqtt\"} 1",
        "faultline_checkpoint_seconds_bucket",
        "faultline_window_close_delay_seconds_bucket",
        "faultline_quarantine_size",
        "faultline_late_store_size",
        "# HELP faultline_devices ",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // Inference is measured in microseconds: buckets below a millisecond.
    let fine = text
        .lines()
        .filter(|l| l.starts_with("faultline_inference_seconds_bucket{le=\""))
        .filter_map(|l| l.split('"').nth(1).and_then(|v| v.parse::<f64>().ok()))
        .filter(|le| *le < 1e-3)
        .count();
    assert!(fine >= 5, "{text}");
    let readings: f64 = text
        .lines()
        .find(|l| l.starts_with("faultline_readings_total{source=\"mqtt\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(readings, 1145.0);
    assert!(d.terminate().success());
}

#[test]
fn sighup_applies_cleaning_alerts_and_model_path_and_refuses_a_bad_file() {
    let broker = Mosquitto::start();
    let Run { dir, mut d, text, .. } = Run::start(&source(&broker), "", &["MQTT connected"]);
    let config = dir.path().join("faultline.toml");
    let port = d.http_port();

    // Cleaning rule and alert threshold change at run time; http does not.
    let model_copy = dir.path().join("model-copy");
    std::fs::create_dir(&model_copy).unwrap();
    let model = common::skab::root().join("models/pump-skab");
    for f in ["model.toml", "model.onnx"] {
        std::fs::copy(model.join(f), model_copy.join(f)).unwrap();
    }
    let changed = text
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
        .replace(&format!("path = \"{}\"", model.display()), &format!("path = \"{}\"", model_copy.display()))
        + "[cleaning.signals.Temperature]\nmin = 0.0\nmax = 1.0\n[alerts]\nthreshold = 0.9\n";
    std::fs::write(&config, &changed).unwrap();
    d.signal("-HUP");
    let line = d.wait_for_log("configuration reloaded", Duration::from_secs(20));
    assert!(line.contains("applied: cleaning, model.path, alerts"), "{line}");
    assert!(line.contains("needs a restart: http"), "{line}");
    let (_, page) = http(port, "GET", "/models", None);
    assert!(page.contains("model-copy"), "the model now runs from the new path");

    // The new rule is in force: every Temperature value above 1 is dropped.
    let sample = sample();
    replay(&replay_args(["--mqtt", &broker.url()], "plant/hall-a/pumps/{device_id}", "max", sample.to_str().unwrap()));
    d.wait_for_payloads(1145, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let (_, metrics) = http(port, "GET", "/metrics", None);
    assert!(
        metrics.contains("faultline_values_dropped_total{signal=\"Temperature\",reason=\"above_max\"} 1145"),
        "{}",
        metrics.lines().filter(|l| l.contains("dropped")).collect::<Vec<_>>().join("\n")
    );

    // A broken file is refused and the daemon goes on.
    std::fs::write(&config, "[window]\nsize = \"5 parsecs\"\n").unwrap();
    d.signal("-HUP");
    let line = d.wait_for_log("refused, the running configuration stays", Duration::from_secs(20));
    assert!(line.contains("window.size"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.alive());
    assert_eq!(http(port, "GET", "/healthz", None).0, 200);
    let (_, metrics) = http(port, "GET", "/metrics", None);
    assert!(metrics.contains("faultline_config_reloads_total{result=\"refused\"} 1"), "{metrics}");
    assert!(d.terminate().success());
}
