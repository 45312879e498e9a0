//! Reads a bbolt file page by page (never mapped whole), checking every page ID, offset and
//! key order on the way: a damaged file gives an error naming the page, never a crash.

use super::format::{
    u16_at, u32_at, u64_at, BboltError, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, LEAF,
    PAGE_HEADER,
};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A top-level bucket: its root page, or its one leaf stored inline in the root bucket.
#[derive(Debug, Clone)]
pub enum Bucket {
    Root(u64),
    Inline(Vec<u8>),
}

/// Takes a bucket's pairs one by one.
pub type PairFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), BboltError> + 'a;
/// Takes a leaf's elements: key, value, flags.
type ElementFn<'a> = dyn FnMut(&[u8], &[u8], u32) -> Result<(), BboltError> + 'a;
/// Takes a leaf's elements with the page they are on.
type PagedElementFn<'a> = dyn FnMut(&[u8], &[u8], u32, u64) -> Result<(), BboltError> + 'a;

/// An open bbolt file.
pub struct Bolt {
    file: File,
    meta: Meta,
}

/// Deeper than any tree a file of 2^64 pages could hold: a cycle, not a tree.
const MAX_DEPTH: usize = 64;

impl Bolt {
    /// Opens the bbolt file in `file`'s first `body_len` bytes (a backup's trailer is after).
    pub fn open(file: File, body_len: u64) -> Result<Bolt, BboltError> {
        if body_len < 1024 {
            return Err(BboltError::TooSmall(body_len));
        }
        let head_len = body_len.min(4096) as usize;
        let mut head = vec![0u8; head_len];
        file.read_exact_at(&mut head, 0)?;
        let meta0 = Meta::parse(&head);
        let page_size = match &meta0 {
            Ok(m) => Some(m.page_size as u64),
            // bbolt probes for the second meta page at every page size it could have.
            Err(_) => (0..15)
                .map(|i| 1024u64 << i)
                .take_while(|at| at + 1024 <= body_len)
                .find(|&at| {
                    let mut page = vec![0u8; 1024];
                    file.read_exact_at(&mut page, at).is_ok()
                        && Meta::parse(&page).is_ok_and(|m| m.page_size as u64 == at)
                }),
        };
        let Some(page_size) = page_size.filter(|p| p.is_power_of_two() && *p >= 512) else {
            return Err(meta0.err().unwrap_or(BboltError::Invalid));
        };
        if body_len < 2 * page_size {
            return Err(BboltError::TooSmall(body_len));
        }
        let mut page1 = vec![0u8; page_size.min(4096) as usize];
        file.read_exact_at(&mut page1, page_size)?;
        let meta1 = Meta::parse(&page1);
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid && b.page_size == a.page_size {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e),
        };
        let expected = meta.hwm.saturating_mul(page_size);
        if expected > body_len || meta.hwm < 3 {
            return Err(BboltError::Truncated {
                expected,
                actual: body_len,
            });
        }
        Ok(Bolt { file, meta })
    }

    /// The bytes of pages in use (`snapshot status`'s total size).
    pub fn size(&self) -> u64 {
        self.meta.hwm * self.meta.page_size as u64
    }

    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// The node at `id`: a branch or leaf page with its overflow pages.
    fn node(&self, id: u64) -> Result<Vec<u8>, BboltError> {
        let ps = self.meta.page_size as u64;
        if id < 2 || id >= self.meta.hwm {
            return Err(BboltError::OutOfBounds(id));
        }
        let mut page = vec![0u8; ps as usize];
        self.file.read_exact_at(&mut page, id * ps)?;
        let bad = |what: &str| BboltError::BadPage {
            page: id,
            what: what.into(),
        };
        if u64_at(&page, 0) != id {
            return Err(bad("its header names another page"));
        }
        let overflow = u32_at(&page, 12) as u64;
        if overflow > 0 {
            if id + overflow >= self.meta.hwm {
                return Err(BboltError::OutOfBounds(id + overflow));
            }
            page.resize(((overflow + 1) * ps) as usize, 0);
            self.file
                .read_exact_at(&mut page[ps as usize..], (id + 1) * ps)?;
        }
        Ok(page)
    }

    /// The top-level buckets, in byte order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket)>, BboltError> {
        let mut out = Vec::new();
        let root = self.meta.root;
        self.walk(&Bucket::Root(root), &mut |name, value, flags| {
            if flags & BUCKET_LEAF == 0 {
                return Err(BboltError::BadPage {
                    page: root,
                    what: "the root bucket holds a key that is not a bucket".into(),
                });
            }
            out.push((name.to_vec(), bucket_of(root, value)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every pair of a top-level bucket, in key order; a nested bucket is an error (etcd
    /// nests none).
    pub fn for_each(&self, bucket: &Bucket, each: &mut PairFn<'_>) -> Result<(), BboltError> {
        self.walk(bucket, &mut |k, v, flags| {
            if flags & BUCKET_LEAF != 0 {
                return Err(BboltError::BadPage {
                    page: 0,
                    what: format!("nested bucket {:?} in a top-level bucket", lossy(k)),
                });
            }
            each(k, v)
        })
    }

    fn walk(&self, bucket: &Bucket, each: &mut ElementFn<'_>) -> Result<(), BboltError> {
        let mut last: Option<Vec<u8>> = None;
        let mut ordered = |k: &[u8], v: &[u8], flags: u32, page: u64| {
            if last.as_deref().is_some_and(|l| l >= k) {
                return Err(BboltError::BadPage {
                    page,
                    what: "keys out of order".into(),
                });
            }
            last = Some(k.to_vec());
            each(k, v, flags)
        };
        match bucket {
            Bucket::Root(id) => self.walk_node(*id, 0, &mut ordered),
            Bucket::Inline(node) => leaf_elements(node, 0, &mut ordered),
        }
    }

    fn walk_node(
        &self,
        id: u64,
        depth: usize,
        each: &mut PagedElementFn<'_>,
    ) -> Result<(), BboltError> {
        if depth > MAX_DEPTH {
            return Err(BboltError::BadPage {
                page: id,
                what: "the tree loops back on itself".into(),
            });
        }
        let node = self.node(id)?;
        match u16_at(&node, 8) {
            LEAF => leaf_elements(&node, id, each),
            BRANCH => {
                let count = u16_at(&node, 10) as usize;
                for i in 0..count {
                    let at = PAGE_HEADER + i * ELEMENT;
                    let e = node.get(at..at + ELEMENT).ok_or_else(|| out_of_page(id))?;
                    let child = u64_at(e, 8);
                    self.walk_node(child, depth + 1, each)?;
                }
                Ok(())
            }
            other => Err(BboltError::BadPage {
                page: id,
                what: format!("invalid type {other:#x} where a branch or leaf belongs"),
            }),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn out_of_page(page: u64) -> BboltError {
    BboltError::BadPage {
        page,
        what: "an element lies outside its page".into(),
    }
}

/// A bucket header (the value of a bucket's element in its parent).
fn bucket_of(page: u64, value: &[u8]) -> Result<Bucket, BboltError> {
    if value.len() < BUCKET_HEADER {
        return Err(BboltError::BadPage {
            page,
            what: "a bucket header is too short".into(),
        });
    }
    match u64_at(value, 0) {
        0 => Ok(Bucket::Inline(value[BUCKET_HEADER..].to_vec())),
        root => Ok(Bucket::Root(root)),
    }
}

fn leaf_elements(node: &[u8], id: u64, each: &mut PagedElementFn<'_>) -> Result<(), BboltError> {
    if node.len() < PAGE_HEADER || u16_at(node, 8) != LEAF {
        return Err(BboltError::BadPage {
            page: id,
            what: "not a leaf where one belongs".into(),
        });
    }
    let count = u16_at(node, 10) as usize;
    for i in 0..count {
        let at = PAGE_HEADER + i * ELEMENT;
        let e = node.get(at..at + ELEMENT).ok_or_else(|| out_of_page(id))?;
        let flags = u32_at(e, 0);
        let start = at + u32_at(e, 4) as usize;
        let klen = u32_at(e, 8) as usize;
        let vlen = u32_at(e, 12) as usize;
        let k = node
            .get(start..start + klen)
            .ok_or_else(|| out_of_page(id))?;
        let v = node
            .get(start + klen..start + klen + vlen)
            .ok_or_else(|| out_of_page(id))?;
        each(k, v, flags, id)?;
    }
    Ok(())
}
