//! Writes a bbolt file from sorted pairs, streaming: every page goes out as soon as it is
//! full, so memory holds one page per tree level, never a bucket. The meta pages come first
//! in the file but name the root and the page count, so the pairs are walked twice: once to
//! lay the pages out (from their lengths alone where the source can tell them more cheaply),
//! once to write them (both walks see one read transaction).

use super::format::{
    page_header, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, LEAF, NO_FREELIST, PAGE_HEADER,
    PAGE_SIZE,
};
use std::io::{self, Write};

/// Where the pairs come from: top-level buckets, each with its pairs.
pub trait BucketSource {
    /// The bucket names, strictly ascending bytewise.
    fn bucket_names(&self) -> Vec<Vec<u8>>;
    /// Hands on every pair of `bucket`, keys strictly ascending bytewise.
    fn pairs(&self, bucket: &[u8], each: &mut PairSink<'_>) -> io::Result<()>;
    /// The (key, value) lengths of every pair of `bucket`, in order (in pieces), where the
    /// source can tell them more cheaply than `pairs` (the layout needs nothing else).
    fn pair_lengths(&self, _bucket: &[u8]) -> io::Result<Option<PairLengths>> {
        Ok(None)
    }
}

/// (key, value) lengths of a bucket's pairs, in order, in pieces.
pub type PairLengths = Vec<Vec<(u32, u32)>>;

/// Takes a bucket's pairs, in order, as they are written.
pub type PairSink<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<()> + 'a;

/// Writes whole pages, numbering them; when only laying out, numbers leaves without
/// building them.
struct Pages<W> {
    out: W,
    next: u64,
    layout_only: bool,
}

impl<W: Write> Pages<W> {
    /// Numbers a node of `len` bytes without writing it; returns its page ID.
    fn skip(&mut self, len: usize) -> u64 {
        let id = self.next;
        self.next += len.div_ceil(PAGE_SIZE).max(1) as u64;
        id
    }

    /// Writes one node: `head` (room for the page header, then the elements) and `data`,
    /// zero-padded to whole pages, spilling into overflow pages when it is bigger than a
    /// page; returns its page ID. The parts go out as they are, never copied into a page.
    fn node(&mut self, flags: u16, count: usize, head: &mut [u8], data: &[u8]) -> io::Result<u64> {
        let len = head.len() + data.len();
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let id = self.next;
        let count = u16::try_from(count).map_err(|_| io::Error::other("too many elements"))?;
        page_header(head, id, flags, count, (pages - 1) as u32);
        self.out.write_all(head)?;
        self.out.write_all(data)?;
        self.out.write_all(&ZEROS[..pages * PAGE_SIZE - len])?;
        self.next += pages as u64;
        Ok(id)
    }
}

/// The most a leaf of small pairs spans. One page leaves a page's tail unused whenever the
/// next pair does not fit (6 % of a 1M-key backup); a leaf of several pages wastes that only
/// once, and bbolt reads such a leaf as any other and splits it when it next writes to it.
const LEAF_PAGES: usize = 16;

/// Padding to the end of a page.
static ZEROS: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

fn node_bytes(elements: usize, data: usize) -> Vec<u8> {
    let mut b = vec![0u8; PAGE_HEADER + elements * ELEMENT];
    b.reserve(data);
    b
}

/// A leaf being filled: its elements' (flags, key length, value length) and their bytes,
/// key then value, back to back.
#[derive(Default)]
struct Leaf {
    elements: Vec<(u32, u32, u32)>,
    data: Vec<u8>,
    first_key: Vec<u8>,
}

impl Leaf {
    fn push(&mut self, k: &[u8], v: &[u8], flags: u32, with_data: bool) {
        if self.elements.is_empty() {
            self.first_key = k.to_vec();
        }
        self.elements.push((flags, k.len() as u32, v.len() as u32));
        if with_data {
            self.data.extend_from_slice(k);
            self.data.extend_from_slice(v);
        }
    }

