//! Writes a bbolt file from sorted pairs, streaming: every page goes out as soon as it is
//! full, so memory holds one page per tree level, never a bucket. The meta pages come first
//! in the file but name the root and the page count. Where the source can bound a bucket
//! from totals it keeps (its pairs, their bytes, the largest), the root goes last, at a page
//! that bound leaves room for, and the pages left over before it are free (bbolt finds them
//! as it does any page no bucket reaches); otherwise the pairs are walked twice: once to lay
//! the pages out (from their lengths alone where the source can tell them more cheaply), once
//! to write them (both walks see one read transaction).

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
    /// What `bucket`'s pairs come to at most, where the source keeps totals of them.
    fn pair_bound(&self, _bucket: &[u8]) -> io::Result<Option<PairBound>> {
        Ok(None)
    }
}

/// Upper bounds on a bucket's pairs, from totals its source keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairBound {
    pub count: u64,
    /// Key and value bytes of all pairs.
    pub bytes: u64,
    /// Key and value bytes of the largest pair.
    pub largest: u64,
    pub longest_key: u64,
}

impl PairBound {
    /// Pages the bucket's tree takes at most, as `Tree` builds it; None when a pair may be
    /// big enough to leave leaves of uneven size, where the bound would be far from the
    /// pages used.
    pub fn pages(&self) -> Option<u64> {
        let page = PAGE_SIZE as u64;
        let (header, element) = (PAGE_HEADER as u64, ELEMENT as u64);
        let largest = element + self.largest;
        if largest > page {
            return None;
        }
        // A leaf closes when the next pair would take it past its pages, so every leaf but
        // the last holds more than `capacity - largest` bytes (its header included): all
        // of its pages, as no pair is over a page.
        let capacity = LEAF_PAGES as u64 * page;
        let data = self.count * element + self.bytes;
        let leaves = data / (capacity - largest - header) + 1;
        let mut pages = leaves * LEAF_PAGES as u64;
        // A branch closes when the next child would not fit: it has at least `per_branch`.
        let child = element + self.longest_key;
        let per_branch = (page - header - child) / child + 1;
        let mut level = leaves;
        while level > 1 {
            level = level.div_ceil(per_branch);
            pages += level;
        }
        Some(pages)
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

/// Pages the root bucket's leaf takes (its size does not depend on the roots it names).
fn root_pages(names: &[Vec<u8>]) -> u64 {
    root_leaf(names, &vec![0; names.len()])
        .node_len()
        .div_ceil(PAGE_SIZE)
        .max(1) as u64
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

/// Pages the buckets take at most: a bound for those the source bounds, the exact layout of
/// the others (walked); None unless some bucket is bounded.
fn pages_at_most(src: &dyn BucketSource, names: &[Vec<u8>]) -> io::Result<Option<u64>> {
    let mut bounds = Vec::with_capacity(names.len());
    for name in names {
        let pages = match src.pair_bound(name)? {
            Some(bound) => match bound.pages() {
                Some(pages) => Some(pages),
                None => return Ok(None),
            },
            None => None,
        };
        bounds.push(pages);
    }
    if bounds.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut total = 0;
    for (name, pages) in names.iter().zip(bounds) {
        total += match pages {
            Some(pages) => pages,
            None => write_buckets(src, std::slice::from_ref(name), 0, io::sink(), true)?.1,
        };
    }
    Ok(Some(total))
}

/// The meta pages, naming `root` and the page count `hwm`.
fn write_metas<W: Write>(out: &mut W, root: u64, hwm: u64) -> io::Result<()> {
    let meta = Meta {
        page_size: PAGE_SIZE as u32,
        root,
        freelist: NO_FREELIST,
        hwm,
        txid: 2,
    };
    // As bbolt's own copies: the newer meta on page 0, the one before it on page 1.
    out.write_all(&meta.page(0))?;
    out.write_all(&Meta { txid: 1, ..meta }.page(1))
}

/// Writes the buckets from page 2 on and the root leaf at `2 + reserved`, the pages between
/// the buckets' end and it left free; one walk of the pairs.
fn write_bounded<W: Write>(
    src: &dyn BucketSource,
    names: &[Vec<u8>],
    reserved: u64,
    mut out: W,
) -> io::Result<u64> {
    let root_at = 2 + reserved;
    let hwm = root_at + root_pages(names);
    write_metas(&mut out, root_at, hwm)?;
    let (roots, end) = write_buckets(src, names, 2, &mut out, false)?;
    if end > root_at {
        return Err(io::Error::other(
            "the buckets took more pages than their totals allow",
        ));
    }
    for _ in end..root_at {
        out.write_all(&ZEROS)?;
    }
    let mut pages = Pages {
        out: &mut out,
        next: root_at,
        layout_only: false,
    };
    root_leaf(names, &roots).write(&mut pages, &mut Vec::new())?;
    out.flush()?;
    Ok(hwm * PAGE_SIZE as u64)
}

/// Writes `src` as a bbolt file to `out`; returns the bytes written (pages × page size).
pub fn write_db<W: Write>(src: &dyn BucketSource, mut out: W) -> io::Result<u64> {
    let names = src.bucket_names();
    if let Some(reserved) = pages_at_most(src, &names)? {
        return write_bounded(src, &names, reserved, out);
    }
    tracing::info!("laying the backup out by a walk of its pairs: no bucket's totals bound it");
    let first = 2 + root_pages(&names);
    let (roots, hwm) = write_buckets(src, &names, first, io::sink(), true)?;
    write_metas(&mut out, 2, hwm)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One bucket of pairs with the given key and value lengths.
    struct Sized(Vec<(usize, usize)>);

    impl BucketSource for Sized {
        fn bucket_names(&self) -> Vec<Vec<u8>> {
            vec![b"key".to_vec()]
        }
        /// Keys end in their pair's index, so that keys of one length ascend.
        fn pairs(&self, _: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
            let value = vec![0u8; 1 << 16];
            for (i, &(k, v)) in self.0.iter().enumerate() {
                let mut key = vec![0u8; k.max(8)];
                let at = key.len() - 8;
                key[at..].copy_from_slice(&(i as u64).to_be_bytes());
                each(&key[..k.max(8)], &value[..v])?;
            }
            Ok(())
        }
    }

    fn bound_of(pairs: &[(usize, usize)]) -> PairBound {
        PairBound {
            count: pairs.len() as u64,
            bytes: pairs.iter().map(|&(k, v)| (k + v) as u64).sum(),
            largest: pairs
                .iter()
                .map(|&(k, v)| (k + v) as u64)
                .max()
                .unwrap_or(0),
            longest_key: pairs.iter().map(|&(k, _)| k as u64).max().unwrap_or(0),
        }
    }

    /// The bound never falls short of the pages the tree takes, and is close to them when
    /// the pairs are small; pairs over a page are not bounded.
    #[test]
    fn a_buckets_bound_covers_its_pages_and_stays_close() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1)) as usize
        };
        for case in 0..300 {
            let count = [0, 1, 2, 7, 240, 3000, 20_000][case % 7];
            let widest = [0, 40, 300, 1500, 4000][case % 5];
            let pairs: Vec<(usize, usize)> = (0..count)
                .map(|_| (17 + next(2), next(widest as u64 + 1)))
                .collect();
            let src = Sized(pairs.clone());
            let (_, used) =
                write_buckets(&src, &src.bucket_names(), 0, io::sink(), true).expect("layout");
            let bound = bound_of(&pairs);
            let Some(reserved) = bound.pages() else {
                assert!(
                    bound.largest + ELEMENT as u64 > PAGE_SIZE as u64,
                    "{bound:?}"
                );
                continue;
            };
            assert!(
                used <= reserved,
                "case {case}: {used} pages, bound {reserved}"
            );
            if count >= 3000 && widest <= 300 {
                assert!(
                    reserved - used <= used / 100 + LEAF_PAGES as u64,
                    "case {case}: {used} pages, bound {reserved}"
                );
            }
        }
    }

    /// A bounded bucket's file reads back whole, its root on its last page.
    #[test]
    fn a_bounded_file_puts_its_root_last_and_reads_back() {
        struct Bounded(Sized);
        impl BucketSource for Bounded {
            fn bucket_names(&self) -> Vec<Vec<u8>> {
                self.0.bucket_names()
            }
            fn pairs(&self, b: &[u8], each: &mut PairSink<'_>) -> io::Result<()> {
                self.0.pairs(b, each)
            }
            fn pair_bound(&self, _: &[u8]) -> io::Result<Option<PairBound>> {
                Ok(Some(bound_of(&self.0 .0)))
            }
        }
        let pairs: Vec<(usize, usize)> = (0..5000).map(|i| (17, 200 + i % 100)).collect();
        let mut file = Vec::new();
        let len = write_db(&Bounded(Sized(pairs.clone())), &mut file).expect("write");
        assert_eq!(len, file.len() as u64);
        let tmp = tempfile::tempfile().expect("tmp");
        std::io::Write::write_all(&mut &tmp, &file).expect("fill");
        let bolt = crate::bbolt::Bolt::open(tmp, len).expect("open");
        let buckets = bolt.buckets().expect("buckets");
        assert_eq!(buckets.len(), 1);
        let mut seen = 0;
        bolt.for_each(&buckets[0].1, &mut |_, v| {
            assert_eq!(v.len(), pairs[seen].1);
            seen += 1;
            Ok(())
        })
        .expect("pairs");
        assert_eq!(seen, pairs.len());
        let root = u64::from_le_bytes(
            file[PAGE_HEADER + 16..PAGE_HEADER + 24]
                .try_into()
                .expect("8"),
        );
        assert_eq!(
            root + 1,
            len / PAGE_SIZE as u64,
            "the root is the last page"
        );
    }
}
