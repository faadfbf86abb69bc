//! Who is asking (`[http.auth]`): users signing in to the pages with a
//! password (argon2 hashes in the config), session cookies (HttpOnly,
//! SameSite=Strict, `Secure` under TLS), a CSRF token per session that
//! every form carries, and bearer tokens for the API (SHA-256 in the
//! config). Roles: viewers read, operators also acknowledge and label.
//!
//! Without `[http.auth]` everyone is an operator; the daemon then listens
//! on loopback only (checked with the configuration), and forms still
//! carry a per-process CSRF token so that another site cannot post them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ring::rand::SecureRandom as _;

use crate::config::AuthConfig;
pub use crate::config::Role;

/// The session cookie.
pub const SESSION_COOKIE: &str = "faultline_session";
/// The cookie that ties a sign-in form to the browser that fetched it.
pub const LOGIN_COOKIE: &str = "faultline_login";
/// Sessions kept at once; past it the least recently used goes.
const MAX_SESSIONS: usize = 10_000;
/// Password checks at once (each argon2 check takes about 19 MiB and tens of ms).
const MAX_SIGN_INS: usize = 2;

/// How a request was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// No `[http.auth]`: everyone may do everything.
    Open,
    Session,
    Token,
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Who {
    /// The user or token name (none when auth is off).
    pub name: Option<String>,
    pub role: Role,
    /// The token forms must carry (none for bearer tokens, which post no forms).
    pub csrf: Option<String>,
    pub via: Via,
}

