//! `faultline demo`: starts with nothing else running, pumps appear, an
//! alert comes within a minute and can be acknowledged through the API,
//! and a clean stop removes its temporary state.

mod common;

use std::time::{Duration, Instant};

use common::brokers::http;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn the_demo_streams_pumps_raises_an_alert_and_takes_an_acknowledgement() {
    let mut demo = common::Demo::start();
    let (port, state, log) = (demo.port, demo.state.display().to_string(), demo.log.clone());
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

    let status = demo.stop();
    assert!(status.success(), "{:?}", log.lock().unwrap());
    assert!(!std::path::Path::new(&state).exists(), "{state} removed at exit");
}
