//! The `feature_names` tree: every list of names a history record was
//! stored with, once, under a 64-bit id. An `alert_history` record holds
//! its window's feature values and the id of their names; a
//! `window_groups` record its signals' means and deviations and the id of
//! the signals' names; neither holds the names themselves.
//!
//! Why: the names were most of a record. With the shipped model an alert
//! record was ~1.6 KB, ~1 KB of it the same 56 names, and a window record
//! ~280 bytes, ~105 of them its 8 signal names. A window close of the
//! 10,000-device soak wrote ~3,800 alert records and 10,000 window
//! records, and sled held them in its leaves and cache, the largest part
//! of a close's burst (benches/RESULTS.md, 30).
//!
//! Key: the id, u64 BE. Value: postcard `Vec<String>`. The id is FNV-1a
//! over the names; a different list already under it (a collision) takes
//! the next free id. An id is only ever a key: a list is found by the id
//! its records hold, whatever hash made it.
//!
//! The tree holds at most [`MAX_LISTS`] lists. Devices that report
//! different sets of signals each add a list, and a stream of ever new
//! names would add them without end: once the tree is full, a record
//! whose names are not in it holds them itself, as records did before
//! there was a names table (the decoders read both), and
//! [`FeatureNames::inline`] counts it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::StateError;

/// Lists kept decoded in memory: a daemon sees one per model it loaded,
/// and one per set of signals its devices report.
const KNOWN: usize = 16;

/// Lists the tree holds at most: a plant's sets of signals and models,
/// many times over. A list of 8 signals is ~130 bytes, of the shipped
/// model's 56 features ~1.3 KB.
pub const MAX_LISTS: usize = 1024;

