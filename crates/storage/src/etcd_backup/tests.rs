use super::*;
use oxcd_api::authpb::{permission::Type, Permission};
use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use oxcd_api::{LeaseId, Revision};
use std::path::Path;

fn all(store: &Store) -> oxcd_api::etcdserverpb::RangeResponse {
    store
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range")
}

fn leases(store: &Store) -> Vec<(i64, i64, i64)> {
    let mut l: Vec<_> = store
        .lease_list()
        .iter()
        .map(|l| (l.id.0, l.ttl, l.remaining_ttl))
        .collect();
    l.sort();
    l
}

/// A store with history, tombstones, a compaction, leases, auth and an alarm; keys and
/// values sized so that trees get branch pages and a value overflows its page.
fn filled(path: &Path, keys: usize) -> Store {
    filled_with(path, keys, 10_000)
}

/// `filled`, its one big value `big` bytes long.
fn filled_with(path: &Path, keys: usize, big: usize) -> Store {
    let store = Store::open(path).expect("open");
    let mut wb = store.begin_write().expect("write");
    wb.lease_grant(LeaseId(0x390d_a23b_1e93_1b09), 600)
        .expect("lease");
    wb.lease_grant(LeaseId(7), 30).expect("lease");
    wb.lease_checkpoint(LeaseId(7), 12).expect("checkpoint");
    wb.commit(true).expect("commit");
    for i in 0..keys {
        let mut wb = store.begin_write().expect("write");
        wb.put(&PutRequest {
            key: format!("key/{:06}", i % (keys / 3 + 1)).into(),
            value: vec![b'v'; 40 + i % 300],
            lease: if i % 10 == 0 { 7 } else { 0 },
            ..Default::default()
        })
        .expect("put");
        wb.commit(false).expect("commit");
    }
    let mut wb = store.begin_write().expect("write");
    wb.put(&PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; big],
        lease: 0x390d_a23b_1e93_1b09,
        ..Default::default()
    })
    .expect("put");
    wb.delete_range(&DeleteRangeRequest {
        key: b"key/000001".to_vec(),
        ..Default::default()
    })
    .expect("delete");
    wb.compact(&CompactionRequest {
        revision: (keys / 2) as i64,
        physical: false,
    })
    .expect("compact");
    let auth = AuthState {
        enabled: true,
        revision: 9,
        users: vec![User {
            name: b"alice".to_vec(),
            password: b"$2a$10$abc".to_vec(),
            roles: vec!["r1".into()],
            options: None,
        }],
        roles: vec![Role {
            name: b"r1".to_vec(),
            key_permission: vec![Permission {
                perm_type: Type::Readwrite as i32,
                key: b"/pfx".to_vec(),
                range_end: b"/pfy".to_vec(),
            }],
        }],
    };
    wb.set_cluster_record(AUTH, &auth.encode_to_vec())
        .expect("auth");
    let alarms = AlarmResponse {
        header: None,
        alarms: vec![AlarmMember {
            member_id: 5,
            alarm: 1,
        }],
    };
    wb.set_cluster_record(ALARMS, &alarms.encode_to_vec())
        .expect("alarm");
    wb.set_meta(crate::META_APPLIED_INDEX, 77).expect("meta");
    wb.commit(true).expect("commit");
    store
}

fn backup(store: &Store, path: &Path) -> (std::fs::File, u64) {
    let file = std::fs::File::create(path).expect("create");
    let written = write_backup(store, std::io::BufWriter::new(file)).expect("backup");
    assert_eq!(std::fs::metadata(path).expect("stat").len(), written);
    oxcd_mvcc::open_backup(path, false).expect("trailer checks")
}

/// The page the meta names as the root bucket's.
fn root_page(path: &Path) -> u64 {
    let head = std::fs::read(path).expect("read");
    u64::from_le_bytes(head[32..40].try_into().expect("8 bytes"))
}

#[test]
fn a_store_written_as_etcds_backup_loads_back_the_same() {
    // A value over a page: the key bucket is laid out by a walk of its records first.
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, body_len) = loads_back_the_same(dir.path(), 10_000);
    assert_eq!(root_page(&dir.path().join("backup.db")), 2);
    drop((f, body_len));
    // Every pair under a page: laid out from the store's totals, the root last.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, body_len) = loads_back_the_same(dir.path(), 3000);
    assert_eq!(
        root_page(&dir.path().join("backup.db")) + 1,
        body_len / crate::bbolt::PAGE_SIZE as u64
    );
}

