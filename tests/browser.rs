//! The dashboard in a real browser (Debian's chromium, headless, driven
//! through chromedriver): `faultline demo` starts, pumps appear on the
//! overview without a reload, an alert comes, the maintenance engineer
//! acknowledges it and marks it a false alarm through the page, and the
//! API shows both. Screenshots for humans go to `target/screenshots/`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::brokers::http;
use common::webdriver::Browser;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn an_engineer_watches_the_demo_and_acknowledges_an_alert_in_the_browser() {
    let Some(b) = Browser::start() else { return };
    let demo = common::Demo::start();
    let base = format!("http://127.0.0.1:{}", demo.port);

    // Opened at once: the pumps have not closed a window yet, and the page
    // fills in live (Server-Sent Events), without a reload.
    b.goto(&format!("{base}/"));
    // A mark on this page's window: a reload would lose it.
    b.run("window.faultlineTestMark = 1; return null;");
    let rows = "#devices tbody tr";
    let started = Instant::now();
    while b.find_all(rows).len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "pumps did not appear live: {}\n{}",
            b.run("return document.body.outerHTML;"),
            demo.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    while b.text_of("#open") == "0" {
        assert!(started.elapsed() < Duration::from_secs(120), "no open alert counted live: {}", demo.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(b.run("return window.faultlineTestMark === 1;"), serde_json::json!(true), "updated without a reload");
    let empty_note = "var e = document.getElementById('no-devices'); return e === null || e.hidden;";
    assert_eq!(b.run(empty_note), serde_json::json!(true), "no 'no device yet' note beside the rows");
    // The count and the rows come in separate updates: on a slow machine
    // the row's mark can follow the count by a moment. The device with an
    // open alert is marked, and sorted first.
    b.wait_for(&format!("{rows}:first-child[class=\"critical\"]"), Duration::from_secs(10));
    // Times are shown in the browser's zone (the datetime attribute stays RFC 3339).
    let t = b.wait_for("#devices tbody time", Duration::from_secs(5));
    assert!(b.attribute(&t, "datetime").is_some_and(|d| d.ends_with('Z')));
    b.screenshot(&shots().join("overview.png"));

    // The device page: charts drawn on the server.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Windows are read from the store: reload until one is checkpointed.
        b.goto(&format!("{base}/devices/pump-1"));
        if !b.find_all("svg.chart .line, svg.chart .dot").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no window drawn on the device page");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(b.find_all("svg.chart").len() >= 9, "probability and eight signals");
    assert!(b.text_of("h1").contains("pump-1"));

    // Acknowledge the first open alert through the alerts page's form.
    b.goto(&format!("{base}/alerts?status=open"));
    b.wait_for("form.ack", Duration::from_secs(5));
    let id_field = b.find_all("form.ack input[name=alert_id]")[0].clone();
    let alert_id = b.attribute(&id_field, "value").expect("an alert id in the form");
    let by = b.find_all("form.ack input[name=by]")[0].clone();
    b.type_into(&by, "Ana (browser)");
    let comment = b.find_all("form.ack input[name=comment]")[0].clone();
    b.type_into(&comment, "checking the valve <now>");
    b.click(&b.find_all("form.ack button")[0]);
    let note = b.wait_for("p.note[role=status]", Duration::from_secs(10));
    assert_eq!(b.text(&note), "Alert acknowledged.");
    assert!(b.url().starts_with(&format!("{base}/alerts?")), "back on the alerts page: {}", b.url());

    // The API agrees (once the acknowledgement is checkpointed).
    let deadline = Instant::now() + Duration::from_secs(10);
    let acked = loop {
        let (_, body) = http(demo.port, "GET", "/api/v1/alerts?status=acknowledged", None);
        let v = json(&body);
        if let Some(a) = v["items"].as_array().and_then(|a| a.iter().find(|x| x["alert_id"] == alert_id.as_str())) {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "the acknowledgement of {alert_id} never reached the API: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(acked["acknowledged_by"], "Ana (browser)");
    assert_eq!(acked["comment"], "checking the valve <now>");

    // Maintenance found nothing: a false alarm, through the same page.
    b.goto(&format!("{base}/alerts?status=acknowledged"));
    b.wait_for("form.feedback", Duration::from_secs(5));
    let text = b.text_of("table.alerts tbody");
    assert!(text.contains("Ana (browser)") && text.contains("checking the valve <now>"), "{text}");
    b.click(&b.find_all("form.feedback button[value=false]")[0]);
    let note = b.wait_for("p.note[role=status]", Duration::from_secs(10));
    assert_eq!(b.text(&note), "Recorded: false alarm.");
    b.screenshot(&shots().join("alerts.png"));

    b.goto(&format!("{base}/models"));
    assert!(b.text_of("dl.facts").contains("pump-skab"));
    b.goto(&format!("{base}/devices/{}", alert_id.split('/').next().unwrap_or("pump-1")));
    assert!(b.text_of("table.alerts").contains("Ana (browser)"), "the device page lists its alert history");
    b.screenshot(&shots().join("device.png"));

    // The pump's baseline of normal (a trial in the demo): once fitted, the
    // machine is serviced and it learns again, from the device page.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        b.goto(&format!("{base}/devices/pump-1"));
        if b.find_all("#baseline").first().is_some_and(|e| b.text(e).contains("Active since")) {
            break;
        }
        assert!(Instant::now() < deadline, "the baseline was never fitted: {}", demo.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        b.text_of("#baseline").contains("Version\n1") || b.text_of("#baseline").contains("Version 1"),
        "{}",
        b.text_of("#baseline")
    );
    b.click(&b.find_all("#baseline-reset button")[0]);
    let note = b.wait_for("p.note[role=status]", Duration::from_secs(10));
    assert_eq!(b.text(&note), "The baseline learns this machine's normal again from its next windows.");
    let facts = b.text_of("#baseline");
    assert!(facts.contains("learning:") && facts.contains("of 5 windows"), "{facts}");
    b.screenshot(&shots().join("baseline.png"));
}
