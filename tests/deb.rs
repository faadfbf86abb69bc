//! The .deb (SPEC 9), built by `.ci/run` with cargo-deb and named by
//! `$FAULTLINE_DEB`: its files and conffiles, the unit passing
//! `systemd-analyze verify`, then a real `dpkg -i` on this machine, the
//! installed binary run as the `faultline` user with the installed
//! configuration against a test mosquitto, `/readyz` and `/metrics`, and
//! `dpkg -r` (state kept) and `--purge` (state gone). Needs root; without
//! `$FAULTLINE_DEB` it is skipped, except under CI.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::brokers::{free_port, http, Mosquitto};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn is_root() -> bool {
    run("id", &["-u"]).stdout.starts_with(b"0")
}

/// Kills the daemon if the test fails before stopping it.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_package_installs_runs_and_purges() {
    let deb = match std::env::var("FAULTLINE_DEB") {
        Ok(d) if is_root() => d,
        _ if std::env::var_os("CI").is_some() => panic!("FAULTLINE_DEB unset or not root: .ci/run builds the .deb"),
        _ => {
            eprintln!("skipped: set FAULTLINE_DEB to a built .deb and run as root");
            return;
        }
    };
    // A package left by an earlier failed run.
    let _ = run("dpkg", &["--purge", "faultline"]);

    let files = ok("dpkg-deb", &["-c", &deb]);
    for f in [
        "./usr/bin/faultline",
        "./etc/faultline/faultline.toml",
        "/systemd/system/faultline.service",
        "./usr/share/faultline/models/pump-skab/model.onnx",
        "./usr/share/faultline/models/pump-skab/model.toml",
        "./usr/share/doc/faultline/copyright",
        "./usr/share/faultline/grafana-dashboard.json",
    ] {
        assert!(files.contains(f), "{f} not in the package:\n{files}");
    }
    let info = ok("dpkg-deb", &["-I", &deb, "conffiles"]);
    assert_eq!(info.trim(), "/etc/faultline/faultline.toml");
    let depends = ok("dpkg-deb", &["-f", &deb, "Depends"]);
    assert!(depends.contains("passwd") && depends.contains("libc6"), "{depends}");
    // The binary's packed relocations need glibc 2.36, which $auto does not see.
    assert!(depends.contains("libc6 (>= 2.36)"), "{depends}");

    ok("dpkg", &["-i", &deb]);
    assert!(ok("getent", &["passwd", "faultline"]).contains("/var/lib/faultline"));
    let owner = ok("stat", &["-c", "%U:%G %a", "/var/lib/faultline"]);
    assert_eq!(owner.trim(), "faultline:faultline 750");
    let conf = ok("stat", &["-c", "%U:%G %a", "/etc/faultline/faultline.toml"]);
    assert_eq!(conf.trim(), "root:faultline 640", "the config may hold passwords");
    let unit = ["/lib/systemd/system/faultline.service", "/usr/lib/systemd/system/faultline.service"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("the unit is installed");
    let verify = run("systemd-analyze", &["verify", unit]);
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("faultline.service:"), "systemd-analyze verify complains: {said}");
    let security = run("systemd-analyze", &["security", "--offline=yes", unit]);
    let text = String::from_utf8_lossy(&security.stdout);
    let score = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("").to_owned();
    eprintln!("systemd-analyze security: {score}");
    let level: f64 =
        score.split(": ").nth(1).and_then(|v| v.split(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(10.0);
    assert!(level < 2.0, "exposure {level}: {text}");
    ok("/usr/bin/faultline", &["check-config", "--config", "/etc/faultline/faultline.toml"]);
    assert!(ok("/usr/bin/faultline", &["--help"]).contains("check-config"));

    // The installed config, with the test broker's port and a free HTTP port,
    // run as the service user on the installed state directory.
    let broker = Mosquitto::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string("/etc/faultline/faultline.toml")
        .unwrap()
        .replace("mqtt://127.0.0.1:1883", &broker.url())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("faultline.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    // setpriv execs the daemon itself, so the pid is the daemon's.
    let child = Command::new("setpriv")
        .args([
            "--reuid",
            "faultline",
            "--regid",
            "faultline",
            "--init-groups",
            "/usr/bin/faultline",
            "run",
            "--config",
        ])
        .arg(&config)
        .env("FAULTLINE_LOG", "warn")
        .spawn()
        .expect("setpriv starts the installed binary");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && http(port, "GET", "/readyz", None).0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the installed daemon never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, metrics) = http(port, "GET", "/metrics", None);
        assert_eq!(status, 200);
        if metrics.contains("faultline_model_info{name=\"pump-skab\",version=\"1\"} 1")
            && metrics.contains("faultline_source_connected{source=\"mqtt\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = run("kill", &["-TERM", &child.0.id().to_string()]);
    assert!(child.0.wait().unwrap().success(), "a clean stop");
    assert!(
        Path::new("/var/lib/faultline/db").exists()
            || std::fs::read_dir("/var/lib/faultline").unwrap().next().is_some()
    );

    // Remove keeps state and the conffile; purge deletes them.
    ok("dpkg", &["-r", "faultline"]);
    assert!(!Path::new("/usr/bin/faultline").exists());
    assert!(Path::new("/var/lib/faultline").exists(), "state kept on remove");
    assert!(Path::new("/etc/faultline/faultline.toml").exists(), "conffile kept on remove");
    ok("dpkg", &["--purge", "faultline"]);
    assert!(!Path::new("/var/lib/faultline").exists(), "state deleted on purge");
    assert!(!Path::new("/etc/faultline/faultline.toml").exists());
}