/// FNV-1a over the names, each followed by a 0 byte.
fn hash(names: &[impl AsRef<str>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in names.iter().flat_map(|n| n.as_ref().bytes().chain([0])) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub struct FeatureNames {
    pub(super) tree: sled::Tree,
    /// Lists by id, the one used last at the end; at most [`KNOWN`], the
    /// one unused longest going first.
    known: std::sync::Mutex<Vec<(u64, Arc<[String]>)>>,
    /// Ids looked for and not found, logged once.
    missing: std::sync::Mutex<Vec<u64>>,
    /// Lists in the tree, and the most it may hold ([`MAX_LISTS`]).
    lists: AtomicUsize,
    max: usize,
    /// Records that hold their names themselves, the tree being full.
    inline: AtomicU64,
}

impl FeatureNames {
    pub fn open(db: &sled::Db) -> Result<FeatureNames, StateError> {
        Self::open_with(db, MAX_LISTS)
    }

    /// [`FeatureNames::open`] with a tree of at most `max` lists.
    pub(super) fn open_with(db: &sled::Db, max: usize) -> Result<FeatureNames, StateError> {
        let tree = db.open_tree("feature_names")?;
        Ok(FeatureNames {
            lists: AtomicUsize::new(tree.len()),
            tree,
            known: std::sync::Mutex::new(Vec::new()),
            missing: std::sync::Mutex::new(Vec::new()),
            max,
            inline: AtomicU64::new(0),
        })
    }

    fn remember(known: &mut Vec<(u64, Arc<[String]>)>, id: u64, names: Arc<[String]>) {
        if known.len() >= KNOWN {
            known.remove(0);
        }
        known.push((id, names));
    }

    /// The list at `i` of `known`, moved to the end: the last to go.
    fn used(known: &mut [(u64, Arc<[String]>)], i: usize) -> &(u64, Arc<[String]>) {
        known[i..].rotate_left(1);
        &known[known.len() - 1]
    }

    /// Records stored with their names, the tree being full, since the
    /// store opened.
    pub fn inline(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }

    /// The id of `names`, stored under it the first time; `None` when the
    /// list is not stored and the tree is full: the record holds the names.
    pub fn id(&self, names: &Arc<[String]>) -> Result<Option<u64>, StateError> {
        self.id_of(names.iter().map(String::as_str), Some(names))
    }

    /// The id of the names `names` gives, stored under it the first time
    /// (`shared`: the same names, already as a list); `None` when the list
    /// is not stored and the tree is full.
    pub fn id_of<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
        shared: Option<&Arc<[String]>>,
    ) -> Result<Option<u64>, StateError> {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The model's own list, mostly: the same allocation.
        let same = |n: &Arc<[String]>| {
            shared.is_some_and(|s| Arc::ptr_eq(n, s)) || n.iter().map(String::as_str).eq(names.clone())
        };
        if let Some(i) = known.iter().rposition(|(_, n)| same(n)) {
            return Ok(Some(Self::used(&mut known, i).0));
        }
        let list: Vec<&str> = names.collect();
        let encoded = super::encode(&list)?;
        let mut id = hash(&list);
        // The list under its hash, or after the lists that collided there.
        loop {
            match self.tree.get(id.to_be_bytes())? {
                Some(v) if v == encoded.as_slice() => break,
                Some(_) => id = id.wrapping_add(1),
                None if self.lists.load(Ordering::Relaxed) >= self.max => {
                    if self.inline.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(
                            "the state holds {} lists of feature and signal names, its most: \
                             history records with other names hold them themselves",
                            self.max
                        );
                    }
                    return Ok(None);
                }
                None => match self.tree.compare_and_swap(id.to_be_bytes(), None::<&[u8]>, Some(encoded.as_slice()))? {
                    Ok(()) => {
                        self.lists.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if e.current.as_deref() == Some(encoded.as_slice()) => break,
                    Err(_) => id = id.wrapping_add(1),
                },
            }
        }
        let list = shared.cloned().unwrap_or_else(|| list.iter().map(|n| (*n).to_owned()).collect());
        Self::remember(&mut known, id, list);
        Ok(Some(id))
    }

    /// The list stored under `id`, if any. A list not found is logged,
    /// once for each id (up to [`KNOWN`] of them).
    pub fn get(&self, id: u64) -> Result<Option<Arc<[String]>>, StateError> {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = known.iter().position(|(i, _)| *i == id) {
            return Ok(Some(Self::used(&mut known, i).1.clone()));
        }
        let key = id.to_be_bytes();
        let Some(v) = self.tree.get(key)? else {
            let mut missing = self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if missing.len() < KNOWN && !missing.contains(&id) {
                missing.push(id);
                tracing::warn!(
                    "a list of names history records refer to ({id:016x}) is not in the state: \
                     they read without their features or signals"
                );
            }
            return Ok(None);
        };
        let names: Arc<[String]> = super::decode::<Vec<String>>("feature_names", &key, &v)?.into();
        Self::remember(&mut known, id, names.clone());
        Ok(Some(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Arc<[String]> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_list_is_stored_once_and_found_again_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = list(&["Temperature.mean", "Temperature.std"]);
        let id = {
            let db = sled::open(dir.path()).unwrap();
            let f = FeatureNames::open(&db).unwrap();
            let id = f.id(&a).unwrap().unwrap();
            // The same names in another allocation: the same id, no new entry.
            assert_eq!(f.id(&list(&["Temperature.mean", "Temperature.std"])).unwrap(), Some(id));
            assert_ne!(f.id(&list(&["Temperature.mean"])).unwrap(), Some(id));
            assert_eq!(f.tree.len(), 2);
            db.flush().unwrap();
            id
        };
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        assert_eq!(f.get(id).unwrap().as_deref(), Some(&*a));
        assert_eq!(f.get(id ^ 1).unwrap(), None);
        assert_eq!(f.get(id ^ 1).unwrap(), None);
        assert_eq!(*f.missing.lock().unwrap(), [id ^ 1], "a list not found is logged once");
        assert_eq!(f.id(&a).unwrap().unwrap(), id);
    }

    #[test]
    fn a_collision_takes_the_next_id_and_both_lists_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        let (a, b) = (list(&["a.mean"]), list(&["b.mean"]));
        // Another list already under `a`'s hash, as a collision would leave it.
        f.tree.insert(hash(&a[..]).to_be_bytes(), super::super::encode(&&*b).unwrap()).unwrap();
        let id = f.id(&a).unwrap().unwrap();
        assert_eq!(id, hash(&a[..]).wrapping_add(1));
        assert_eq!(f.get(id).unwrap().as_deref(), Some(&*a));
        assert_eq!(f.get(hash(&a[..])).unwrap().as_deref(), Some(&*b));
    }

    #[test]
    fn the_lists_kept_in_memory_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        let ids: Vec<u64> = (0..KNOWN + 5).map(|i| f.id(&list(&[&format!("s{i}.mean")])).unwrap().unwrap()).collect();
        assert_eq!(f.known.lock().unwrap().len(), KNOWN);
        // The first ones left memory, not the tree.
        assert_eq!(f.get(ids[0]).unwrap().as_deref(), Some(&*list(&["s0.mean"])));
    }

    #[test]
    fn a_full_tree_takes_no_new_list_and_keeps_giving_the_ids_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let db = sled::open(dir.path()).unwrap();
            let f = FeatureNames::open_with(&db, 3).unwrap();
            let ids: Vec<u64> = (0..3).map(|i| f.id(&list(&[&format!("s{i}.mean")])).unwrap().unwrap()).collect();
            assert_eq!(f.id(&list(&["s3.mean"])).unwrap(), None, "full");
            assert_eq!(f.id(&list(&["s4.mean"])).unwrap(), None);
            assert_eq!((f.tree.len(), f.inline()), (3, 2));
            db.flush().unwrap();
            ids[0]
        };
        // Counted from the tree when it opens again; its lists still found,
        // from the tree, not only from memory.
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open_with(&db, 3).unwrap();
        assert_eq!(f.id(&list(&["s0.mean"])).unwrap(), Some(id));
        assert_eq!(f.id(&list(&["s3.mean"])).unwrap(), None);
        assert_eq!(f.inline(), 1);
        // A larger bound takes new lists again.
        let f = FeatureNames::open_with(&db, 4).unwrap();
        assert!(f.id(&list(&["s3.mean"])).unwrap().is_some());
        assert_eq!(f.tree.len(), 4);
    }

    #[test]
    fn the_list_used_last_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        let first = list(&["first.mean"]);
        let id = f.id(&first).unwrap().unwrap();
        for i in 0..KNOWN * 2 {
            f.id(&list(&[&format!("s{i}.mean")])).unwrap();
            // The first list in use all along, as a model's is: found in
            // memory, it moves to the end, the last to go.
            assert_eq!(f.id(&first).unwrap(), Some(id));
            let known = f.known.lock().unwrap();
            assert_eq!(known.last().map(|(i, _)| *i), Some(id));
            assert_eq!(known.iter().filter(|(i, _)| *i == id).count(), 1);
        }
        // The model's own allocation, not a copy.
        assert!(f.known.lock().unwrap().iter().any(|(i, n)| *i == id && Arc::ptr_eq(n, &first)));
    }
}
