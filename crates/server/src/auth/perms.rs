//! Whether the key ranges a user's roles grant cover the range a request names.

/// `[start, end)`, `None` meaning no end.
pub(super) fn interval(key: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            (key.to_vec(), Some(next))
        }
        [0] => (key.to_vec(), None),
        e => (key.to_vec(), Some(e.to_vec())),
    }
}

/// Whether the union of `granted` covers the whole of `[key, end)` (one key when `end` is
/// empty, no end when it is "\0").
pub(super) fn covered(
    mut granted: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    key: &[u8],
    end: &[u8],
) -> bool {
    let (start, end) = interval(key, end);
    granted.sort();
    let mut reach: Option<Vec<u8>> = Some(start);
    for (s, e) in granted {
        let Some(r) = &reach else { return true };
        if s > *r {
            break;
        }
        reach = match (&reach, e) {
            (_, None) => None,
            (Some(r), Some(e)) if e > *r => Some(e),
            (r, _) => r.clone(),
        };
    }
    match (&reach, &end) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(e)) => r >= e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        interval(key, end)
    }

    #[test]
    fn ranges_are_covered_only_by_what_was_granted() {
        let prefix = oxcd_api::prefix_end(b"app/");
        let granted = vec![perm(b"app/", &prefix), perm(b"single", b"")];
        assert!(covered(granted.clone(), b"app/x", b""));
        assert!(covered(granted.clone(), b"app/", &prefix));
        assert!(covered(granted.clone(), b"single", b""));
        assert!(!covered(granted.clone(), b"single2", b""));
        assert!(!covered(granted.clone(), b"app/", b"\0"));
        assert!(!covered(granted.clone(), b"ap", &prefix));
        assert!(!covered(granted, b"other", b""));
    }

    #[test]
    fn adjacent_grants_join_and_open_ends_reach_everything() {
        let granted = vec![perm(b"a", b"c"), perm(b"c", b"e")];
        assert!(covered(granted.clone(), b"a", b"e"));
        assert!(!covered(granted, b"a", b"f"));
        let everything = vec![perm(b"\0", b"\0")];
        assert!(covered(everything.clone(), b"\0", b"\0"));
        assert!(covered(everything, b"zzz", b""));
        assert!(!covered(vec![], b"a", b""));
    }
}