/// A filled store's backup, loaded into another store that then holds the same.
fn loads_back_the_same(dir: &Path, big: usize) -> (std::fs::File, u64) {
    let a = filled_with(&dir.join("a"), 3000, big);
    let file = dir.join("backup.db");
    let (f, body_len) = backup(&a, &file);
    assert_eq!(body_len % crate::bbolt::PAGE_SIZE as u64, 0);

    let st = status(f.try_clone().expect("clone"), body_len).expect("status");
    assert_eq!(st.revision, a.current_revision().0);
    assert_eq!(st.total_size, body_len);
    let b = Store::open(&dir.join("b")).expect("open b");
    let loaded = load(&b, f.try_clone().expect("clone"), body_len).expect("load");
    assert_eq!((loaded.leases, loaded.users, loaded.roles), (2, 1, 1));
    assert!(loaded.unused.is_empty(), "{:?}", loaded.unused);

    assert_eq!(all(&b), all(&a));
    assert_eq!(b.current_revision(), a.current_revision());
    assert_eq!(b.compacted_revision(), Revision(1500));
    assert_eq!(
        b.hash_kv(Revision(0)).expect("b"),
        a.hash_kv(Revision(0)).expect("a")
    );
    assert_eq!(leases(&b), leases(&a));
    for record in [AUTH, ALARMS] {
        assert_eq!(
            b.cluster_record(record).expect("b"),
            a.cluster_record(record).expect("a"),
            "{record}"
        );
    }

    // The file b writes again has the same contents, so the same hash.
    let again = dir.join("again.db");
    let (f2, len2) = backup(&b, &again);
    let st2 = status(f2, len2).expect("status");
    assert_eq!((st2.revision, st2.total_keys), (st.revision, st.total_keys));
    (f, body_len)
}

#[test]
fn an_empty_store_makes_a_backup_that_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open(&dir.path().join("a")).expect("open");
    let (f, len) = backup(&a, &dir.path().join("backup.db"));
    let st = status(f.try_clone().expect("clone"), len).expect("status");
    // Nothing in `key`; auth's two keys, cluster's version, meta's index and term.
    assert_eq!((st.revision, st.total_keys), (0, 5));
    let b = Store::open(&dir.path().join("b")).expect("open b");
    load(&b, f, len).expect("load");
    assert_eq!(all(&b).count, 0);
}

