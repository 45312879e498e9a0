//! Defragmentation, as etcd does it: copy every table into a fresh file, which then replaces
//! the old one. Writers wait for the copy; readers go on against the old file meanwhile, and
//! find the new one, with the same contents, once it is swapped in.

use crate::backend::{create_db, CLUSTER, KV, LEASE, META};
use crate::error::BackendError;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction,
};
use std::path::{Path, PathBuf};

/// Backend file sizes around a defragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defragmented {
    pub size_before: u64,
    pub size_after: u64,
}

/// Where the copy is made; one found on open is a copy cut short.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("defrag")
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), BackendError> {
    use redb::ReadableTable;
    let src = from.open_table(table)?;
    let mut dst = to.open_table(table)?;
    for item in src.iter()? {
        let (k, v) = item?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// Copies every table of `db` into a fresh file that then replaces the one at `path`;
/// returns the fresh file. The caller keeps writers out meanwhile.
pub(crate) fn copy_into_fresh_file(db: &Database, path: &Path) -> Result<Database, BackendError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let fresh = create_db(&tmp)?;
    {
        let from = db.begin_read()?;
        let mut to = fresh.begin_write()?;
        copy_table(&from, &to, KV)?;
        copy_table(&from, &to, META)?;
        copy_table(&from, &to, CLUSTER)?;
        copy_table(&from, &to, LEASE)?;
        to.set_durability(Durability::Immediate)?;
        to.commit()?;
    }
    let io = |e: std::io::Error| BackendError::Io {
        path: path.display().to_string(),
        source: e,
    };
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use crate::backend::KV;
    use crate::kvstore::Store;
    use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
    use oxcd_api::Revision;
    use redb::ReadableDatabase;

    #[test]
    fn defragment_shrinks_the_file_and_keeps_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for batch in 0..20 {
            let mut wb = store.begin_write().expect("write");
            for i in 0..500 {
                wb.put(&PutRequest {
                    key: format!("k{batch:02}-{i:04}").into(),
                    value: vec![b'x'; 512],
                    ..Default::default()
                })
                .expect("put");
            }
            wb.commit(true).expect("commit");
        }
        let mut wb = store.begin_write().expect("write");
        wb.delete_range(&DeleteRangeRequest {
            key: b"k0".to_vec(),
            range_end: b"k2".to_vec(),
            ..Default::default()
        })
        .expect("delete");
        let rev = store.current_revision() + 1;
        wb.compact(&CompactionRequest {
            revision: rev.0,
            physical: true,
        })
        .expect("compact");
        wb.commit(true).expect("commit");
        let hash_before = store.hash_kv(Revision(0)).expect("hash");
        let old_db = store.db();
        let reader = old_db.begin_read().expect("read before");

        let sizes = store.defragment().expect("defragment");
        assert!(
            sizes.size_after * 2 < sizes.size_before,
            "file shrinks: {sizes:?}"
        );
        assert_eq!(store.db_size(), sizes.size_after);
        assert!(
            store.db_size_in_use() <= store.db_size(),
            "{} > {}",
            store.db_size_in_use(),
            store.db_size()
        );
        let old = reader.open_table(KV);
        assert!(old.is_ok(), "an old reader still reads: {:?}", old.err());
        assert_eq!(store.hash_kv(Revision(0)).expect("hash"), hash_before);
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        };
        assert_eq!(store.range(&all).expect("range").count, 0);
        drop(store);
        let reopened = Store::open(&dir.path().join("db")).expect("reopen");
        assert_eq!(reopened.hash_kv(Revision(0)).expect("hash"), hash_before);
    }
}
