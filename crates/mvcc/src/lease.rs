//! Leases as the store keeps them: which exist (with their TTLs, in the backend), and which
//! keys each one holds (rebuilt from the keys' latest versions on open). Expiry is the
//! server's business: here a lease is only granted, checkpointed or revoked; deleting a
//! revoked lease's keys is the store's.

use crate::backend::LEASE;
use crate::error::{backend_err, BackendError, StoreError};
use crate::key_range::KeyRange;
use oxcd_api::EtcdError;
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The TTL granted, in seconds.
    pub ttl: i64,
    /// The remaining TTL last checkpointed through raft (0: none).
    pub remaining_ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Leases {
    by_id: HashMap<i64, LeaseInfo>,
    key_lease: HashMap<Vec<u8>, i64>,
}

pub(crate) fn encode(ttl: i64, remaining: i64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ttl.to_le_bytes());
    b[8..].copy_from_slice(&remaining.to_le_bytes());
    b
}

pub(crate) fn decode(b: &[u8]) -> (i64, i64) {
    let mut t = [0u8; 8];
    let mut r = [0u8; 8];
    if b.len() == 16 {
        t.copy_from_slice(&b[..8]);
        r.copy_from_slice(&b[8..]);
    }
    (i64::from_le_bytes(t), i64::from_le_bytes(r))
}

fn save(tx: &WriteTransaction, id: i64, ttl: i64, remaining: i64) -> Result<(), StoreError> {
    tx.open_table(LEASE)
        .map_err(backend_err)?
        .insert(id, encode(ttl, remaining).as_slice())
        .map_err(backend_err)?;
    Ok(())
}

impl Leases {
    /// The leases in the backend, holding the keys whose latest version names them.
    pub fn load(db: &Database, key_lease: HashMap<Vec<u8>, i64>) -> Result<Leases, BackendError> {
        let rx = db.begin_read()?;
        let table = rx.open_table(LEASE)?;
        let mut leases = Leases::default();
        for item in table.iter()? {
            let (k, v) = item?;
            let (ttl, remaining_ttl) = decode(v.value());
            leases.by_id.insert(
                k.value(),
                LeaseInfo {
                    ttl,
                    remaining_ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for (key, lease) in key_lease {
            leases.attach(&key, lease);
        }
        Ok(leases)
    }

    pub fn get(&self, id: i64) -> Option<&LeaseInfo> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every lease ID with its granted TTL and checkpointed remaining TTL.
    pub fn list(&self) -> Vec<(i64, i64, i64)> {
        self.by_id
            .iter()
            .map(|(id, i)| (*id, i.ttl, i.remaining_ttl))
            .collect()
    }

    pub fn exists(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// `key`'s latest version carries `lease` (0: none).
    pub fn attach(&mut self, key: &[u8], lease: i64) {
        self.detach(key);
        if lease != 0 {
            if let Some(l) = self.by_id.get_mut(&lease) {
                l.keys.insert(key.to_vec());
                self.key_lease.insert(key.to_vec(), lease);
            }
        }
    }

    pub fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.key_lease.remove(key) {
            if let Some(l) = self.by_id.get_mut(&old) {
                l.keys.remove(key);
            }
        }
    }

    pub fn grant(&mut self, tx: &WriteTransaction, id: i64, ttl: i64) -> Result<(), StoreError> {
        if self.exists(id) {
            return Err(EtcdError::LeaseExist.into());
        }
        save(tx, id, ttl, 0)?;
        self.by_id.insert(
            id,
            LeaseInfo {
                ttl,
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn checkpoint(
        &mut self,
        tx: &WriteTransaction,
        id: i64,
        remaining_ttl: i64,
    ) -> Result<(), StoreError> {
        let Some(l) = self.by_id.get_mut(&id) else {
            return Ok(()); // revoked meanwhile: nothing to remember
        };
        l.remaining_ttl = remaining_ttl;
        save(tx, id, l.ttl, remaining_ttl)
    }

    /// The keys lease `id` holds (none if there is no such lease).
    pub fn keys_held(&self, id: i64) -> Vec<Vec<u8>> {
        self.by_id
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The keys lease `id` holds, each a range to delete when it is revoked.
    pub fn keys_of(&self, id: i64) -> Result<Vec<KeyRange>, StoreError> {
        match self.by_id.get(&id) {
            Some(l) => Ok(l.keys.iter().cloned().map(KeyRange::Single).collect()),
            None => Err(EtcdError::LeaseNotFound.into()),
        }
    }

    /// Forgets lease `id` (its keys deleted already).
    pub fn remove(&mut self, tx: &WriteTransaction, id: i64) -> Result<(), StoreError> {
        tx.open_table(LEASE)
            .map_err(backend_err)?
            .remove(id)
            .map_err(backend_err)?;
        self.by_id.remove(&id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvstore::{Store, WriteBatch};
    use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};
    use oxcd_api::LeaseId;

    fn put(wb: &mut WriteBatch<'_>, key: &str, lease: i64) -> Result<(), StoreError> {
        wb.put(&PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
        .map(|_| ())
    }

    #[test]
    fn revoke_deletes_the_leases_keys_in_one_revision_and_reopen_remembers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).expect("open");
            let mut wb = store.begin_write().expect("write");
            assert!(matches!(
                put(&mut wb, "k", 7),
                Err(StoreError::Request(EtcdError::LeaseNotFound))
            ));
            wb.lease_grant(LeaseId(7), 60).expect("grant");
            assert!(matches!(
                wb.lease_grant(LeaseId(7), 60),
                Err(StoreError::Request(EtcdError::LeaseExist))
            ));
            wb.lease_grant(LeaseId(8), 60).expect("grant");
            for k in ["a", "b", "c"] {
                put(&mut wb, k, 7).expect("put");
            }
            put(&mut wb, "c", 8).expect("moves c to lease 8");
            wb.lease_checkpoint(LeaseId(7), 42).expect("checkpoint");
            wb.commit(true).expect("commit");
        }
        let store = Store::open(&path).expect("reopen");
        let l7 = store.lease(LeaseId(7)).expect("lease 7");
        assert_eq!((l7.ttl, l7.remaining_ttl), (60, 42));
        assert_eq!(l7.keys.len(), 2, "{l7:?}");
        let before = store.current_revision();
        let mut wb = store.begin_write().expect("write");
        let rev = wb.lease_revoke(LeaseId(7)).expect("revoke");
        wb.commit(true).expect("commit");
        assert_eq!(rev, before + 1, "both keys go in one revision");
        let all = store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .expect("range");
        let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, vec![b"c".as_slice()]);
        assert!(store.lease(LeaseId(7)).is_none());
        assert_eq!(store.lease(LeaseId(8)).expect("lease 8").keys.len(), 1);
    }
}
