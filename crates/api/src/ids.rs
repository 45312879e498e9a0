//! Typed IDs as etcd shows them: members, clusters and leases in hex, revisions in decimal.
//! Member and cluster IDs are derived as etcd derives them, so the same flags give the same IDs.

use sha1::{Digest, Sha1};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClusterId(pub u64);

/// A lease's ID; 0 means "no lease" on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

/// A cluster-wide revision: one per write transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

/// A hex ID that does not parse, as etcdctl words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {kind} ID arg ({text:?}), expecting ID in Hex")]
pub struct ParseIdError {
    kind: &'static str,
    text: String,
}

macro_rules! hex_id {
    ($name:ident, $int:ty, $uint:ty, $kind:literal) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:x}", self.0)
            }
        }
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(text: &str) -> Result<Self, ParseIdError> {
                <$uint>::from_str_radix(text, 16)
                    .map(|v| $name(v as $int))
                    .map_err(|_| ParseIdError {
                        kind: $kind,
                        text: text.to_string(),
                    })
            }
        }
        impl From<$name> for $int {
            fn from(id: $name) -> $int {
                id.0
            }
        }
        impl $name {
            pub const fn get(self) -> $int {
                self.0
            }
        }
    };
}

hex_id!(MemberId, u64, u64, "member");
hex_id!(ClusterId, u64, u64, "cluster");
hex_id!(LeaseId, i64, u64, "lease");

impl LeaseId {
    pub const NONE: LeaseId = LeaseId(0);
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<Revision> for i64 {
    fn from(r: Revision) -> i64 {
        r.0
    }
}

impl std::ops::Add<i64> for Revision {
    type Output = Revision;
    fn add(self, n: i64) -> Revision {
        Revision(self.0 + n)
    }
}

impl std::ops::Sub<i64> for Revision {
    type Output = Revision;
    fn sub(self, n: i64) -> Revision {
        Revision(self.0 - n)
    }
}

impl Revision {
    pub const fn get(self) -> i64 {
        self.0
    }
    pub const fn next(self) -> Revision {
        Revision(self.0 + 1)
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

    #[test]
    fn hex_ids_parse_back_and_refuse_what_is_not_hex() {
        let m: MemberId = "2e1259d415f2a040".parse().expect("hex member ID");
        assert_eq!(m.to_string(), "2e1259d415f2a040");
        let lease: LeaseId = "ffffffffffffffff".parse().expect("hex lease ID");
        assert_eq!(lease, LeaseId(-1));
        assert_eq!(
            "xyz".parse::<MemberId>().map_err(|e| e.to_string()),
            Err("bad member ID arg (\"xyz\"), expecting ID in Hex".to_string())
        );
    }
}
