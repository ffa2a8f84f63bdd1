//! The `meridian` binary allocates with mimalloc (src/main.rs). A reload parses the config
//! on a blocking thread into trees several times the size of the table they compile to, and
//! a replaced table is freed by whichever thread drops it last; mimalloc hands such pages
//! back to the system only when their thread next allocates, and a pooled blocking thread
//! may sit idle. [`release_freed`] does it at once, so RSS stays flat across reloads.
//!
//! [`configure`] sets what is read at run time: freed pages go back at once rather than
//! after a delay. (That mimalloc asks for no transparent huge pages is set when it is built:
//! the `no_thp` feature in Cargo.toml.)
#![allow(
    unsafe_code,
    reason = "mi_collect and mi_option_set are mimalloc's C API"
)]

/// `mi_option_purge_delay` of mimalloc's v2 API (`mi_option_e` in mimalloc.h), which the
/// bindings do not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's run-time options for a long-running server: freed memory purged without
/// delay. Called first thing in `main`; harmless where mimalloc is not the global allocator.
pub fn configure() {
    // SAFETY: mi_option_set takes two integers and changes only mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// Returns the calling thread's freed memory (and memory other threads freed into its heap)
/// to the system now. Harmless where mimalloc is not the global allocator (the test
/// binaries): its heaps are then empty.
pub fn release_freed() {
    // SAFETY: mi_collect takes only a flag, may be called from any thread at any time and
    // touches nothing but mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
