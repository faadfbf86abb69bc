//! Real brokers and the real daemon for integration tests: mosquitto (from
//! Debian) and tansu (a Kafka-protocol broker; `.ci/run` installs it under
//! `target/tools`), each on a free loopback port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} does not listen on {port} after 30 s");
}

fn find(env: &str, candidates: &[PathBuf], install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{} not found (looked at {candidates:?}; set {env}): {install}", candidates[0].display())
    })
}

/// mosquitto on a free port, no persistence, queues large enough for tests.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(|_| String::new())
    }

    /// Starts it with more configuration, written by `extra` given the
    /// broker's directory (for certificates and password files). The plain
    /// listener on [`Mosquitto::port`] stays, anonymous.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started as root, mosquitto drops to its own user, which must be able to save sessions here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let extra = extra(dir.path());
        let mut m = Mosquitto { port: free_port(), dir, child: None, extra };
        m.start_again();
        m
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port, with a fresh memory.
    pub fn start_again(&mut self) {
        let bin = find(
            "FAULTLINE_MOSQUITTO",
            &[PathBuf::from("/usr/sbin/mosquitto"), PathBuf::from("/usr/bin/mosquitto")],
            "apt-get install mosquitto (.ci/run does)",
        );
        let conf = self.dir.path().join("mosquitto.conf");
        let text = format!(
            "per_listener_settings true\npersistence true\npersistence_location {}/\n\
             max_queued_messages 0\nmax_inflight_messages 0\nautosave_interval 1\n\
             listener {} 127.0.0.1\nallow_anonymous true\n{}\n",
            self.dir.path().display(),
            self.port,
            self.extra
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log file");
        let mut child =
            Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().expect("mosquitto starts");
        wait_for_port(self.port, "mosquitto", &mut child);
        self.child = Some(child);
    }

    /// Stops it (SIGTERM: it saves its sessions and queues first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn terminate(c: &mut Child) -> Option<ExitStatus> {
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// tansu, a Kafka-protocol broker, on a free port with in-memory storage.
pub struct Tansu {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Tansu {
    pub fn bin() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        find(
            "FAULTLINE_TANSU",
            &[root.join("target/tools/bin/tansu")],
            "cargo install --locked tansu --version 0.6.0 --features dynostore --root target/tools (.ci/run does)",
        )
    }

    pub fn start() -> Tansu {
        let mut t =
            Tansu { port: free_port(), bin: Tansu::bin(), dir: tempfile::tempdir().expect("tempdir"), child: None };
        t.start_again();
        t
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port. Storage is in memory: topics must be created again.
    pub fn start_again(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("log file");
        let mut child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        wait_for_port(self.port, "tansu", &mut child);
        self.child = Some(child);
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("tansu topic create runs");
        assert!(out.status.success(), "tansu topic create {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn delete_topic(&self, name: &str) {
        let out = Command::new(&self.bin)
            .args(["topic", "delete", "--broker", &format!("tcp://127.0.0.1:{}", self.port), name])
            .output()
            .expect("tansu topic delete runs");
        assert!(out.status.success(), "tansu topic delete {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): it answers nothing, connections hang,
    /// as with a broker host that went away. tansu cannot be restarted on
    /// the same port at once (it does not set SO_REUSEADDR), nor would it
    /// keep its in-memory topics, so an outage is a freeze.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("tansu runs").id();
        let ok = Command::new("kill").arg(sig).arg(pid.to_string()).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill {sig} {pid}");
    }

    /// The values on partition `partition` of `topic`, read by `tansu cat`
    /// (a client independent of faultline's librdkafka).
    pub fn read(&self, topic: &str, partition: u32) -> Vec<serde_json::Value> {
        let out = Command::new(&self.bin)
            .args(["cat", "consume", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partition", &partition.to_string(), "--max-wait-time-ms", "300", topic])
            .output()
            .expect("tansu cat runs");
        assert!(out.status.success(), "tansu cat {topic}: {}", String::from_utf8_lossy(&out.stderr));
        let mut values = Vec::new();
        for batch in serde_json::Deserializer::from_slice(&out.stdout).into_iter::<serde_json::Value>() {
            let batch = batch.expect("tansu cat prints JSON");
            for rec in batch.as_array().into_iter().flatten() {
                values.push(rec["value"].clone());
            }
        }
        values
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The daemon, run from the test binary's build, its log captured.
pub struct Daemon {
    child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    config: PathBuf,
    /// Log lines before this one are of earlier runs.
    run_start: usize,
    env: Vec<(String, String)>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with_env(config, &[])
    }

    /// Starts it with more environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon {
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            config: config.to_owned(),
            run_start: 0,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        d.restart();
        d
    }

    /// The process id of the current run.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    /// Sends a signal (`-HUP`, `-STOP`, ...) to the current run.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(sig).arg(self.pid().to_string()).status().expect("kill runs");
        assert!(ok.success());
    }

    /// Whether the current run is still alive.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Starts it again with the same configuration (after [`Daemon::kill9`] or [`Daemon::terminate`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.run_start = self.log.lock().expect("log lock").len();
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("FAULTLINE_LOG", "info,faultline::daemon=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("faultline run starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log lock").push(line);
            }
        });
        self.child = Some(child);
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the daemon runs");
        terminate(&mut c).expect("the daemon exits within 20 s of SIGTERM")
    }

    /// Waits until a log line of the current run contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found =
                self.log.lock().expect("log lock").iter().skip(self.run_start).find(|l| l.contains(needle)).cloned();
            if let Some(l) = found {
                return l;
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?} in {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The payloads processed so far, by the latest checkpoint's log line.
    pub fn checkpointed_payloads(&self) -> u64 {
        let log = self.log.lock().expect("log lock");
        log.iter().rev().find_map(|l| field(l, "payloads")).unwrap_or(0)
    }

    /// Waits until the checkpoints cover at least `n` payloads since the last (re)start.
    pub fn wait_for_payloads(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.checkpointed_payloads() < n {
            assert!(
                Instant::now() < deadline,
                "checkpoints cover {} of {n} payloads after {timeout:?}:\n{}",
                self.checkpointed_payloads(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 60 log lines but checkpoints, then the last checkpoint line.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().expect("log lock");
        let other: Vec<&String> = log.iter().filter(|l| !l.contains("checkpoint in")).collect();
        let mut lines: Vec<&str> = other[other.len().saturating_sub(60)..].iter().map(|s| s.as_str()).collect();
        if let Some(l) = log.iter().rev().find(|l| l.contains("checkpoint in")) {
            lines.push(l);
        }
        lines.join("\n")
    }

    /// The HTTP port of the current run (from its log).
    pub fn http_port(&self) -> u16 {
        let line = self.wait_for_log("HTTP on http", Duration::from_secs(20));
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("a port in the HTTP line")
    }

    /// The last value of `name=123` among the log lines.
    pub fn last_field(&self, name: &str) -> Option<u64> {
        self.log.lock().expect("log lock").iter().rev().find_map(|l| field(l, name))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `name=123` in a log line.
pub fn field(line: &str, name: &str) -> Option<u64> {
    let i = line.find(&format!(" {name}="))?;
    let rest = &line[i + name.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Runs `faultline replay` with `args`; panics unless it succeeds.
pub fn replay(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("replay")
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("faultline replay runs");
    assert!(out.status.success(), "faultline replay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with a JSON body; returns the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let r = request(port, method, path, &[("Content-Type", "application/json")], body.unwrap_or(""));
    (r.status, r.body)
}

/// A response: status, header lines (lower-cased names), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lower case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// One HTTP/1.1 request with the given headers and body.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon's HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    // To the end of the body: Content-Length when given (chromedriver keeps
    // the connection open whatever the request says), else end of stream.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    parse_response(&String::from_utf8_lossy(&raw))
}

/// Splits a raw HTTP/1.1 response.
pub fn parse_response(text: &str) -> Response {
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
