/// A point in the store's history: `main` is the cluster-wide revision of a write
/// transaction, `sub` the position of a change inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KeyRevision {
    pub main: i64,
    pub sub: i64,
}

impl KeyRevision {
    pub const fn new(main: i64, sub: i64) -> Self {
        KeyRevision { main, sub }
    }

    /// Order-preserving key for the backend (revisions are never negative).
    pub fn to_backend_key(self) -> u128 {
        ((self.main as u64 as u128) << 64) | (self.sub as u64 as u128)
    }

    pub fn from_backend_key(k: u128) -> Self {
        KeyRevision {
            main: (k >> 64) as u64 as i64,
            sub: k as u64 as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_key_orders_like_revisions() {
        let a = KeyRevision::new(5, 9);
        let b = KeyRevision::new(6, 0);
        assert!(a.to_backend_key() < b.to_backend_key());
        assert_eq!(KeyRevision::from_backend_key(a.to_backend_key()), a);
    }
}
