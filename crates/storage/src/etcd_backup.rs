//! etcd's backup file: its bbolt schema (buckets, key and value encodings) mapped to and from
//! the store's tables, its `snapshot status`, and the SHA-256 trailer around it.
//! Facts: docs/etcd-backup-format.md §2–§5.

use crate::bbolt::{write_db, BboltError, Bolt, Bucket, BucketSource, PairSink};
use crate::records::{ALARMS, AUTH, CONF_STATE};
use oxcd_api::authpb::{Role, User};
use oxcd_api::etcdserverpb::{AlarmMember, AlarmResponse, Member};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::oxcdpb::{AuthState, ClusterRecord};
use oxcd_mvcc::{ExportView, Loader, RevisionRecord, SnapshotError, Store};
use prost::Message;
use std::io::{self, Write};

const ALARM: &[u8] = b"alarm";
const AUTH_BUCKET: &[u8] = b"auth";
const AUTH_ROLES: &[u8] = b"authRoles";
const AUTH_USERS: &[u8] = b"authUsers";
const CLUSTER: &[u8] = b"cluster";
const KEY: &[u8] = b"key";
const LEASE: &[u8] = b"lease";
const MEMBERS: &[u8] = b"members";
const MEMBERS_REMOVED: &[u8] = b"members_removed";
const META: &[u8] = b"meta";
/// Every bucket etcd 3.4–3.6 keeps, in byte order.
const BUCKETS: [&[u8]; 10] = [
    ALARM,
    AUTH_BUCKET,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
];

/// A small bucket's pairs, built in memory.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct Lease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// The name of a cluster record the node keeps for members (see membership.rs).
const CLUSTER_RECORD: &str = "cluster";

/// A revision as etcd keys it: main, '_', sub (big-endian), and 't' for a tombstone.
fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// (main, sub, tombstone) of an etcd revision key.
fn parse_revision_key(k: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(k[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
    Some((main, sub, tombstone))
}

fn member_json(m: &Member) -> String {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), m.id.into());
    o.insert("peerURLs".into(), m.peer_ur_ls.clone().into());
    if m.is_learner {
        o.insert("isLearner".into(), true.into());
    }
    if !m.name.is_empty() {
        o.insert("name".into(), m.name.clone().into());
    }
    if !m.client_ur_ls.is_empty() {
        o.insert("clientURLs".into(), m.client_ur_ls.clone().into());
    }
    serde_json::Value::Object(o).to_string()
}

fn conf_state_json(cs: &raft::eraftpb::ConfState) -> String {
    let mut o = serde_json::Map::new();
    for (name, ids) in [
        ("voters", &cs.voters),
        ("learners", &cs.learners),
        ("voters_outgoing", &cs.voters_outgoing),
        ("learners_next", &cs.learners_next),
    ] {
        if !ids.is_empty() {
            o.insert(name.into(), ids.clone().into());
        }
    }
    o.insert("auto_leave".into(), cs.auto_leave.into());
    serde_json::Value::Object(o).to_string()
}

/// The store as etcd's buckets: the small buckets built up front, the keyspace and the
/// leases streamed from the view.
struct EtcdBuckets<'v> {
    view: &'v ExportView,
    small: Vec<(&'static [u8], Pairs)>,
}

