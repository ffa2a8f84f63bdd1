//! The `meridian` binary allocates with mimalloc (src/main.rs). A reload parses the config
//! on a blocking thread into trees several times the size of the table they compile to, and
//! a replaced table is freed by whichever thread drops it last; mimalloc hands such pages
//! back to the system only when their thread next allocates, and a pooled blocking thread
//! may sit idle. [`release_freed`] does it at once, so RSS stays flat across reloads.
//!
//! [`configure`] sets the options the binary runs with before anything is served: memory is
//! committed as it is touched and freed pages go back at once, so the resident set is what
//! is in use (mimalloc's defaults commit its first arena eagerly, on transparent huge pages,
//! and keep freed pages for a while: about 12 MiB more at start with one GeoIP database).
#![allow(
    unsafe_code,
    reason = "mi_collect and mi_option_set are mimalloc's C API"
)]

/// Options of mimalloc's v2 API (`mi_option_e` in mimalloc.h) the bindings do not name.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's options for a long-running server: arenas committed on demand, freed
/// memory purged without delay. Called first thing in `main`; harmless where mimalloc is not
/// the global allocator.
pub fn configure() {
    // SAFETY: mi_option_set takes two integers and changes only mimalloc's option table;
    // unknown or late options are ignored by it.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

/// Returns the calling thread's freed memory (and memory other threads freed into its heap)
/// to the system now. Harmless where mimalloc is not the global allocator (the test
/// binaries): its heaps are then empty.
pub fn release_freed() {
    // SAFETY: mi_collect takes only a flag, may be called from any thread at any time and
    // touches nothing but mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
