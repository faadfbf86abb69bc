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
//! of a close's burst (README "Where the memory goes", 30).
//!
//! Key: the id, u64 BE. Value: postcard `Vec<String>`. The id is FNV-1a
//! over the names; a different list already under it (a collision) takes
//! the next free id. An id is only ever a key: a list is found by the id
//! its records hold, whatever hash made it.

use std::sync::Arc;

use super::StateError;

/// Lists kept decoded in memory: a daemon sees one per model it loaded.
const KNOWN: usize = 16;

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
    /// Lists by id, in the order they were first used; at most [`KNOWN`],
    /// the oldest going first.
    known: std::sync::Mutex<Vec<(u64, Arc<[String]>)>>,
    /// Ids looked for and not found, logged once.
    missing: std::sync::Mutex<Vec<u64>>,
}

impl FeatureNames {
    pub fn open(db: &sled::Db) -> Result<FeatureNames, StateError> {
        Ok(FeatureNames {
            tree: db.open_tree("feature_names")?,
            known: std::sync::Mutex::new(Vec::new()),
            missing: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn remember(known: &mut Vec<(u64, Arc<[String]>)>, id: u64, names: Arc<[String]>) {
        if known.len() >= KNOWN {
            known.remove(0);
        }
        known.push((id, names));
    }

    /// The id of `names`, stored under it the first time.
    pub fn id(&self, names: &Arc<[String]>) -> Result<u64, StateError> {
        self.id_of(names.iter().map(String::as_str), Some(names))
    }

    /// The id of the names `names` gives, stored under it the first time
    /// (`shared`: the same names, already as a list).
    pub fn id_of<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
        shared: Option<&Arc<[String]>>,
    ) -> Result<u64, StateError> {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The model's own list, mostly: the same allocation.
        let same = |n: &Arc<[String]>| {
            shared.is_some_and(|s| Arc::ptr_eq(n, s)) || n.iter().map(String::as_str).eq(names.clone())
        };
        if let Some((id, _)) = known.iter().rev().find(|(_, n)| same(n)) {
            return Ok(*id);
        }
        let list: Vec<&str> = names.collect();
        let encoded = super::encode(&list)?;
        let mut id = hash(&list);
        loop {
            match self.tree.compare_and_swap(id.to_be_bytes(), None::<&[u8]>, Some(encoded.as_slice()))? {
                Ok(()) => break,
                Err(e) if e.current.as_deref() == Some(encoded.as_slice()) => break,
                Err(_) => id = id.wrapping_add(1),
            }
        }
        let list = shared.cloned().unwrap_or_else(|| list.iter().map(|n| (*n).to_owned()).collect());
        Self::remember(&mut known, id, list);
        Ok(id)
    }

    /// The list stored under `id`, if any. A list not found is logged,
    /// once for each id (up to [`KNOWN`] of them).
    pub fn get(&self, id: u64) -> Result<Option<Arc<[String]>>, StateError> {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, n)) = known.iter().find(|(i, _)| *i == id) {
            return Ok(Some(n.clone()));
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
            let id = f.id(&a).unwrap();
            // The same names in another allocation: the same id, no new entry.
            assert_eq!(f.id(&list(&["Temperature.mean", "Temperature.std"])).unwrap(), id);
            assert_ne!(f.id(&list(&["Temperature.mean"])).unwrap(), id);
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
        assert_eq!(f.id(&a).unwrap(), id);
    }

    #[test]
    fn a_collision_takes_the_next_id_and_both_lists_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        let (a, b) = (list(&["a.mean"]), list(&["b.mean"]));
        // Another list already under `a`'s hash, as a collision would leave it.
        f.tree.insert(hash(&a[..]).to_be_bytes(), super::super::encode(&&*b).unwrap()).unwrap();
        let id = f.id(&a).unwrap();
        assert_eq!(id, hash(&a[..]).wrapping_add(1));
        assert_eq!(f.get(id).unwrap().as_deref(), Some(&*a));
        assert_eq!(f.get(hash(&a[..])).unwrap().as_deref(), Some(&*b));
    }

    #[test]
    fn the_lists_kept_in_memory_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = FeatureNames::open(&db).unwrap();
        let ids: Vec<u64> = (0..KNOWN + 5).map(|i| f.id(&list(&[&format!("s{i}.mean")])).unwrap()).collect();
        assert_eq!(f.known.lock().unwrap().len(), KNOWN);
        // The first ones left memory, not the tree.
        assert_eq!(f.get(ids[0]).unwrap().as_deref(), Some(&*list(&["s0.mean"])));
    }
}
