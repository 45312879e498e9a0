//! etcd's backup file: its bbolt schema (buckets, key and value encodings) mapped to and from
//! the store's tables, its `snapshot status`, and the SHA-256 trailer around it.
//! Facts: docs/etcd-backup-format.md §2–§5.

use crate::bbolt::{
    write_db, BboltError, Bolt, Bucket, BucketSource, PairBound, PairLengths, PairSink,
};
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
/// A downgrade job (Maintenance.Downgrade), in etcd's JSON.
const DOWNGRADE_RECORD: &str = "downgrade";

/// A revision as etcd keys it: main, '_', sub (big-endian), and 't' for a tombstone; held
/// inline (a backup makes one per revision).
struct RevisionKey {
    bytes: [u8; 18],
    len: usize,
}

impl RevisionKey {
    fn new(main: i64, sub: i64, tombstone: bool) -> Self {
        let mut bytes = [0u8; 18];
        bytes[..8].copy_from_slice(&main.to_be_bytes());
        bytes[8] = b'_';
        bytes[9..17].copy_from_slice(&sub.to_be_bytes());
        bytes[17] = b't';
        RevisionKey {
            bytes,
            len: if tombstone { 18 } else { 17 },
        }
    }
}

impl std::ops::Deref for RevisionKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    RevisionKey::new(main, sub, tombstone).to_vec()
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
        // etcd's own JSON, kept as is under its own key.
        let downgrade = record(DOWNGRADE_RECORD)?;
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
                sorted(
                    [(
                        b"clusterVersion".to_vec(),
                        oxcd_api::CLUSTER_VERSION.as_bytes().to_vec(),
                    )]
                    .into_iter()
                    .chain(downgrade.map(|job| (DOWNGRADE_RECORD.as_bytes().to_vec(), job)))
                    .collect(),
                ),
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

    fn pair_lengths(&self, bucket: &[u8]) -> io::Result<Option<PairLengths>> {
        match bucket {
            KEY => revision_lengths(self.view).map(Some).map_err(io_err),
            _ => Ok(None),
        }
    }

    fn pair_bound(&self, bucket: &[u8]) -> io::Result<Option<PairBound>> {
        if bucket != KEY {
            return Ok(None);
        }
        let totals = self.view.revision_totals().map_err(io_err)?;
        if totals.is_none() {
            tracing::info!(
                kept = ?self.view.kept_totals(),
                stored = self.view.revision_count().map_err(io_err)?,
                "the store's totals of its records do not bound the backup's key bucket"
            );
        }
        Ok(totals.map(key_bucket_bound))
    }

    fn pairs(&self, bucket: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
        let io = |e: io::Error| SnapshotError::Io(e);
        match bucket {
            KEY => {
                let mut tombstone_value = Vec::new();
                self.view
                    .for_each_revision(|r| {
                        let (k, v) = etcd_revision(&r, &mut tombstone_value)?;
                        each(&k, v).map_err(io)
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

/// A revision as etcd's key bucket holds it: its key, and its KeyValue (for a tombstone,
/// etcd keeps the deleted key alone, encoded into `tombstone_value`).
fn etcd_revision<'r>(
    r: &RevisionRecord<'r>,
    tombstone_value: &'r mut Vec<u8>,
) -> Result<(RevisionKey, &'r [u8]), SnapshotError> {
    let k = RevisionKey::new(r.main, r.sub, r.tombstone);
    if !r.tombstone {
        return Ok((k, r.key_value));
    }
    let kv =
        KeyValue::decode(r.key_value).map_err(|_| SnapshotError::Corrupt("tombstone record"))?;
    tombstone_value.clear();
    KeyValue {
        key: kv.key,
        ..Default::default()
    }
    .encode(tombstone_value)
    .map_err(|_| SnapshotError::Corrupt("tombstone record"))?;
    Ok((k, tombstone_value))
}

/// The key bucket's pairs from the store's totals of its records: a revision key of 17 bytes
/// (18 for a tombstone), and the stored KeyValue, a byte shorter than its record (a
/// tombstone's re-encoded KeyValue is at most that).
fn key_bucket_bound(t: oxcd_mvcc::RevisionTotals) -> PairBound {
    PairBound {
        count: t.records,
        bytes: 16 * t.records + t.tombstones + t.bytes,
        largest: 17 + t.longest,
        longest_key: 17 + u64::from(t.tombstones > 0),
    }
}

/// The key bucket's (key, value) lengths for the layout, read in two halves on two threads:
/// the layout's walk of the table runs before the first byte can be sent, while the client
/// waits with nothing to do. They take 8 bytes a revision until the layout is made.
fn revision_lengths(view: &ExportView) -> Result<PairLengths, SnapshotError> {
    let about_half = usize::try_from(view.revision_count()? / 2).unwrap_or(0);
    let half = |newer: bool| {
        let mut lengths = Vec::with_capacity(about_half + about_half / 8);
        let mut tombstone_value = Vec::new();
        view.for_each_revision_in_half(newer, |r| {
            let (k, v) = etcd_revision(&r, &mut tombstone_value)?;
            let length = |n: usize| {
                u32::try_from(n).map_err(|_| SnapshotError::Corrupt("record over 4 GiB"))
            };
            lengths.push((length(k.len())?, length(v.len())?));
            Ok(())
        })
        .map(|()| lengths)
    };
    std::thread::scope(|scope| {
        let newer = std::thread::Builder::new()
            .name("backup-layout".into())
            .spawn_scoped(scope, || half(true));
        let older = half(false);
        let newer = match newer {
            Ok(thread) => thread
                .join()
                .map_err(|_| SnapshotError::Invalid("a backup's layout thread panicked".into()))?,
            // No thread to be had: this one walks the newer half too.
            Err(_) => half(true),
        };
        Ok(vec![older?, newer?])
    })
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
    load_counted(store, file, body_len, &std::sync::atomic::AtomicU64::new(0))
}

/// `load`, adding the bytes of each revision record loaded to `loaded_bytes` as it goes.
pub fn load_counted(
    store: &Store,
    file: std::fs::File,
    body_len: u64,
    loaded_bytes: &std::sync::atomic::AtomicU64,
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
            load_bucket(&bolt, name, bucket, loader, &mut out, loaded_bytes)
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
    loaded_bytes: &std::sync::atomic::AtomicU64,
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
                loaded_bytes.fetch_add(
                    (k.len() + v.len()) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
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
mod tests;