fn refused(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.db");
    std::fs::write(&path, bytes).expect("write");
    let store = Store::open(&dir.path().join("s")).expect("open");
    let mut wb = store.begin_write().expect("write");
    wb.put(&PutRequest {
        key: b"kept".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .expect("put");
    wb.commit(true).expect("commit");
    let file = std::fs::File::open(&path).expect("open");
    let err = load(&store, file, bytes.len() as u64)
        .expect_err("refused")
        .to_string();
    assert_eq!(all(&store).count, 1, "the store is left as it was: {err}");
    err
}

/// Damage anywhere gives an error naming it, and the store stays as it was.
#[test]
fn a_damaged_or_foreign_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = filled(&dir.path().join("a"), 600);
    let (_, len) = backup(&a, &dir.path().join("backup.db"));
    let body = std::fs::read(dir.path().join("backup.db")).expect("read")[..len as usize].to_vec();

    assert_eq!(refused(&[]), "file size too small 0");
    assert!(refused(&body[..body.len() - 4096 - 100])
        .starts_with("file is cut short: its meta page says"));
    assert_eq!(refused(&vec![7u8; 8192]), "invalid database");
    // Both metas' checksums broken.
    let mut metas = body.clone();
    metas[72] ^= 1;
    metas[4096 + 72] ^= 1;
    assert_eq!(refused(&metas), "checksum error");
    // Only the first: the second meta still opens it, as bbolt does.
    let mut one = body.clone();
    one[72] ^= 1;
    let store = Store::open(&dir.path().join("one")).expect("open");
    let path = dir.path().join("one.db");
    std::fs::write(&path, &one).expect("write");
    load(&store, std::fs::File::open(&path).expect("open"), len).expect("meta 1 serves");
    // A page's header naming another page, a child out of bounds.
    let mut page = body.clone();
    page[2 * 4096] ^= 1;
    assert_eq!(refused(&page), "page 2: its header names another page");
    let mut bounds = body.clone();
    bounds[4096 * 3 + 8..4096 * 3 + 10].copy_from_slice(&0x01u16.to_le_bytes());
    let err = refused(&bounds);
    assert!(err.starts_with("bucket alarm: "), "{err}");

    // A bbolt file that is not etcd's: one bucket of something else.
    struct Foreign;
    impl BucketSource for Foreign {
        fn bucket_names(&self) -> Vec<Vec<u8>> {
            vec![b"v1".to_vec()]
        }
        fn pairs(&self, _: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
            each(b"images", b"x")
        }
    }
    let mut foreign = Vec::new();
    write_db(&Foreign, &mut foreign).expect("write");
    assert_eq!(
        refused(&foreign),
        "not an etcd backend: it has no 'key' or 'meta' bucket"
    );
}

/// A file as etcd 3.6 writes one, with what oxcd has no use for: a storage version, an
/// etcdutl --bump-revision marker, a downgrade record and a bucket of its own.
struct Etcd36;

impl BucketSource for Etcd36 {
    fn bucket_names(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = BUCKETS.iter().map(|b| b.to_vec()).collect();
        names.push(b"test".to_vec());
        names.sort();
        names
    }

    fn pairs(&self, bucket: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
        let kv = |key: &str, rev: i64| {
            KeyValue {
                key: key.into(),
                create_revision: 2,
                mod_revision: rev,
                version: rev - 1,
                value: b"v".to_vec(),
                lease: 0,
            }
            .encode_to_vec()
        };
        match bucket {
            KEY => {
                each(&revision_key(2, 0, false), &kv("a", 2))?;
                each(&revision_key(3, 0, false), &kv("a", 3))?;
                each(&revision_key(1_000_003, 0, false), b"")
            }
            META => {
                each(b"confState", br#"{"voters":[1],"auto_leave":false}"#)?;
                each(b"consistent_index", &9u64.to_be_bytes())?;
                each(b"finishedCompactRev", &revision_key(2, 0, false))?;
                each(b"scheduledCompactRev", &revision_key(1_000_003, 0, false))?;
                each(b"storageVersion", b"3.6.0")?;
                each(b"term", &4u64.to_be_bytes())
            }
            CLUSTER => {
                each(b"clusterVersion", b"3.6.0")?;
                each(b"downgrade", br#"{"enabled":false}"#)
            }
            b"test" => each(b"x", b"y"),
            _ => Ok(()),
        }
    }
}

#[test]
fn an_etcd_3_6_file_loads_and_what_oxcd_leaves_out_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut body = Vec::new();
    let len = write_db(&Etcd36, &mut body).expect("write");
    let path = dir.path().join("etcd36.db");
    std::fs::write(&path, &body).expect("write");
    let st = status(std::fs::File::open(&path).expect("open"), len).expect("status");
    assert_eq!(st.revision, 1_000_003);
    let store = Store::open(&dir.path().join("s")).expect("open");
    let loaded = load(&store, std::fs::File::open(&path).expect("open"), len).expect("load");
    let mut unused: Vec<String> = loaded.unused.iter().map(|u| u.0.clone()).collect();
    unused.sort();
    assert_eq!(
        unused,
        ["bucket test", "cluster: downgrade", "key: revision marker"]
    );
    assert_eq!(loaded.revisions, 2);
    // The marker's revision is the compaction point: the counter goes on from there.
    assert_eq!(store.current_revision(), Revision(1_000_003));
    assert_eq!(store.compacted_revision(), Revision(1_000_003));
}

/// The key bucket's (key, value) lengths as its pairs walk gives them, and as
/// `pair_lengths` gives them in pieces.
fn key_lengths(store: &Store) -> (Vec<(u32, u32)>, PairLengths) {
    let view = store.export_view().expect("view");
    let buckets = EtcdBuckets::new(&view).expect("buckets");
    let mut walked = Vec::new();
    buckets
        .pairs(KEY, &mut |k, v| {
            walked.push((k.len() as u32, v.len() as u32));
            Ok(())
        })
        .expect("pairs");
    let pieces = buckets
        .pair_lengths(KEY)
        .expect("lengths")
        .expect("the key bucket has them");
    assert_eq!(buckets.pair_lengths(LEASE).expect("lease"), None);
    (walked, pieces)
}

#[test]
fn the_key_buckets_lengths_read_in_two_halves_match_its_pairs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = filled(&dir.path().join("a"), 3000);
    let (walked, pieces) = key_lengths(&store);
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| !p.is_empty()), "one half was empty");
    assert_eq!(pieces.concat(), walked);
    assert!(walked.iter().any(|&(k, _)| k == 18), "no tombstone");
}

/// An etcd file can name any revision: the halves still cover the ones at the ends of the
/// backend's order (main i64::MAX, and -1, which sorts after it there).
#[test]
fn the_halves_cover_revisions_at_the_ends_of_the_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("a")).expect("open");
    let kv = |key: &str, rev: i64| KeyValue {
        key: key.into(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: vec![b'v'; 10 + (rev as u8 % 7) as usize],
        lease: 0,
    };
    let mains = [2, 3, 40, i64::MAX, -1];
    store
        .load_with(|loader| {
            for (i, main) in mains.into_iter().enumerate() {
                loader.put_revision(RevisionRecord {
                    main,
                    sub: 0,
                    tombstone: false,
                    key_value: &kv(&format!("k{i}"), main).encode_to_vec(),
                })?;
            }
            Ok(())
        })
        .expect("load");
    let (walked, pieces) = key_lengths(&store);
    assert_eq!(walked.len(), mains.len());
    assert_eq!(pieces.concat(), walked);
}
