//! The watchers of a store, as etcd's watcher group keeps them: synced ones found by key (or
//! among the range watchers) when an event comes, unsynced ones waiting to catch up.

use crate::key_range::KeyRange;
use crate::watch::{WatchKey, Watcher};
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub(crate) struct WatcherGroup {
    watchers: HashMap<WatchKey, Watcher>,
    /// Synced watchers of one key, by key; synced range watchers.
    by_key: HashMap<Vec<u8>, HashSet<WatchKey>>,
    ranges: HashSet<WatchKey>,
    unsynced: HashSet<WatchKey>,
}

impl WatcherGroup {
    /// Adds a watcher, unsynced.
    pub fn insert(&mut self, key: WatchKey, watcher: Watcher) {
        self.watchers.insert(key, watcher);
        self.unsynced.insert(key);
    }

    pub fn get(&self, key: &WatchKey) -> Option<&Watcher> {
        self.watchers.get(key)
    }

    pub fn get_mut(&mut self, key: &WatchKey) -> Option<&mut Watcher> {
        self.watchers.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Every watch of `stream`.
    pub fn of_stream(&self, stream: u64) -> Vec<WatchKey> {
        self.watchers
            .keys()
            .filter(|k| k.0 == stream)
            .copied()
            .collect()
    }

    pub fn unsynced(&self) -> impl Iterator<Item = (WatchKey, &Watcher)> + '_ {
        self.unsynced
            .iter()
            .filter_map(|k| self.watchers.get(k).map(|w| (*k, w)))
    }

    pub fn unsynced_count(&self) -> usize {
        self.unsynced.len()
    }

    pub fn unsynced_keys(&self) -> Vec<WatchKey> {
        self.unsynced.iter().copied().collect()
    }

    pub fn make_synced(&mut self, key: WatchKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = true;
        self.unsynced.remove(&key);
        match &w.spec.range {
            KeyRange::Single(k) => {
                self.by_key.entry(k.clone()).or_default().insert(key);
            }
            _ => {
                self.ranges.insert(key);
            }
        }
    }

    pub fn make_unsynced(&mut self, key: WatchKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = false;
        self.unsynced.insert(key);
        match &w.spec.range {
            KeyRange::Single(k) => {
                if let Some(set) = self.by_key.get_mut(k) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_key.remove(k);
                    }
                }
            }
            _ => {
                self.ranges.remove(&key);
            }
        }
    }

    /// Synced watchers still waiting for revision `rev` or an earlier one.
    pub fn synced_from(&self, rev: i64) -> Vec<WatchKey> {
        self.watchers
            .iter()
            .filter(|(_, w)| w.synced && w.next <= rev)
            .map(|(k, _)| *k)
            .collect()
    }

    /// After the store was replaced wholesale: every watcher catches up from history.
    pub fn unsync_all(&mut self) {
        let keys: Vec<WatchKey> = self.watchers.keys().copied().collect();
        for k in keys {
            self.make_unsynced(k);
        }
    }

    pub fn remove(&mut self, key: WatchKey) -> bool {
        self.make_unsynced(key);
        self.unsynced.remove(&key);
        self.watchers.remove(&key).is_some()
    }

    /// Synced watchers that may want an event on `key`.
    pub fn targets(&self, key: &[u8]) -> Vec<WatchKey> {
        let mut out: Vec<WatchKey> = self
            .by_key
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        out.extend(self.ranges.iter().copied());
        out
    }
}
