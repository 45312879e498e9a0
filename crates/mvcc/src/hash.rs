//! The hashes members compare to find one that diverged: of the keyspace up to a revision
//! (etcd's HashKV), and of every record but the per-member meta (etcd's Hash).

use crate::backend::{CLUSTER, KV, LEASE};
use crate::error::{backend_err, StoreError};
use crate::revision::KeyRevision;
use redb::{ReadTransaction, ReadableTable};
use std::collections::HashSet;

/// Revisions at or below a compaction point that are still reachable; records below it
/// that are not are left out (their deletion may not have reached them yet).
pub(crate) type Reachable = (i64, HashSet<KeyRevision>);

/// Feeds every KV record up to backend key `upto` into `crc`.
fn hash_kv_records(
    rx: &ReadTransaction,
    upto: u128,
    reachable: Option<&Reachable>,
    crc: &mut crc32fast::Hasher,
) -> Result<(), StoreError> {
    let kv = rx.open_table(KV).map_err(backend_err)?;
    for item in kv.range(..=upto).map_err(backend_err)? {
        let (k, v) = item.map_err(backend_err)?;
        if let Some((compacted, held)) = reachable {
            let rev = KeyRevision::from_backend_key(k.value());
            if rev.main <= *compacted && !held.contains(&rev) {
                continue;
            }
        }
        crc.update(&k.value().to_be_bytes());
        crc.update(v.value());
    }
    Ok(())
}

/// A CRC of every KV record up to revision `rev`.
pub(crate) fn hash_kv(
    rx: &ReadTransaction,
    rev: i64,
    reachable: Option<&Reachable>,
) -> Result<u32, StoreError> {
    let upto = KeyRevision::new(rev, i64::MAX).to_backend_key();
    let mut crc = crc32fast::Hasher::new();
    hash_kv_records(rx, upto, reachable, &mut crc)?;
    Ok(crc.finalize())
}

/// A CRC of every record but the meta ones (applied index and such differ by member).
pub(crate) fn hash_all(rx: &ReadTransaction) -> Result<u32, StoreError> {
    let mut crc = crc32fast::Hasher::new();
    hash_kv_records(rx, u128::MAX, None, &mut crc)?;
    let cluster = rx.open_table(CLUSTER).map_err(backend_err)?;
    for item in cluster.iter().map_err(backend_err)? {
        let (k, v) = item.map_err(backend_err)?;
        crc.update(k.value().as_bytes());
        crc.update(v.value());
    }
    let lease = rx.open_table(LEASE).map_err(backend_err)?;
    for item in lease.iter().map_err(backend_err)? {
        let (k, v) = item.map_err(backend_err)?;
        crc.update(&k.value().to_le_bytes());
        crc.update(v.value());
    }
    Ok(crc.finalize())
}
