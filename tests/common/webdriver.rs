//! Just enough of the W3C WebDriver protocol to drive Debian's chromium
//! through chromedriver: open pages, find elements, type, click, read
//! text, take screenshots. Plain HTTP + JSON over loopback, through the
//! same small client the other tests use.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::brokers::{free_port, request};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// chromedriver and chromium, or why not.
fn tools() -> Result<(String, String), String> {
    let driver = std::env::var("FAULTLINE_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("FAULTLINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    for p in [&driver, &chromium] {
        if !Path::new(p).exists() {
            return Err(format!(
                "{p} is missing (Debian packages chromium and chromium-driver; .ci/run installs them)"
            ));
        }
    }
    Ok((driver, chromium))
}

impl Browser {
    /// Starts chromedriver and a headless chromium session. Without them the
    /// test is skipped, except under CI (`CI` set), where it fails.
    pub fn start() -> Option<Browser> {
        let (driver, chromium) = match tools() {
            Ok(t) => t,
            Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
            Err(e) => {
                eprintln!("skipped: {e}");
                return None;
            }
        };
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser { driver: child, port, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("tempdir").keep();
        // The flags keep chromium off the network it would otherwise call home to.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1100,1400",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a session id").to_owned();
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if method == "POST" { &[("Content-Type", "application/json")] } else { &[] };
        let r = request(self.port, method, path, headers, &body);
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: status {} body {:?}", r.status, r.body));
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None).as_str().unwrap_or_default().to_owned()
    }

    /// Elements matching a CSS selector (maybe none).
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call("POST", &self.at("/elements"), Some(json!({"using": "css selector", "value": css})));
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The first element matching, waiting up to `timeout` for one.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(Instant::now() < deadline, "no {css:?} on {} within {timeout:?}", self.url());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn text(&self, element: &str) -> String {
        self.call("GET", &self.at(&format!("/element/{element}/text")), None).as_str().unwrap_or_default().to_owned()
    }

    pub fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.call("GET", &self.at(&format!("/element/{element}/attribute/{name}")), None).as_str().map(str::to_owned)
    }

    /// The text of the first element matching `css` (empty if none).
    pub fn text_of(&self, css: &str) -> String {
        self.find_all(css).first().map(|e| self.text(e)).unwrap_or_default()
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &self.at(&format!("/element/{element}/click")), Some(json!({})));
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &self.at(&format!("/element/{element}/value")), Some(json!({"text": text})));
    }

    /// Runs `script` in the page; returns its value.
    pub fn run(&self, script: &str) -> Value {
        self.call("POST", &self.at("/execute/sync"), Some(json!({"script": script, "args": []})))
    }

    /// Saves a PNG of the page.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", &self.at("/screenshot"), None);
        let png = base64(b64.as_str().expect("screenshot data"));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(self.port, "DELETE", &format!("/session/{}", self.session), &[], "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (what WebDriver screenshots are in).
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
