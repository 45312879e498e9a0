//! Running totals of the revision records in the backend, kept beside every commit that adds
//! or deletes records, so that a backup can lay its key bucket out from them instead of
//! walking every record first.

/// The revision records one read of the backend sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevisionTotals {
    pub records: u64,
    pub tombstones: u64,
    /// Bytes of the stored records (a flag byte, then the KeyValue).
    pub bytes: u64,
    /// The longest record stored since the totals were counted (deletions leave it).
    pub longest: u64,
}

impl RevisionTotals {
    pub(crate) fn add(&mut self, record: &[u8], tombstone: bool) {
        self.add_len(record.len() as u64, tombstone);
    }

    fn add_len(&mut self, len: u64, tombstone: bool) {
        self.records += 1;
        self.tombstones += u64::from(tombstone);
        self.bytes += len;
        self.longest = self.longest.max(len);
    }

    pub(crate) fn merge(&mut self, more: &RevisionTotals) {
        self.records += more.records;
        self.tombstones += more.tombstones;
        self.bytes += more.bytes;
        self.longest = self.longest.max(more.longest);
    }

    pub(crate) fn remove(&mut self, gone: &RevisionTotals) {
        self.records = self.records.saturating_sub(gone.records);
        self.tombstones = self.tombstones.saturating_sub(gone.tombstones);
        self.bytes = self.bytes.saturating_sub(gone.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::RevisionTotals;
    use crate::kvstore::Store;
    use crate::test_support::put;
    use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest};

    /// The totals a walk of every record in one view finds, and the ones the view was given.
    fn walked_and_kept(store: &Store) -> (RevisionTotals, Option<RevisionTotals>) {
        let view = store.export_view().expect("view");
        let mut walked = RevisionTotals::default();
        view.for_each_revision(|r| {
            walked.add_len(1 + r.key_value.len() as u64, r.tombstone);
            Ok(())
        })
        .expect("walk");
        (walked, view.revision_totals().expect("totals"))
    }

    fn assert_kept_as_walked(store: &Store, when: &str) {
        let (walked, kept) = walked_and_kept(store);
        let kept = kept.unwrap_or_else(|| panic!("{when}: no totals"));
        assert_eq!(
            (kept.records, kept.tombstones, kept.bytes),
            (walked.records, walked.tombstones, walked.bytes),
            "{when}"
        );
        assert!(kept.longest >= walked.longest, "{when}");
    }

    #[test]
    fn totals_follow_puts_deletes_compaction_and_reloads_and_are_dropped_by_a_defrag() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("db");
        let store = Store::open(&path).expect("open");
        for i in 0..40 {
            put(&store, &format!("k{:02}", i % 7), vec![b'v'; 10 + 37 * i]);
        }
        let mut wb = store.begin_write().expect("write");
        wb.delete_range(&DeleteRangeRequest {
            key: b"k2".to_vec(),
            range_end: b"k5".to_vec(),
            ..Default::default()
        })
        .expect("delete");
        wb.commit(false).expect("commit");
        assert_kept_as_walked(&store, "after puts and deletes");

        let mut wb = store.begin_write().expect("write");
        wb.compact(&CompactionRequest {
            revision: store.current_revision().0 - 1,
            ..Default::default()
        })
        .expect("compact");
        wb.commit(false).expect("commit");
        assert_kept_as_walked(&store, "compacted, nothing deleted yet");
        // Small batches, so that the totals are right between them too.
        while store.compact_step(3).expect("step") {
            assert_kept_as_walked(&store, "between compaction batches");
        }
        assert_kept_as_walked(&store, "after the compaction's deletes");
        put(&store, "after", "x");
        drop(store);

        let store = Store::open(&path).expect("reopen");
        assert_kept_as_walked(&store, "reloaded");
        store.defragment().expect("defrag");
        assert_eq!(walked_and_kept(&store).1, None, "after a defragmentation");
    }
}