impl Who {
    pub fn may_change(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether a form's CSRF field is this caller's.
    pub fn csrf_ok(&self, field: &str) -> bool {
        self.csrf.as_deref().is_some_and(|c| same(c.as_bytes(), field.as_bytes()))
    }
}

struct Session {
    user: String,
    role: Role,
    csrf: String,
    last_used: Instant,
}

/// Users, tokens and open sessions.
pub struct Auth {
    enabled: bool,
    users: HashMap<String, (String, Role)>,
    tokens: Vec<([u8; 32], String, Role)>,
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    secure: bool,
    open_csrf: String,
    /// Checked for unknown names so that a wrong name takes as long as a wrong password.
    decoy: String,
    sign_ins: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enabled", &self.enabled).field("users", &self.users.len()).finish()
    }
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The system's random source failing is not something to carry on from.
    ring::rand::SystemRandom::new().fill(&mut b).expect("the system random source works");
    hex(&b)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256(text: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An argon2id hash of `password` in PHC form.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "the system random source failed".to_owned())?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier as _;
    argon2::PasswordHash::new(phc)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Auth {
    /// No authentication: everyone is an operator.
    pub fn open() -> Auth {
        Auth {
            enabled: false,
            users: HashMap::new(),
            tokens: Vec::new(),
            sessions: Mutex::new(HashMap::new()),
            ttl: Duration::ZERO,
            secure: false,
            open_csrf: random_token(),
            decoy: String::new(),
            sign_ins: tokio::sync::Semaphore::new(MAX_SIGN_INS),
        }
    }

    /// From `[http.auth]` (checked by the configuration already); `secure`: served over TLS.
    pub fn from_config(config: Option<&AuthConfig>, secure: bool) -> Result<Auth, String> {
        let mut a = Auth::open();
        a.secure = secure;
        let Some(c) = config else { return Ok(a) };
        let (users, tokens) = c.entries()?;
        a.enabled = true;
        a.ttl = c.session_ttl;
        a.users = users.into_iter().map(|u| (u.name, (u.password_hash, u.role))).collect();
        for t in tokens {
            let h = unhex(&t.sha256).ok_or_else(|| format!("token {:?}: sha256 is not 64 hex digits", t.name))?;
            a.tokens.push((h, t.name, t.role));
        }
        a.decoy = hash_password(&random_token())?;
        Ok(a)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Who sent a request: a bearer token, a live session, or anyone when auth is off.
    pub fn identify(&self, headers: &HeaderMap) -> Option<Who> {
        if !self.enabled {
            return Some(Who { name: None, role: Role::Operator, csrf: Some(self.open_csrf.clone()), via: Via::Open });
        }
        if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
            let h = sha256(token);
            // Every entry is compared, so the time says nothing about which matched.
            let mut found = None;
            for (th, name, role) in &self.tokens {
                if same(th, &h) {
                    found = Some((name.clone(), *role));
                }
            }
            let (name, role) = found?;
            return Some(Who { name: Some(name), role, csrf: None, via: Via::Token });
        }
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(id)?;
        if s.last_used.elapsed() > self.ttl {
            sessions.remove(id);
            return None;
        }
        s.last_used = Instant::now();
        Some(Who { name: Some(s.user.clone()), role: s.role, csrf: Some(s.csrf.clone()), via: Via::Session })
    }

    /// Checks a password; on success opens a session and returns its id.
    pub async fn sign_in(&self, name: &str, password: &str) -> Option<String> {
        let _permit = self.sign_ins.acquire().await.ok()?;
        let (hash, role) = match self.users.get(name) {
            Some((h, r)) => (h.clone(), Some(*r)),
            None => (self.decoy.clone(), None),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify(&password, &hash)).await.unwrap_or(false);
        let role = role.filter(|_| ok)?;
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.last_used.elapsed() <= self.ttl);
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session { user: name.to_owned(), role, csrf: random_token(), last_used: Instant::now() },
        );
        Some(id)
    }

    /// Ends the request's session, if it has one.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
    }

    /// A `Set-Cookie` value; an empty value with max-age 0 removes the cookie.
    pub fn set_cookie(&self, name: &str, value: &str, path: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        let age = if value.is_empty() { "; Max-Age=0" } else { "" };
        format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}{age}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenConfig, UserConfig};

    fn config() -> AuthConfig {
        AuthConfig {
            user: vec![
                UserConfig {
                    name: "ana".into(),
                    password_hash: hash_password("pump-room").unwrap(),
                    role: Role::Operator,
                },
                UserConfig {
                    name: "viv".into(),
                    password_hash: hash_password("look-only").unwrap(),
                    role: Role::Viewer,
                },
            ],
            token: vec![TokenConfig { name: "grafana".into(), sha256: hex(&sha256("t0ken")), role: Role::Viewer }],
            users_file: None,
            session_ttl: Duration::from_secs(3600),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn passwords_sessions_tokens_and_roles() {
        let a = Auth::from_config(Some(&config()), false).unwrap();
        assert!(a.identify(&headers(&[])).is_none(), "nobody without credentials");
        assert!(a.sign_in("ana", "wrong").await.is_none());
        assert!(a.sign_in("nobody", "pump-room").await.is_none());
        let id = a.sign_in("ana", "pump-room").await.expect("right password");
        let cookie = format!("other=1; {SESSION_COOKIE}={id}");
        let who = a.identify(&headers(&[("cookie", &cookie)])).expect("session");
        assert_eq!((who.name.as_deref(), who.role, who.via), (Some("ana"), Role::Operator, Via::Session));
        assert!(who.may_change());
        let csrf = who.csrf.clone().unwrap();
        assert!(who.csrf_ok(&csrf) && !who.csrf_ok("") && !who.csrf_ok(&random_token()));
        assert!(a.identify(&headers(&[("cookie", &format!("{SESSION_COOKIE}={}", random_token()))])).is_none());

        let viewer = a.sign_in("viv", "look-only").await.unwrap();
        let who = a.identify(&headers(&[("cookie", &format!("{SESSION_COOKIE}={viewer}"))])).unwrap();
        assert!(!who.may_change(), "viewers read only");

        let who = a.identify(&headers(&[("authorization", "Bearer t0ken")])).expect("token");
        assert_eq!((who.name.as_deref(), who.role, who.via), (Some("grafana"), Role::Viewer, Via::Token));
        assert!(who.csrf.is_none());
        assert!(a.identify(&headers(&[("authorization", "Bearer t0ken2")])).is_none());
        // A wrong token is not rescued by a good cookie.
        assert!(a.identify(&headers(&[("authorization", "Bearer x"), ("cookie", &cookie)])).is_none());

        a.sign_out(&headers(&[("cookie", &cookie)]));
        assert!(a.identify(&headers(&[("cookie", &cookie)])).is_none(), "signed out");
    }

    #[tokio::test]
    async fn sessions_expire_when_unused() {
        let mut c = config();
        c.session_ttl = Duration::from_millis(50);
        let a = Auth::from_config(Some(&c), true).unwrap();
        let id = a.sign_in("ana", "pump-room").await.unwrap();
        let h = headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]);
        assert!(a.identify(&h).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(a.identify(&h).is_none());
        assert!(a.set_cookie(SESSION_COOKIE, "x", "/").contains("; Secure"));
    }

    #[test]
    fn open_means_operator_with_a_csrf_token() {
        let a = Auth::open();
        let who = a.identify(&HeaderMap::new()).unwrap();
        assert_eq!((who.role, who.via), (Role::Operator, Via::Open));
        assert!(who.csrf.as_deref().is_some_and(|c| c.len() == 64));
        assert!(!a.set_cookie(SESSION_COOKIE, "", "/").contains("Secure"));
    }
}
