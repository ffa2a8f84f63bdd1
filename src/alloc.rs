//! The `meridian` binary allocates with mimalloc (src/main.rs). A reload parses the config
//! on a blocking thread into trees several times the size of the table they compile to, and
//! a replaced table is freed by whichever thread drops it last; mimalloc hands such pages
//! back to the system only when their thread next allocates, and a pooled blocking thread
//! may sit idle. [`release_freed`] does it at once, so RSS stays flat across reloads.
#![allow(unsafe_code, reason = "mi_collect is mimalloc's C API")]

/// Returns the calling thread's freed memory (and memory other threads freed into its heap)
/// to the system now. Harmless where mimalloc is not the global allocator (the test
/// binaries): its heaps are then empty.
pub fn release_freed() {
    // SAFETY: mi_collect takes only a flag, may be called from any thread at any time and
    // touches nothing but mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
