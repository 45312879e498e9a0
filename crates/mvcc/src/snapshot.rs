//! The whole store as one byte stream, for a lagging member to start from: every table's
//! records from one read transaction, checked by a trailing CRC.

use crate::backend::{CLUSTER, KV, LEASE, META, META_MEMBER_ID};
use crate::error::{snapshot_backend_err as redb_err, SnapshotError};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"OXSNAP1\n";
const END: u8 = 0;
pub(crate) const TAG_KV: u8 = 1;
const TAG_META: u8 = 2;
const TAG_CLUSTER: u8 = 3;
const TAG_LEASE: u8 = 4;

/// The meta and cluster records a snapshot carried, as of its read transaction.
#[derive(Debug, Default, Clone)]
pub struct SnapshotPoint {
    pub meta: Vec<(String, u64)>,
    pub cluster: Vec<(String, Vec<u8>)>,
}

impl SnapshotPoint {
    pub fn meta(&self, name: &str) -> Option<u64> {
        self.meta.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    pub fn cluster(&self, name: &str) -> Option<&[u8]> {
        self.cluster
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Crc<W> {
    fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let mut head = [0u8; 9];
        head[0] = tag;
        head[1..5].copy_from_slice(&(key.len() as u32).to_le_bytes());
        head[5..9].copy_from_slice(&(value.len() as u32).to_le_bytes());
        for part in [&head[..], key, value] {
            self.crc.update(part);
            self.inner.write_all(part)?;
        }
        Ok(())
    }
}

/// Whether `path` holds a record stream (an oxcd backup from before etcd's format).
pub fn is_record_stream(path: &std::path::Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}

/// Reads a stream `write` made, handing each record on, and checks its CRC.
pub(crate) fn read_records<R: Read>(
    input: &mut R,
    mut each: impl FnMut(u8, Vec<u8>, Vec<u8>) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(SnapshotError::Corrupt("not an oxcd snapshot (bad magic)"));
    }
    let mut crc = crc32fast::Hasher::new();
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == END {
            let mut want = [0u8; 4];
            input.read_exact(&mut want)?;
            if crc.finalize() != u32::from_le_bytes(want) {
                return Err(SnapshotError::Corrupt("checksum mismatch"));
            }
            return Ok(());
        }
        let mut lens = [0u8; 8];
        input.read_exact(&mut lens)?;
        let klen = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let vlen = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        if klen > 1 << 30 || vlen > 1 << 30 {
            return Err(SnapshotError::Corrupt("record too long"));
        }
        let mut key = vec![0u8; klen];
        let mut value = vec![0u8; vlen];
        input.read_exact(&mut key)?;
        input.read_exact(&mut value)?;
        crc.update(&tag);
        crc.update(&lens);
        crc.update(&key);
        crc.update(&value);
        each(tag[0], key, value)?;
    }
}

/// Writes every record `rx` sees to `out`; returns the meta and cluster records written,
/// so the caller knows which raft index the stream stands for.
pub(crate) fn write<W: Write>(
    rx: &ReadTransaction,
    out: W,
) -> Result<SnapshotPoint, SnapshotError> {
    let mut w = Crc {
        inner: out,
        crc: crc32fast::Hasher::new(),
    };
    w.inner.write_all(MAGIC)?;
    let mut point = SnapshotPoint::default();
    let kv = rx.open_table(KV).map_err(redb_err)?;
    for item in kv.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        w.record(TAG_KV, &k.value().to_be_bytes(), v.value())?;
    }
    let meta = rx.open_table(META).map_err(redb_err)?;
    for item in meta.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        if k.value() == META_MEMBER_ID {
            continue;
        }
        w.record(TAG_META, k.value().as_bytes(), &v.value().to_le_bytes())?;
        point.meta.push((k.value().to_string(), v.value()));
    }
    let cluster = rx.open_table(CLUSTER).map_err(redb_err)?;
    for item in cluster.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        w.record(TAG_CLUSTER, k.value().as_bytes(), v.value())?;
        point
            .cluster
            .push((k.value().to_string(), v.value().to_vec()));
    }
    let lease = rx.open_table(LEASE).map_err(redb_err)?;
    for item in lease.iter().map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        w.record(TAG_LEASE, &k.value().to_le_bytes(), v.value())?;
    }
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&[END])?;
    w.inner.write_all(&crc.to_le_bytes())?;
    w.inner.flush()?;
    Ok(point)
}

/// Empties every table in `tx` but for this member's own ID.
pub(crate) fn clear_but_member_id(tx: &mut WriteTransaction) -> Result<(), SnapshotError> {
    let member_id = tx
        .open_table(META)
        .map_err(redb_err)?
        .get(META_MEMBER_ID)
        .map_err(redb_err)?
        .map(|g| g.value());
    tx.delete_table(KV).map_err(redb_err)?;
    tx.delete_table(META).map_err(redb_err)?;
    tx.delete_table(CLUSTER).map_err(redb_err)?;
    tx.delete_table(LEASE).map_err(redb_err)?;
    if let Some(id) = member_id {
        tx.open_table(META)
            .map_err(redb_err)?
            .insert(META_MEMBER_ID, id)
            .map_err(redb_err)?;
    }
    Ok(())
}

