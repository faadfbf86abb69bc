//! `[http.auth]` against a running daemon: sign-in with argon2 password
//! hashes, session cookies (HttpOnly, SameSite=Strict), CSRF tokens on
//! forms and on signed-in API calls, bearer tokens, viewer and operator
//! roles, sign-out; HTTPS with `http.tls_*`; and the start-up refusal of
//! a network address without auth.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::brokers::{request, Mosquitto, Response};
use common::skab::Run;

fn hash(password: &str) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["auth", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("faultline auth hash-password");
    writeln!(c.stdin.take().unwrap(), "{password}").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A token and its `[[http.auth.token]]` entry, from `faultline auth new-token`.
fn token(name: &str, role: &str) -> (String, String) {
    let out = common::faultline(&["auth", "new-token", "--name", name, "--role", role]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned();
    let entry = text.split_once("[[http.auth.token]]").unwrap().1.to_owned();
    (token, format!("[[http.auth.token]]{entry}"))
}

fn source(broker: &Mosquitto) -> String {
    format!(
        "[[source]]\ntype = \"mqtt\"\nurl = \"{}\"\ntopics = [\"plant/+/pumps/+\"]\nclient_id = \"faultline-auth\"\n",
        broker.url()
    )
}

/// The value of `name="..."`'s `value` attribute in a page.
fn field(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// `name=value` of a Set-Cookie header of `r`.
fn cookie(r: &Response, name: &str) -> Option<String> {
    r.all("set-cookie").into_iter().find(|c| c.starts_with(&format!("{name}="))).map(|c| c.to_owned())
}

/// The start of an endless response (a live stream).
fn stream_head(port: u16, path: &str, authorization: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn form(port: u16, path: &str, cookie: &str, body: &str) -> Response {
    request(port, "POST", path, &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie)], body)
}

#[test]
fn sign_in_sessions_csrf_tokens_and_roles() {
    let broker = Mosquitto::start();
    let (viewer_token, viewer_entry) = token("grafana", "viewer");
    let (operator_token, operator_entry) = token("cmms", "operator");
    let users = format!(
        "[http.auth]\nsession_ttl = \"1h\"\n\
         [[http.auth.user]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"{}\"\n\
         [[http.auth.user]]\nname = \"viv\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n{viewer_entry}\n{operator_entry}\n",
        hash("pump room 7"),
        hash("read only")
    );
    let Run { dir: _dir, mut d, .. } = Run::start(&source(&broker), &users, &["MQTT connected"]);
    let port = d.http_port();

    // Without credentials: probes answer, pages send to the sign-in form, the API says 401.
    assert_eq!(request(port, "GET", "/healthz", &[], "").status, 200);
    let r = request(port, "GET", "/alerts?status=open", &[], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?next=%2Falerts%3Fstatus%3Dopen"));
    for path in ["/api/v1/devices", "/events", "/api/v1/openapi.json"] {
        let r = request(port, "GET", path, &[], "");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.body.contains("\"error\""));
    }

    // The sign-in form is bound to this browser by a cookie.
    let page = request(port, "GET", "/login?next=/alerts", &[], "");
    assert_eq!(page.status, 200);
    let login_cookie = cookie(&page, "faultline_login").expect("a login cookie");
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"), "{login_cookie}");
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let csrf = field(&page.body, "csrf");
    let bad = form(port, "/login", &login_cookie, &format!("csrf={csrf}&name=ana&password=wrong&next=%2Falerts"));
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("Wrong name or password"), "{}", bad.body);
    let forged = form(port, "/login", "", &format!("csrf={csrf}&name=ana&password=pump+room+7"));
    assert_eq!(forged.status, 401, "a sign-in posted without the form's cookie is refused");
    let csrf = field(&bad.body, "csrf");
    let login_cookie = cookie(&bad, "faultline_login").unwrap().split(';').next().unwrap().to_owned();
    let ok = form(port, "/login", &login_cookie, &format!("csrf={csrf}&name=ana&password=pump+room+7&next=%2Falerts"));
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/alerts"));
    let session = cookie(&ok, "faultline_session").expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict") && !session.contains("Secure"));
    let ana = session.split(';').next().unwrap().to_owned();

    let page = request(port, "GET", "/alerts", &[("Cookie", &ana)], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ana (operator)"), "{}", page.body);
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let ana_csrf = field(&page.body, "csrf");

    // Forms: the session's CSRF token, and an operator.
    let ack = |cookie: &str, csrf: &str| {
        form(port, "/alerts/ack", cookie, &format!("csrf={csrf}&alert_id=pump-9%2F2026&comment=x&back=%2Falerts"))
    };
    assert_eq!(ack(&ana, "").status, 403, "no CSRF token");
    assert_eq!(ack(&ana, &"0".repeat(64)).status, 403, "another CSRF token");
    let r = ack(&ana, &ana_csrf);
    assert_eq!(r.status, 404, "through to the daemon, which has no such alert: {}", r.body);
    assert!(r.body.contains("pump-9/2026"), "{}", r.body);

    // A viewer reads but does not change.
    let p = request(port, "GET", "/login", &[], "");
    let lc = cookie(&p, "faultline_login").unwrap().split(';').next().unwrap().to_owned();
    let r = form(port, "/login", &lc, &format!("csrf={}&name=viv&password=read+only", field(&p.body, "csrf")));
    let viv = cookie(&r, "faultline_session").unwrap().split(';').next().unwrap().to_owned();
    let page = request(port, "GET", "/alerts", &[("Cookie", &viv)], "");
    assert!(page.body.contains("Your role reads only"), "{}", page.body);
    assert_eq!(ack(&viv, &field(&page.body, "csrf")).status, 403);

    // The API: bearer tokens by role; a signed-in browser's API posts need X-CSRF-Token.
    let json = [("Content-Type", "application/json")];
    let ack_api = "/api/v1/alerts/pump-9%2F2026/ack";
    fn with<'a>(json: &[(&'a str, &'a str)], h: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        [json, h].concat()
    }
    let viewer_auth = format!("Bearer {viewer_token}");
    let operator_auth = format!("Bearer {operator_token}");
    assert_eq!(request(port, "GET", "/api/v1/devices", &[("Authorization", &viewer_auth)], "").status, 200);
    assert_eq!(request(port, "GET", "/api/v1/devices", &[("Authorization", "Bearer nope")], "").status, 401);
    let r = request(port, "POST", ack_api, &with(&json, &[("Authorization", &viewer_auth)]), "{}");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request(port, "POST", ack_api, &with(&json, &[("Authorization", &operator_auth)]), "{}");
    assert_eq!(r.status, 404, "an operator token gets through: {}", r.body);
    let label = r#"{"device_id": "pump-9", "start": 0, "end": 1, "fault": true}"#;
    assert_eq!(
        request(port, "POST", "/api/v1/labels", &with(&json, &[("Authorization", &viewer_auth)]), label).status,
        403
    );
    assert_eq!(
        request(port, "POST", "/api/v1/labels", &with(&json, &[("Authorization", &operator_auth)]), label).status,
        200
    );
    assert_eq!(request(port, "POST", ack_api, &with(&json, &[("Cookie", &ana)]), "{}").status, 403, "no X-CSRF-Token");
    let r = request(port, "POST", ack_api, &with(&json, &[("Cookie", &ana), ("X-CSRF-Token", &ana_csrf)]), "{}");
    assert_eq!(r.status, 404, "{}", r.body);
    let head = stream_head(port, "/events", &viewer_auth);
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"), "{head}");

    // Signing out ends the session (and needs the token too).
    assert_eq!(form(port, "/logout", &ana, "csrf=wrong").status, 403);
    let out = form(port, "/logout", &ana, &format!("csrf={ana_csrf}"));
    assert_eq!(out.status, 303);
    assert!(cookie(&out, "faultline_session").is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(request(port, "GET", "/", &[("Cookie", &ana)], "").status, 303, "signed out");
    assert!(d.terminate().success());
}

/// A self-signed certificate for 127.0.0.1, made with openssl.
fn certificate(dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem"])
        .args(["-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn https_with_a_certificate_and_secure_cookies() {
    let broker = Mosquitto::start();
    let certs = tempfile::tempdir().unwrap();
    certificate(certs.path());
    let (tok, entry) = token("probe", "viewer");
    let extra = format!(
        "[http.auth]\n[[http.auth.user]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"{}\"\n{entry}\n",
        hash("pump room 7")
    );
    let text_tls = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    // The TLS keys belong in [http], which config_text writes with `listen`.
    let Run { dir: _dir, mut d, .. } = Run::start_with(&source(&broker), &extra, &["MQTT connected"], |t| {
        t.replace("listen = \"127.0.0.1:0\"\n", &format!("listen = \"127.0.0.1:0\"\n{text_tls}"))
    });
    let port = d.http_port();
    assert!(d.log_text().contains("HTTP on https://"), "{}", d.log_text());
    let https = |path: &str, headers: &[&str]| {
        let mut c = Command::new("curl");
        c.args(["-s", "-i", "--max-time", "10", "--cacert"]).arg(certs.path().join("cert.pem"));
        for h in headers {
            c.args(["-H", h]);
        }
        let out = c.arg(format!("https://127.0.0.1:{port}{path}")).output().expect("curl runs");
        common::brokers::parse_response(&String::from_utf8_lossy(&out.stdout))
    };
    assert_eq!(https("/healthz", &[]).status, 200);
    let r = https("/api/v1/devices", &[&format!("Authorization: Bearer {tok}")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let login = https("/login", &[]);
    assert!(cookie(&login, "faultline_login").is_some_and(|c| c.contains("; Secure")), "{:?}", login.headers);
    // Plain HTTP on the HTTPS port gets nowhere.
    let plain = std::panic::catch_unwind(|| request(port, "GET", "/healthz", &[], ""));
    assert!(plain.map_or(true, |r| r.status != 200));
    // A client that connects and says nothing does not block others.
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(https("/healthz", &[]).status, 200);
    assert!(d.terminate().success());
}

#[test]
fn a_network_address_needs_auth() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, extra: &str| {
        let text = format!(
            "[state]\ndir = \"{}\"\n[http]\nlisten = \"0.0.0.0:8080\"\n{extra}\n[[source]]\ntype = \"mqtt\"\n\
             url = \"mqtt://127.0.0.1:1\"\ntopics = [\"a\"]\n",
            dir.path().join("state").display()
        );
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let open = write("open.toml", "");
    let out = common::faultline(&["check-config", "--config", open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("http.listen") && common::stderr(&out).contains("[http.auth]"));
    let out = common::faultline(&["run", "--config", open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "refused at start: {}", common::stderr(&out));

    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"{}\"\n", hash("x")),
    )
    .unwrap();
    let with_auth = write("auth.toml", &format!("[http.auth]\nusers_file = \"{}\"\n", users.display()));
    let out = common::faultline(&["check-config", "--config", with_auth.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    let bad = write(
        "bad.toml",
        "[http.auth]\n[[http.auth.user]]\nname = \"ana\"\nrole = \"boss\"\npassword_hash = \"plain\"\n\
         [[http.auth.token]]\nname = \"t\"\nrole = \"viewer\"\nsha256 = \"abc\"\n",
    );
    let out = common::faultline(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("role"), "{}", common::stderr(&out));
}
