//! The keys a request names, from its `key` and `range_end` as etcd reads them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `range_end` is "\0": every key from `key` on.
    FromKey(Vec<u8>),
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::FromKey(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::FromKey(from) => key >= from.as_slice(),
            KeyRange::Between(from, end) => key >= from.as_slice() && key < end.as_slice(),
        }
    }
}
