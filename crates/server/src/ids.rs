//! Member and cluster IDs, derived as etcd derives them so the same flags give the same IDs.

use sha1::{Digest, Sha1};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

fn first_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

impl MemberId {
    /// An initial member's ID: SHA-1 of its sorted peer URLs followed by the cluster token.
    pub fn derive(peer_urls: &[String], token: &str) -> MemberId {
        Self::derive_at(peer_urls, token, None)
    }

    /// A member added at runtime: the same digest plus the Unix time of the addition, so a
    /// member re-added with the same URLs gets a new ID.
    pub fn derive_at(peer_urls: &[String], token: &str, unix_secs: Option<i64>) -> MemberId {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        let mut h = Sha1::new();
        for u in &urls {
            h.update(u.as_bytes());
        }
        h.update(token.as_bytes());
        if let Some(t) = unix_secs {
            h.update(t.to_string().as_bytes());
        }
        MemberId(first_u64(&h.finalize()))
    }
}

impl ClusterId {
    /// SHA-1 of the sorted initial member IDs, big endian.
    pub fn derive(members: &[MemberId]) -> ClusterId {
        let mut ids: Vec<u64> = members.iter().map(|m| m.0).collect();
        ids.sort_unstable();
        let mut h = Sha1::new();
        for id in ids {
            h.update(id.to_be_bytes());
        }
        ClusterId(first_u64(&h.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_ids_as_etcd_for_the_same_flags() {
        // etcd 3.4 with --name bar, peer URL http://127.0.0.1:23800, the default token.
        let m = MemberId::derive(&["http://127.0.0.1:23800".into()], "etcd-cluster");
        assert_eq!(m.to_string(), "2e1259d415f2a040");
        assert_eq!(ClusterId::derive(&[m]).to_string(), "48276a8f75b6a87");
    }
}