fn sorted(mut pairs: Pairs) -> Pairs {
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0);
    pairs
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl<'v> EtcdBuckets<'v> {
    fn new(view: &'v ExportView) -> Result<Self, SnapshotError> {
        let decode_err = |what: &str, e: prost::DecodeError| {
            SnapshotError::Invalid(format!("the {what} record does not decode: {e}"))
        };
        let record = |name: &str| view.cluster_record(name);
        let auth = match record(AUTH)? {
            Some(b) => AuthState::decode(b.as_slice()).map_err(|e| decode_err("auth", e))?,
            None => AuthState::default(),
        };
        let cluster = match record(CLUSTER_RECORD)? {
            Some(b) => ClusterRecord::decode(b.as_slice()).map_err(|e| decode_err("cluster", e))?,
            None => ClusterRecord::default(),
        };
        let alarms = match record(ALARMS)? {
            Some(b) => {
                AlarmResponse::decode(b.as_slice())
                    .map_err(|e| decode_err("alarm", e))?
                    .alarms
            }
            None => Vec::new(),
        };
        let conf_state = record(CONF_STATE)?
            .map(|b| {
                <raft::eraftpb::ConfState as protobuf::Message>::parse_from_bytes(&b)
                    .map_err(|e| SnapshotError::Invalid(format!("conf state record: {e}")))
            })
            .transpose()?;
        let hex = |id: u64| format!("{id:x}").into_bytes();
        let u64_be = |v: u64| v.to_be_bytes().to_vec();
        let mut meta = vec![
            (
                b"consistent_index".to_vec(),
                u64_be(view.meta(crate::META_APPLIED_INDEX)?.unwrap_or(0)),
            ),
            (
                b"term".to_vec(),
                u64_be(view.meta(crate::META_APPLIED_TERM)?.unwrap_or(0).max(1)),
            ),
        ];
        let (scheduled, finished) = view.compaction()?;
        if scheduled > 0 {
            meta.push((
                b"scheduledCompactRev".to_vec(),
                revision_key(scheduled, 0, false),
            ));
            meta.push((
                b"finishedCompactRev".to_vec(),
                revision_key(finished, 0, false),
            ));
        }
        if let Some(cs) = conf_state.filter(|cs| !cs.voters.is_empty()) {
            meta.push((b"confState".to_vec(), conf_state_json(&cs).into_bytes()));
        }
        let small = vec![
            (
                ALARM,
                sorted(
                    alarms
                        .iter()
                        .map(|a| (a.encode_to_vec(), Vec::new()))
                        .collect(),
                ),
            ),
            (
                AUTH_BUCKET,
                vec![
                    (b"authEnabled".to_vec(), vec![u8::from(auth.enabled)]),
                    (b"authRevision".to_vec(), u64_be(auth.revision)),
                ],
            ),
            (
                AUTH_ROLES,
                sorted(
                    auth.roles
                        .iter()
                        .map(|r| (r.name.clone(), r.encode_to_vec()))
                        .collect(),
                ),
            ),
            (
                AUTH_USERS,
                sorted(
                    auth.users
                        .iter()
                        .map(|u| (u.name.clone(), u.encode_to_vec()))
                        .collect(),
                ),
            ),
            (
                CLUSTER,
                vec![(
                    b"clusterVersion".to_vec(),
                    oxcd_api::CLUSTER_VERSION.as_bytes().to_vec(),
                )],
            ),
            (
                MEMBERS,
                sorted(
                    cluster
                        .members
                        .iter()
                        .map(|m| (hex(m.id), member_json(m).into_bytes()))
                        .collect(),
                ),
            ),
            (
                MEMBERS_REMOVED,
                sorted(
                    cluster
                        .removed
                        .iter()
                        .map(|id| (hex(*id), b"removed".to_vec()))
                        .collect(),
                ),
            ),
            (META, sorted(meta)),
        ];
        Ok(EtcdBuckets { view, small })
    }
}

