//! `faultline demo`: starts with nothing else running, pumps appear, an
//! alert comes within a minute and can be acknowledged through the API,
//! and a clean stop removes its temporary state.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::brokers::http;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn the_demo_streams_pumps_raises_an_alert_and_takes_an_acknowledgement() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("FAULTLINE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("faultline demo starts");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let wait_line = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(Instant::now() < deadline, "no {needle:?} in {:?}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let intro = wait_line("faultline demo:");
    let state = intro.rsplit("state in ").next().unwrap().trim_end_matches(')').to_owned();
    let port: u16 = wait_line("HTTP on http://").rsplit(':').next().unwrap().trim().parse().unwrap();
    assert!(std::path::Path::new(&state).is_dir(), "{state}");

    let started = Instant::now();
    let alert = loop {
        let (status, body) = http(port, "GET", "/api/v1/alerts?status=open", None);
        assert_eq!(status, 200, "{body}");
        if let Some(id) = json(&body)["items"][0]["alert_id"].as_str() {
            break id.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(90), "no alert after 90 s: {:?}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("first alert {alert} after {:?}", started.elapsed());
    // Every pump shows once its first window closed.
    loop {
        let (_, body) = http(port, "GET", "/api/v1/devices", None);
        if json(&body)["total"] == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "not all pumps after 90 s: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (status, body) = http(port, "POST", &format!("/api/v1/alerts/{alert}/ack"), Some(r#"{"by": "demo test"}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"], "acknowledged");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(port, "GET", "/api/v1/alerts?status=acknowledged", None);
        if json(&body)["items"].as_array().is_some_and(|a| a.iter().any(|x| x["alert_id"] == alert.as_str())) {
            break;
        }
        assert!(Instant::now() < deadline, "the acknowledgement never showed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{:?}", log.lock().unwrap());
    assert!(!std::path::Path::new(&state).exists(), "{state} removed at exit");
}
