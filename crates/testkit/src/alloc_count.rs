//! Counting the heap allocations a piece of code makes, for tests that
//! bound them. A test binary installs [`CountingAllocator`] as its global
//! allocator; every allocation then counts on the thread that makes it, and
//! [`allocations`] reads the calling thread's count. Counting per thread
//! keeps out whatever other threads do meanwhile (another server in the same
//! process, a database driver's own thread), so a test that runs the code
//! under test on one thread (a current-thread runtime) reads its cost alone.
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//! let before = allocations();
//! work();
//! let made = allocations() - before;
//! ```

// A global allocator is an `unsafe` trait: this module implements it by
// forwarding every call unchanged to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations (and reallocations, which
/// may move a block) per thread.
pub struct CountingAllocator;

fn count() {
    // `try_with`: a thread being torn down has no count left to add to.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds `GlobalAlloc`'s contract; counting touches only a const-initialised
// thread-local `Cell`, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every
        // allocation here is `System`'s).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`, and the caller's guarantee for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// How many allocations the calling thread has made since it started
/// (counted only under [`CountingAllocator`]).
pub fn allocations() -> u64 {
    COUNT.try_with(Cell::get).unwrap_or(0)
}
