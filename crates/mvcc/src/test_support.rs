//! Helpers for the crate's unit tests: a put in a batch of its own, hooks a test sets into a
//! code path on its thread, and an allocator that counts what each thread holds, so a test
//! can bound the memory one read takes.

use crate::kvstore::Store;
use oxcd_api::etcdserverpb::PutRequest;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

pub(crate) fn put(store: &Store, key: &str, value: impl Into<Vec<u8>>) {
    let mut wb = store.begin_write().expect("write");
    wb.put(&PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
    .expect("put");
    wb.commit(false).expect("commit");
}

/// A point in a code path where a test on the same thread may run something of its own.
pub(crate) type Hook = RefCell<Option<Box<dyn FnMut()>>>;

/// Runs what a test set at `hook`, if anything.
pub(crate) fn fire(hook: &'static LocalKey<Hook>) {
    hook.with(|h| {
        if let Some(f) = h.borrow_mut().as_mut() {
            f()
        }
    });
}

/// Sets what `hook` runs on this thread.
pub(crate) fn set(hook: &'static LocalKey<Hook>, f: impl FnMut() + 'static) {
    hook.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

struct ThreadCounting;

// SAFETY: every call is passed to the system allocator unchanged; the counters are plain
// thread-local cells with no destructor, so touching them cannot allocate or re-enter.
unsafe impl GlobalAlloc for ThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(delta: isize) {
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

#[global_allocator]
static ALLOCATOR: ThreadCounting = ThreadCounting;

/// The most bytes this thread held at once while `work` ran, above what it held before.
pub(crate) fn peak_bytes_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = work();
    let peak = PEAK.with(Cell::get);
    (out, (peak - before).max(0) as usize)
}
