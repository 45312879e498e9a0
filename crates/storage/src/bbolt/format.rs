//! Page headers, elements and the meta page: the fixed-size records bbolt lays out.

use std::hash::Hasher;

/// The page size oxcd writes (Go's bbolt uses the OS page size: 4096 on Linux amd64).
pub const PAGE_SIZE: usize = 4096;
pub(crate) const PAGE_HEADER: usize = 16;
pub(crate) const ELEMENT: usize = 16;
pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const META: u16 = 0x04;
/// A leaf element whose value is a bucket header.
pub(crate) const BUCKET_LEAF: u32 = 0x01;
/// A bucket header: root pgid and sequence.
pub(crate) const BUCKET_HEADER: usize = 16;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// meta.freelist when no freelist page is kept (etcd on Linux: NoFreelistSync).
pub(crate) const NO_FREELIST: u64 = u64::MAX;
const META_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BboltError {
    #[error("invalid database")]
    Invalid,
    #[error("version mismatch")]
    VersionMismatch,
    #[error("checksum error")]
    Checksum,
    #[error("file size too small {0}")]
    TooSmall(u64),
    #[error(
        "file is cut short: its meta page says {expected} bytes of pages, the file holds {actual}"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error("page {0}: out of bounds")]
    OutOfBounds(u64),
    #[error("page {page}: {what}")]
    BadPage { page: u64, what: String },
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for BboltError {
    fn from(e: std::io::Error) -> Self {
        BboltError::Io(e.to_string())
    }
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    x.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(x)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

pub(crate) fn page_header(buf: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&count.to_le_bytes());
    buf[12..16].copy_from_slice(&overflow.to_le_bytes());
}

/// What a meta page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub root: u64,
    pub freelist: u64,
    /// Pages in use: the file holds pages `0..hwm`.
    pub hwm: u64,
    pub txid: u64,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

impl Meta {
    /// A whole meta page (`page_size` bytes) with this page ID.
    pub fn page(&self, id: u64) -> Vec<u8> {
        let mut p = vec![0u8; self.page_size as usize];
        page_header(&mut p, id, META, 0, 0);
        let m = &mut p[PAGE_HEADER..PAGE_HEADER + META_LEN];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        // 12..16 flags, 24..32 the root bucket's sequence: 0.
        m[16..24].copy_from_slice(&self.root.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.hwm.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&m[..56]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// The meta at `page`'s start, validated as bbolt does: magic, version, checksum.
    pub fn parse(page: &[u8]) -> Result<Meta, BboltError> {
        let m = page
            .get(PAGE_HEADER..PAGE_HEADER + META_LEN)
            .ok_or(BboltError::Invalid)?;
        if u32_at(m, 0) != MAGIC {
            return Err(BboltError::Invalid);
        }
        if u32_at(m, 4) != VERSION {
            return Err(BboltError::VersionMismatch);
        }
        if fnv1a64(&m[..56]) != u64_at(m, 56) {
            return Err(BboltError::Checksum);
        }
        Ok(Meta {
            page_size: u32_at(m, 8),
            root: u64_at(m, 16),
            freelist: u64_at(m, 32),
            hwm: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meta page of a real etcd 3.4.23 backup (docs/etcd-backup-format.md §9): its
    /// checksum is FNV-1a over the 56 bytes before it.
    #[test]
    fn a_meta_page_checksums_as_etcds_did() {
        let meta = Meta {
            page_size: 4096,
            root: 3,
            freelist: NO_FREELIST,
            hwm: 0x0c,
            txid: 0x0f,
        };
        let page = meta.page(0);
        assert_eq!(u64_at(&page, 72), 0xea83_a0fa_3fe8_1083);
        assert_eq!(Meta::parse(&page), Ok(meta));
        let mut bad = page.clone();
        bad[70] ^= 1;
        assert_eq!(Meta::parse(&bad), Err(BboltError::Checksum));
        bad[20] = 3;
        assert_eq!(Meta::parse(&bad), Err(BboltError::VersionMismatch));
        bad[16] = 0;
        assert_eq!(Meta::parse(&bad), Err(BboltError::Invalid));
    }
}
