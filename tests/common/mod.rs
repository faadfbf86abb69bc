//! Helpers shared by the black-box tests.
#![allow(dead_code)]

pub mod brokers;
pub mod onnx;
pub mod skab;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// SKAB's eight sensor signals, in file order.
pub use faultline::evaluate::SKAB_SIGNALS;

/// Runs the `faultline` binary built for this test run.
pub fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("the faultline binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `../shared/data` beside the repository (or `$FAULTLINE_DATA`), if present.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.is_dir().then_some(dir)
}

/// Parses a CSV into its header and rows of cells.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("csv opens");
    let header = r.headers().expect("header").iter().map(str::to_owned).collect();
    let rows = r.records().map(|rec| rec.expect("record").iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

/// `faultline demo` on a free loopback port, its log collected.
pub struct Demo {
    pub child: std::process::Child,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub port: u16,
    /// Its temporary state directory.
    pub state: PathBuf,
}

impl Demo {
    pub fn start() -> Demo {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["demo", "--listen", "127.0.0.1:0"])
            .env("FAULTLINE_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("faultline demo starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(l);
            }
        });
        let mut d = Demo { child, log, port: 0, state: PathBuf::new() };
        let intro = d.wait_line("faultline demo:");
        d.state = PathBuf::from(intro.rsplit("state in ").next().unwrap_or("").trim_end_matches(')'));
        d.port = d.wait_line("HTTP on http://").rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("a port");
        d
    }

    /// The first log line containing `needle`, waiting up to 30 s.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(l) = self.log.lock().expect("log lock").iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no {needle:?} in {:?}", self.log.lock().expect("log lock"));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// SIGTERM; waits up to 20 s for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "the demo did not stop on SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