/// Replaces every table in `tx` with the records of a stream `write` made, but for this
/// member's own ID; the caller commits only if this succeeds (the stream is whole).
pub(crate) fn restore<R: Read>(
    tx: &mut WriteTransaction,
    input: R,
) -> Result<SnapshotPoint, SnapshotError> {
    let mut input = std::io::BufReader::new(input);
    clear_but_member_id(tx)?;
    let mut point = SnapshotPoint::default();
    {
        let mut kv = tx.open_table(KV).map_err(redb_err)?;
        let mut meta = tx.open_table(META).map_err(redb_err)?;
        let mut cluster = tx.open_table(CLUSTER).map_err(redb_err)?;
        let mut lease = tx.open_table(LEASE).map_err(redb_err)?;
        read_records(&mut input, |tag, key, value| {
            let text = |b: Vec<u8>| {
                String::from_utf8(b).map_err(|_| SnapshotError::Corrupt("table key not UTF-8"))
            };
            match tag {
                TAG_KV => {
                    let k: [u8; 16] = key
                        .try_into()
                        .map_err(|_| SnapshotError::Corrupt("revision key length"))?;
                    kv.insert(u128::from_be_bytes(k), value.as_slice())
                        .map_err(redb_err)?;
                }
                TAG_META => {
                    let v: [u8; 8] = value
                        .try_into()
                        .map_err(|_| SnapshotError::Corrupt("meta value length"))?;
                    let name = text(key)?;
                    meta.insert(name.as_str(), u64::from_le_bytes(v))
                        .map_err(redb_err)?;
                    point.meta.push((name, u64::from_le_bytes(v)));
                }
                TAG_CLUSTER => {
                    let name = text(key)?;
                    cluster
                        .insert(name.as_str(), value.as_slice())
                        .map_err(redb_err)?;
                    point.cluster.push((name, value));
                }
                TAG_LEASE => {
                    let k: [u8; 8] = key
                        .try_into()
                        .map_err(|_| SnapshotError::Corrupt("lease key length"))?;
                    lease
                        .insert(i64::from_le_bytes(k), value.as_slice())
                        .map_err(redb_err)?;
                }
                _ => return Err(SnapshotError::Corrupt("unknown record tag")),
            }
            Ok(())
        })?;
    }
    Ok(point)
}

#[cfg(test)]
mod tests {
    use crate::kvstore::Store;
    use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
    use oxcd_api::Revision;

    fn put(store: &Store, key: &str, value: &str) {
        let mut wb = store.begin_write().expect("write");
        wb.put(&PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .expect("put");
        wb.set_meta(crate::META_APPLIED_INDEX, 7).expect("meta");
        wb.commit(false).expect("commit");
    }

    #[test]
    fn restored_store_reads_and_hashes_as_the_original() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Store::open(&dir.path().join("a")).expect("open a");
        for i in 0..50 {
            put(&a, &format!("k{}", i % 7), &format!("v{i}"));
        }
        let mut wb = a.begin_write().expect("write");
        wb.delete_range(&DeleteRangeRequest {
            key: "k3".into(),
            ..Default::default()
        })
        .expect("delete");
        wb.compact(&CompactionRequest {
            revision: 20,
            physical: false,
        })
        .expect("compact");
        wb.set_cluster_record("members", b"abc").expect("cluster");
        wb.set_meta(crate::META_MEMBER_ID, 1).expect("own id");
        wb.commit(true).expect("commit");

        let b = Store::open(&dir.path().join("b")).expect("open b");
        put(&b, "stale", "gone after restore");
        let mut wb = b.begin_write().expect("write");
        wb.set_meta(crate::META_MEMBER_ID, 2).expect("own id");
        wb.commit(true).expect("commit");
        let mut stream = Vec::new();
        let written = a.write_snapshot(&mut stream).expect("dump");
        let restored = b.restore_snapshot(&stream[..]).expect("restore");
        assert_eq!(written.meta, restored.meta);
        assert_eq!(
            b.meta(crate::META_MEMBER_ID).expect("meta"),
            Some(2),
            "own ID kept"
        );
        assert_eq!(restored.cluster("members"), Some(&b"abc"[..]));
        assert_eq!(b.current_revision(), a.current_revision());
        assert_eq!(b.compacted_revision(), Revision(20));
        assert_eq!(
            b.hash_kv(Revision(0)).expect("hash b"),
            a.hash_kv(Revision(0)).expect("hash a")
        );
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        assert_eq!(b.range(&all).expect("b"), a.range(&all).expect("a"));
        assert_eq!(b.range(&all).expect("b").count, 6);

        let mut damaged = stream.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        assert!(b.restore_snapshot(&damaged[..]).is_err());
        assert_eq!(b.range(&all).expect("b after refused restore").count, 6);
    }
}
