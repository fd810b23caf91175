//! A global allocator for tests that proves a value was wiped before its
//! memory went back: while armed, every freed block is searched for a
//! marker, and each block that still holds it is counted. A test installs
//! [`Watch`] as its `#[global_allocator]`, arms it around a drop and
//! expects no sightings; the same drop of an unwiped copy is its control.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Wraps the system allocator; see the crate documentation.
pub struct Watch {
    armed: AtomicBool,
    marker: [u8; MARKER_LEN],
    sightings: AtomicUsize,
}

/// Length of the marker the allocator looks for.
pub const MARKER_LEN: usize = 24;

impl Watch {
    /// An allocator that, while armed, looks for `marker` in freed blocks.
    pub const fn new(marker: [u8; MARKER_LEN]) -> Self {
        Watch {
            armed: AtomicBool::new(false),
            marker,
            sightings: AtomicUsize::new(0),
        }
    }

    /// Freed blocks that held the marker while `f` ran. One thread at a
    /// time: blocks freed by other threads meanwhile are searched too.
    pub fn sightings_during(&self, f: impl FnOnce()) -> usize {
        self.sightings.store(0, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
        f();
        self.armed.store(false, Ordering::SeqCst);
        self.sightings.load(Ordering::SeqCst)
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is passed to `System` unchanged; `dealloc` only reads
// the block it is given, which is valid for `layout.size()` bytes until it
// is handed on, and allocates nothing.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.armed.load(Ordering::SeqCst) && layout.size() >= MARKER_LEN {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes (the
            // caller's contract), read before it is freed.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(MARKER_LEN).any(|w| w == self.marker) {
                self.sightings.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}
