//! The process's allocator: mimalloc instead of glibc's malloc, and memory
//! handed back to the OS when the gateway goes quiet.
//!
//! With glibc, a block freed on another worker thread than the one that
//! allocated it takes its arena's lock: that lock was ~10% of the
//! gateway's CPU per handshake (futex waits and wakes), malloc and free
//! another ~15% (BENCHMARKS.md, issue 21). Neither allocator gave back
//! the memory of a burst of connections once they had closed; mimalloc
//! does when each thread collects its heap, which [`on_worker_park`] does.
//! Built without transparent huge pages (`no_thp`): with them mimalloc
//! asked for 2 MiB pages and an idle gateway's RSS went from ~14 to ~23 MiB
//! (~16 MiB without).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The least time between two collections on one thread.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// For the runtime's `on_thread_park`: a worker with nothing to do gives
/// its heap's free memory back to the OS, at most once a second (under
/// load a worker parks often; a collection costs a walk over its heap).
pub fn on_worker_park() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if LAST
        .get()
        .is_some_and(|t| now.duration_since(t) < COLLECT_EVERY)
    {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: `mi_collect` takes no pointers; it frees what the calling
    // thread's heap no longer uses and may be called at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