impl BucketSource for EtcdBuckets<'_> {
    fn bucket_names(&self) -> Vec<Vec<u8>> {
        BUCKETS.iter().map(|b| b.to_vec()).collect()
    }

    fn pairs(&self, bucket: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
        let io = |e: io::Error| SnapshotError::Io(e);
        match bucket {
            KEY => {
                let mut tombstone_value = Vec::new();
                self.view
                    .for_each_revision(|r| {
                        let k = revision_key(r.main, r.sub, r.tombstone);
                        if r.tombstone {
                            // etcd's tombstone holds the deleted key alone.
                            let kv = KeyValue::decode(r.key_value)
                                .map_err(|_| SnapshotError::Corrupt("tombstone record"))?;
                            tombstone_value.clear();
                            KeyValue {
                                key: kv.key,
                                ..Default::default()
                            }
                            .encode(&mut tombstone_value)
                            .map_err(|_| SnapshotError::Corrupt("tombstone record"))?;
                            each(&k, &tombstone_value).map_err(io)
                        } else {
                            each(&k, r.key_value).map_err(io)
                        }
                    })
                    .map_err(io_err)
            }
            LEASE => self
                .view
                .for_each_lease(|id, ttl, remaining_ttl| {
                    let v = Lease {
                        id,
                        ttl,
                        remaining_ttl,
                    }
                    .encode_to_vec();
                    each(&id.to_be_bytes(), &v).map_err(io)
                })
                .map_err(io_err),
            _ => {
                for (name, pairs) in &self.small {
                    if *name == bucket {
                        for (k, v) in pairs {
                            each(k, v)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Writes the store as etcd's backup file: the bbolt database, then its SHA-256. Returns
/// the bytes written.
pub fn write_backup<W: Write>(store: &Store, out: W) -> Result<u64, SnapshotError> {
    let view = store.export_view()?;
    let buckets = EtcdBuckets::new(&view)?;
    let mut w = oxcd_mvcc::BackupWriter::new(out);
    let body = write_db(&buckets, &mut w)?;
    w.finish()?;
    Ok(body + oxcd_mvcc::SHA256_LEN)
}

/// What `snapshot status` reports on an etcd backup (3.4/3.5's `totalKey`: every pair in
/// every bucket).
pub fn status(file: std::fs::File, body_len: u64) -> Result<oxcd_mvcc::BackupStatus, BboltError> {
    let bolt = Bolt::open(file, body_len)?;
    let castagnoli = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut digest = castagnoli.digest();
    let mut total_keys = 0u64;
    let mut revision = 0i64;
    for (name, bucket) in bolt.buckets()? {
        digest.update(&name);
        let is_key = name == KEY;
        bolt.for_each(&bucket, &mut |k, v| {
            digest.update(k);
            digest.update(v);
            total_keys += 1;
            if is_key && k.len() >= 8 {
                revision = i64::from_be_bytes(k[..8].try_into().unwrap_or_default());
            }
            Ok(())
        })?;
    }
    Ok(oxcd_mvcc::BackupStatus {
        hash: digest.finalize(),
        revision,
        total_keys,
        total_size: bolt.size(),
    })
}

/// What an etcd backup held beyond the store's tables, for the restore's log.
#[derive(Debug, Default)]
pub struct EtcdRestored {
    pub revisions: u64,
    pub leases: u64,
    pub users: usize,
    pub roles: usize,
    /// What oxcd does not take over, by name, with its number of keys (logged).
    pub unused: Vec<(String, u64)>,
}

fn invalid(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Invalid(e.to_string())
}

/// Loads an etcd backup's keyspace, leases, compaction point, auth data and alarms into
/// the store, replacing what it held. Its members are not loaded: a restore makes them
/// from its flags, as etcd's does.
pub fn load(
    store: &Store,
    file: std::fs::File,
    body_len: u64,
) -> Result<EtcdRestored, SnapshotError> {
    let bolt = Bolt::open(file, body_len).map_err(invalid)?;
    let buckets = bolt.buckets().map_err(invalid)?;
    let find = |name: &[u8]| buckets.iter().find(|(n, _)| n == name).map(|(_, b)| b);
    if find(KEY).is_none() || find(META).is_none() {
        return Err(SnapshotError::Invalid(
            "not an etcd backend: it has no 'key' or 'meta' bucket".into(),
        ));
    }
    store.load_with(|loader| {
        let mut out = EtcdRestored::default();
        for (name, bucket) in &buckets {
            load_bucket(&bolt, name, bucket, loader, &mut out)
                .map_err(|e| invalid(format!("bucket {}: {e}", String::from_utf8_lossy(name))))?;
        }
        Ok(out)
    })
}

fn load_bucket(
    bolt: &Bolt,
    name: &[u8],
    bucket: &Bucket,
    loader: &mut Loader<'_>,
    out: &mut EtcdRestored,
) -> Result<(), SnapshotError> {
    let mut pairs: Pairs = Vec::new();
    let mut keep = |k: &[u8], v: &[u8]| -> Result<(), BboltError> {
        pairs.push((k.to_vec(), v.to_vec()));
        Ok(())
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match name {
        KEY => {
            let mut failed = None;
            bolt.for_each(bucket, &mut |k, v| {
                let Some((main, sub, tombstone)) = parse_revision_key(k) else {
                    failed = Some(invalid(format!("key bucket: {k:02x?} is not a revision")));
                    return Err(BboltError::Invalid);
                };
                // A marker etcdutl's --bump-revision leaves: an empty KeyValue.
                if v.is_empty() {
                    out.unused.push(("key: revision marker".into(), 1));
                    return Ok(());
                }
                let record = RevisionRecord {
                    main,
                    sub,
                    tombstone,
                    key_value: v,
                };
                if let Err(e) = loader.put_revision(record) {
                    failed = Some(e);
                    return Err(BboltError::Invalid);
                }
                out.revisions += 1;
                Ok(())
            })
            .map_err(|e| failed.take().unwrap_or_else(|| invalid(e)))?;
            return Ok(());
        }
        LEASE => {
            let mut failed = None;
            bolt.for_each(bucket, &mut |_, v| {
                let l = match Lease::decode(v) {
                    Ok(l) => l,
                    Err(e) => {
                        failed = Some(invalid(format!("lease bucket: {e}")));
                        return Err(BboltError::Invalid);
                    }
                };
                if let Err(e) = loader.put_lease(l.id, l.ttl, l.remaining_ttl) {
                    failed = Some(e);
                    return Err(BboltError::Invalid);
                }
                out.leases += 1;
                Ok(())
            })
            .map_err(|e| failed.take().unwrap_or_else(|| invalid(e)))?;
            return Ok(());
        }
        _ => bolt.for_each(bucket, &mut keep).map_err(invalid)?,
    }
    match name {
        META => {
            let mut scheduled = 0;
            let mut finished = None;
            for (k, v) in &pairs {
                match k.as_slice() {
                    b"scheduledCompactRev" | b"finishedCompactRev" => {
                        let (rev, _, _) = parse_revision_key(v).ok_or_else(|| {
                            invalid(format!("meta bucket: {} is not a revision", lossy(k)))
                        })?;
                        if k.as_slice() == b"scheduledCompactRev" {
                            scheduled = rev;
                        } else {
                            finished = Some(rev);
                        }
                    }
                    // The raft position and membership are the restore's own.
                    b"consistent_index" | b"term" | b"confState" | b"storageVersion" => {}
                    other => out.unused.push((format!("meta: {}", lossy(other)), 1)),
                }
            }
            loader.set_compaction(scheduled, finished.unwrap_or(scheduled).min(scheduled))?;
        }
        AUTH_BUCKET | AUTH_USERS | AUTH_ROLES => {
            let mut state = AuthState::default();
            if let Some(b) = loader.cluster_record(AUTH)? {
                state = AuthState::decode(b.as_slice()).map_err(invalid)?;
            }
            for (k, v) in &pairs {
                match name {
                    AUTH_USERS => state.users.push(
                        User::decode(v.as_slice())
                            .map_err(|e| invalid(format!("authUsers: user {}: {e}", lossy(k))))?,
                    ),
                    AUTH_ROLES => state.roles.push(
                        Role::decode(v.as_slice())
                            .map_err(|e| invalid(format!("authRoles: role {}: {e}", lossy(k))))?,
                    ),
                    _ => match k.as_slice() {
                        b"authEnabled" => state.enabled = v.first() == Some(&1),
                        b"authRevision" => {
                            let b: [u8; 8] = v
                                .as_slice()
                                .try_into()
                                .map_err(|_| invalid("auth bucket: authRevision is not 8 bytes"))?;
                            state.revision = u64::from_be_bytes(b);
                        }
                        other => out.unused.push((format!("auth: {}", lossy(other)), 1)),
                    },
                }
            }
            out.users = state.users.len();
            out.roles = state.roles.len();
            loader.set_cluster_record(AUTH, &state.encode_to_vec())?;
        }
        ALARM => {
            let alarms = pairs
                .iter()
                .map(|(k, _)| AlarmMember::decode(k.as_slice()).map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?;
            if !alarms.is_empty() {
                let record = AlarmResponse {
                    header: None,
                    alarms,
                };
                loader.set_cluster_record(ALARMS, &record.encode_to_vec())?;
            }
        }
        // The restore's flags make the membership; the version is this binary's.
        MEMBERS | MEMBERS_REMOVED => {}
        CLUSTER => {
            for (k, _) in &pairs {
                if k.as_slice() != b"clusterVersion" {
                    out.unused.push((format!("cluster: {}", lossy(k)), 1));
                }
            }
        }
        other if !pairs.is_empty() => {
            out.unused
                .push((format!("bucket {}", lossy(other)), pairs.len() as u64));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            value: vec![b'x'; 10_000],
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

    #[test]
    fn a_store_written_as_etcds_backup_loads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = filled(&dir.path().join("a"), 3000);
        let file = dir.path().join("backup.db");
        let (f, body_len) = backup(&a, &file);
        assert_eq!(body_len % crate::bbolt::PAGE_SIZE as u64, 0);

        let st = status(f.try_clone().expect("clone"), body_len).expect("status");
        assert_eq!(st.revision, a.current_revision().0);
        assert_eq!(st.total_size, body_len);
        let b = Store::open(&dir.path().join("b")).expect("open b");
        let loaded = load(&b, f, body_len).expect("load");
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
        let again = dir.path().join("again.db");
        let (f2, len2) = backup(&b, &again);
        let st2 = status(f2, len2).expect("status");
        assert_eq!((st2.revision, st2.total_keys), (st.revision, st.total_keys));
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
        let body =
            std::fs::read(dir.path().join("backup.db")).expect("read")[..len as usize].to_vec();

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
}
