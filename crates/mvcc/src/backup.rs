//! The backup file a client saves from Maintenance.Snapshot: the snapshot stream, zero-padded
//! to a multiple of 512 bytes, then the SHA-256 of all before it. etcdctl recognises a backup
//! by that layout (size modulo 512 is 32) and checks the digest the same way.

use crate::error::BackupError;
use crate::snapshot::{read_records, TAG_KV};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const SHA256_LEN: u64 = 32;
const SECTOR: u64 = 512;

/// Whether a file of `len` bytes ends in a digest (etcd's test, size modulo 512 == 32).
pub fn has_checksum(len: u64) -> bool {
    len % SECTOR == SHA256_LEN
}

/// Hashes and counts what passes through, then pads and appends the digest on `finish`.
pub struct BackupWriter<W> {
    inner: W,
    sha: Sha256,
    written: u64,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(inner: W) -> Self {
        BackupWriter {
            inner,
            sha: Sha256::new(),
            written: 0,
        }
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        let pad = (SECTOR - self.written % SECTOR) % SECTOR;
        self.write_all(&vec![0u8; pad as usize])?;
        let digest = self.sha.finalize_reset();
        self.inner.write_all(&digest)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for BackupWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What `snapshot status` reports about a backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStatus {
    /// CRC-32 of every record.
    pub hash: u32,
    /// The newest revision in it.
    pub revision: i64,
    /// Records of every table, as etcd counts the keys of every bucket.
    pub total_keys: u64,
    pub total_size: u64,
}

/// Go's `%v` of a byte slice, as etcd prints digests: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// Opens a backup file and checks its SHA-256 trailer (a file without one passes only with
/// `skip_hash_check`); returns it with the length of what precedes the trailer.
pub fn open_backup(
    path: &Path,
    skip_hash_check: bool,
) -> Result<(std::fs::File, u64), BackupError> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let hashed = has_checksum(len);
    if !hashed && !skip_hash_check {
        return Err(BackupError::MissingHash);
    }
    let body_len = if hashed { len - SHA256_LEN } else { len };
    if hashed && !skip_hash_check {
        let mut sha = Sha256::new();
        std::io::copy(&mut (&mut file).take(body_len), &mut sha)?;
        let mut expected = [0u8; SHA256_LEN as usize];
        file.read_exact(&mut expected)?;
        let got = sha.finalize();
        if got[..] != expected[..] {
            return Err(BackupError::HashMismatch {
                expected: go_bytes(&expected),
                got: go_bytes(&got),
            });
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok((file, body_len))
}

/// Checks an oxcd record-stream backup (the format before etcd's bbolt): its digest and
/// every record's CRC, and reports on it.
pub fn check_backup(path: &Path, skip_hash_check: bool) -> Result<BackupStatus, BackupError> {
    let (file, body_len) = open_backup(path, skip_hash_check)?;
    let len = file.metadata()?.len();
    let mut input = std::io::BufReader::new(file.take(body_len));
    let mut status = BackupStatus {
        hash: 0,
        revision: 0,
        total_keys: 0,
        total_size: len,
    };
    let mut crc = crc32fast::Hasher::new();
    read_records(&mut input, |tag, key, value| {
        crc.update(&key);
        crc.update(&value);
        status.total_keys += 1;
        if tag == TAG_KV {
            if let Ok(k) = <[u8; 16]>::try_from(key.as_slice()) {
                status.revision = status.revision.max((u128::from_be_bytes(k) >> 64) as i64);
            }
        }
        Ok(())
    })?;
    status.hash = crc.finalize();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvstore::Store;
    use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};

    #[test]
    fn backup_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Store::open(&dir.path().join("a")).expect("open");
        let mut wb = a.begin_write().expect("write");
        for i in 0..100 {
            wb.put(&PutRequest {
                key: format!("k{i}").into(),
                value: vec![b'v'; 300],
                ..Default::default()
            })
            .expect("put");
        }
        wb.commit(true).expect("commit");
        let file = dir.path().join("backup.db");
        a.write_backup(std::fs::File::create(&file).expect("create"))
            .expect("backup");
        let len = std::fs::metadata(&file).expect("stat").len();
        assert!(has_checksum(len), "{len} bytes");
        let status = check_backup(&file, false).expect("status");
        assert_eq!(status.revision, 101);
        assert!(status.total_keys >= 100);

        let b = Store::open(&dir.path().join("b")).expect("open b");
        b.restore_backup(&file, false).expect("restore");
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        };
        assert_eq!(b.range(&all).expect("range").count, 100);

        let mut bytes = std::fs::read(&file).expect("read");
        bytes[100] ^= 1;
        std::fs::write(&file, &bytes).expect("write");
        assert!(matches!(
            check_backup(&file, false),
            Err(BackupError::HashMismatch { .. })
        ));
        assert!(
            check_backup(&file, true).is_err(),
            "the record CRC still catches it"
        );
        bytes.truncate(bytes.len() - 40);
        std::fs::write(&file, &bytes).expect("write");
        assert!(matches!(
            check_backup(&file, false),
            Err(BackupError::MissingHash)
        ));
    }
}
