//! The running model, swapped without a restart.
//!
//! [`ModelHandle::reload_if_changed`] looks at the package's files (their
//! contents, not their times, so a copy that keeps the mtime is seen too);
//! when they changed it loads and checks the new package and, only if it
//! is valid, swaps the `Arc` the scoring stage reads between batches. A bad
//! package is refused and the running model stays; the refusal is reported
//! once per content, not at every look. The version that was replaced is
//! kept for [`ModelHandle::rollback`].

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{Model, ModelError};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are as they were.
    Unchanged,
    /// A new package is running; `(name, version)` before and after.
    Swapped { from: (String, String), to: (String, String) },
    /// The files changed but the package is refused; the running one stays.
    Refused(String),
    /// Refused before, and still the same bad files.
    StillRefused,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The package's content fingerprint; `None` when a file cannot be read.
fn fingerprint(dir: &Path) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in ["model.toml", "model.onnx"] {
        std::fs::read(dir.join(f)).ok()?.hash(&mut h);
    }
    Some(h.finish())
}

fn id(m: &Model) -> (String, String) {
    (m.package.name.clone(), m.package.version.clone())
}

/// The current model, the previous one, and what the package directory held when last looked at.
#[derive(Debug)]
pub struct ModelHandle {
    dir: RwLock<PathBuf>,
    current: RwLock<Arc<Model>>,
    previous: Mutex<Option<Arc<Model>>>,
    /// (fingerprint last looked at, whether it was refused)
    seen: Mutex<(Option<u64>, bool)>,
}

impl ModelHandle {
    /// Loads the package in `dir`; an error here means there is no model to run.
    pub fn load(dir: &Path) -> Result<ModelHandle, ModelError> {
        let seen = fingerprint(dir);
        let model = Model::load(dir)?;
        Ok(ModelHandle {
            dir: RwLock::new(dir.to_owned()),
            current: RwLock::new(Arc::new(model)),
            previous: Mutex::new(None),
            seen: Mutex::new((seen, false)),
        })
    }

    /// The package directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs the package in `dir` from now on (a changed `model.path` on
    /// SIGHUP); a package that does not load changes nothing.
    pub fn switch(&self, dir: &Path) -> Result<Reload, String> {
        let m = Model::load(dir).map_err(|e| crate::error_chain(&e))?;
        let new = Arc::new(m);
        *self.dir.write().unwrap_or_else(|e| e.into_inner()) = dir.to_owned();
        *lock(&self.seen) = (fingerprint(dir), false);
        let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), new.clone());
        let outcome = Reload::Swapped { from: id(&old), to: id(&new) };
        *lock(&self.previous) = Some(old);
        Ok(outcome)
    }

    /// The model to score the next batch with.
    pub fn current(&self) -> Arc<Model> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The version a rollback would return to.
    pub fn previous(&self) -> Option<Arc<Model>> {
        lock(&self.previous).clone()
    }

    /// Loads the package again if its files changed since the last look.
    pub fn reload_if_changed(&self) -> Reload {
        let now = fingerprint(&self.dir());
        let mut seen = lock(&self.seen);
        if now == seen.0 {
            return if seen.1 { Reload::StillRefused } else { Reload::Unchanged };
        }
        *seen = (now, false);
        drop(seen);
        let outcome = self.reload();
        if matches!(outcome, Reload::Refused(_)) {
            lock(&self.seen).1 = true;
        }
        outcome
    }

    /// Loads the package now (SIGHUP); a valid one replaces the running model.
    pub fn reload(&self) -> Reload {
        match Model::load(&self.dir()) {
            Err(e) => Reload::Refused(crate::error_chain(&e)),
            Ok(m) => {
                let new = Arc::new(m);
                let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), new.clone());
                let outcome = Reload::Swapped { from: id(&old), to: id(&new) };
                *lock(&self.previous) = Some(old);
                outcome
            }
        }
    }

    /// Returns to the previous model; the one it replaces becomes the
    /// previous, so a second rollback undoes the first.
    pub fn rollback(&self) -> Result<(String, String), String> {
        let mut prev = lock(&self.previous);
        let back = prev.take().ok_or("no previous model to roll back to")?;
        let to = id(&back);
        let replaced = std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), back);
        *prev = Some(replaced);
        Ok(to)
    }
}

/// A running watcher; dropping it (or [`Watcher::stop`]) stops the thread.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Stops the thread and waits for it (at most one interval).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ModelHandle {
    /// Looks at the package every `interval` on a thread of its own and
    /// swaps in a changed, valid package; `on_change` hears of every swap
    /// and refusal (the daemon logs it and updates its metrics).
    pub fn watch(
        self: &Arc<Self>,
        interval: std::time::Duration,
        on_change: impl Fn(&Reload) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (handle, flag) = (Arc::clone(self), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name("model-watch".into()).spawn(move || {
            // Sleep in short steps so a stop is noticed quickly.
            let step = interval.min(std::time::Duration::from_millis(100));
            let mut waited = std::time::Duration::ZERO;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited < interval {
                    continue;
                }
                waited = std::time::Duration::ZERO;
                let r = handle.reload_if_changed();
                if matches!(r, Reload::Swapped { .. } | Reload::Refused(_)) {
                    on_change(&r);
                }
            }
        })?;
        Ok(Watcher { stop, thread: Some(thread) })
    }
}