    /// Bytes of the node: page header, elements, data (a leaf pushed to without its data
    /// counts none).
    fn node_len(&self) -> usize {
        PAGE_HEADER + self.elements.len() * ELEMENT + self.data.len()
    }

    /// The page header's room and the elements, into `head`; the data follows them.
    fn head(&self, head: &mut Vec<u8>) {
        head.clear();
        head.resize(PAGE_HEADER + self.elements.len() * ELEMENT, 0);
        let mut pos = (self.elements.len() * ELEMENT) as u32;
        for (i, &(flags, klen, vlen)) in self.elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            head[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            head[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            head[at + 8..at + 12].copy_from_slice(&klen.to_le_bytes());
            head[at + 12..at + 16].copy_from_slice(&vlen.to_le_bytes());
            pos = pos + klen + vlen - ELEMENT as u32;
        }
    }

    /// Writes the leaf as one node; returns its page ID.
    fn write<W: Write>(&self, pages: &mut Pages<W>, head: &mut Vec<u8>) -> io::Result<u64> {
        self.head(head);
        pages.node(LEAF, self.elements.len(), head, &self.data)
    }
}

fn branch(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let data: usize = children.iter().map(|(k, _)| k.len()).sum();
    let mut b = node_bytes(children.len(), data);
    for (i, (k, pgid)) in children.iter().enumerate() {
        let at = PAGE_HEADER + i * ELEMENT;
        let pos = (b.len() - at) as u32;
        b[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&pgid.to_le_bytes());
        b.extend_from_slice(k);
    }
    b
}

/// One branch level being filled: its children's first keys and pages.
#[derive(Default)]
struct Level {
    children: Vec<(Vec<u8>, u64)>,
    size: usize,
    written: usize,
}

/// One bucket's B+tree, built bottom-up as its sorted pairs arrive.
struct Tree {
    leaf: Leaf,
    /// The leaf's page header and elements, reused from leaf to leaf.
    head: Vec<u8>,
    leaf_size: usize,
    leaves_written: usize,
    levels: Vec<Level>,
}

impl Tree {
    fn new() -> Self {
        Tree {
            leaf: Leaf::default(),
            head: Vec::new(),
            leaf_size: PAGE_HEADER,
            leaves_written: 0,
            levels: Vec::new(),
        }
    }

    fn add<W: Write>(&mut self, pages: &mut Pages<W>, k: &[u8], v: &[u8]) -> io::Result<()> {
        let size = ELEMENT + k.len() + v.len();
        if !self.leaf.elements.is_empty() && self.leaf_size + size > LEAF_PAGES * PAGE_SIZE {
            self.flush_leaf(pages)?;
        }
        self.leaf.push(k, v, 0, !pages.layout_only);
        self.leaf_size += size;
        Ok(())
    }

    fn flush_leaf<W: Write>(&mut self, pages: &mut Pages<W>) -> io::Result<()> {
        let id = if pages.layout_only {
            pages.skip(self.leaf_size)
        } else {
            self.leaf.write(pages, &mut self.head)?
        };
        let first = std::mem::take(&mut self.leaf.first_key);
        self.leaf.elements.clear();
        self.leaf.data.clear();
        self.leaf_size = PAGE_HEADER;
        self.leaves_written += 1;
        self.add_child(pages, 0, first, id)
    }

    fn add_child<W: Write>(
        &mut self,
        pages: &mut Pages<W>,
        level: usize,
        first: Vec<u8>,
        id: u64,
    ) -> io::Result<()> {
        if self.levels.len() == level {
            self.levels.push(Level {
                size: PAGE_HEADER,
                ..Level::default()
            });
        }
        let size = ELEMENT + first.len();
        let l = &self.levels[level];
        if !l.children.is_empty() && l.size + size > PAGE_SIZE {
            self.flush_branch(pages, level)?;
        }
        let l = &mut self.levels[level];
        l.children.push((first, id));
        l.size += size;
        Ok(())
    }

    fn flush_branch<W: Write>(&mut self, pages: &mut Pages<W>, level: usize) -> io::Result<()> {
        let l = &mut self.levels[level];
        let children = std::mem::take(&mut l.children);
        l.size = PAGE_HEADER;
        l.written += 1;
        let mut b = branch(&children);
        let id = pages.node(BRANCH, children.len(), &mut b, &[])?;
        let first = children.into_iter().next().map(|c| c.0).unwrap_or_default();
        self.add_child(pages, level + 1, first, id)
    }

    /// Writes what is pending, up to one root; returns the root's page ID.
    fn finish<W: Write>(mut self, pages: &mut Pages<W>) -> io::Result<u64> {
        if !self.leaf.elements.is_empty() || self.leaves_written == 0 {
            self.flush_leaf(pages)?;
        }
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            let l = &self.levels[level];
            if top && l.written == 0 && l.children.len() == 1 {
                return Ok(l.children[0].1);
            }
            self.flush_branch(pages, level)?;
            level += 1;
        }
    }
}

/// The root bucket's leaf: one element per bucket, its header naming its root page.
fn root_leaf(names: &[Vec<u8>], roots: &[u64]) -> Leaf {
    let mut leaf = Leaf::default();
    for (name, root) in names.iter().zip(roots) {
        let mut header = [0u8; BUCKET_HEADER];
        header[..8].copy_from_slice(&root.to_le_bytes());
        leaf.push(name, &header, BUCKET_LEAF, true);
    }
    leaf
}

/// Lays out (or writes) every bucket from page `first` on; returns their roots and the
/// page count.
fn write_buckets<W: Write>(
    src: &dyn BucketSource,
    names: &[Vec<u8>],
    first: u64,
    out: W,
    layout_only: bool,
) -> io::Result<(Vec<u64>, u64)> {
    let mut pages = Pages {
        out,
        next: first,
        layout_only,
    };
    let mut roots = Vec::with_capacity(names.len());
    for name in names {
        let mut tree = Tree::new();
        let lengths = if layout_only {
            src.pair_lengths(name)?
        } else {
            None
        };
        match lengths {
            Some(pieces) => {
                // Only lengths count when laying out: stand-in bytes of those lengths.
                let lengths = || pieces.iter().flatten();
                let longest = lengths().map(|&(k, v)| k.max(v)).max().unwrap_or(0);
                let filler = vec![0u8; longest as usize];
                for &(k, v) in lengths() {
                    tree.add(&mut pages, &filler[..k as usize], &filler[..v as usize])?;
                }
            }
            None => src.pairs(name, &mut |k, v| tree.add(&mut pages, k, v))?,
        }
        roots.push(tree.finish(&mut pages)?);
    }
    pages.out.flush()?;
    Ok((roots, pages.next))
}

/// Writes `src` as a bbolt file to `out`; returns the bytes written (pages × page size).
pub fn write_db<W: Write>(src: &dyn BucketSource, mut out: W) -> io::Result<u64> {
    let names = src.bucket_names();
    let root = root_leaf(&names, &vec![0; names.len()]);
    let root_pages = root.node_len().div_ceil(PAGE_SIZE).max(1) as u64;
    let first = 2 + root_pages;
    let (roots, hwm) = write_buckets(src, &names, first, io::sink(), true)?;
    let meta = Meta {
        page_size: PAGE_SIZE as u32,
        root: 2,
        freelist: NO_FREELIST,
        hwm,
        txid: 2,
    };
    // As bbolt's own copies: the newer meta on page 0, the one before it on page 1.
    out.write_all(&meta.page(0))?;
    out.write_all(&Meta { txid: 1, ..meta }.page(1))?;
    let mut pages = Pages {
        out: &mut out,
        next: 2,
        layout_only: false,
    };
    let root = root_leaf(&names, &roots);
    let mut head = Vec::new();
    root.write(&mut pages, &mut head)?;
    let (written, end) = write_buckets(src, &names, first, &mut out, false)?;
    if written != roots || end != hwm {
        return Err(io::Error::other(
            "the data changed between laying out and writing the backup",
        ));
    }
    Ok(hwm * PAGE_SIZE as u64)
}
