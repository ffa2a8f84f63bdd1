//! Read-only arrays in memory the kernel is asked to back with 2 MiB pages.
//!
//! The GeoIP range tables are several megabytes read at random, one lookup per query: with
//! 4 KiB pages nearly every lookup also misses the TLB, and under virtualisation a TLB miss
//! walks two sets of page tables. A handful of huge pages covers a whole table.
#![allow(unsafe_code, reason = "maps and frees its own anonymous memory")]
use std::ops::Deref;
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;

/// A slice copied into its own anonymous mapping, aligned to and sized in huge pages, with
/// `MADV_HUGEPAGE` set before the first write. Where that mapping cannot be made, it is an
/// ordinary heap allocation: the same contents, without the advice.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Length of the mapping; 0 when the contents are on the heap (a leaked `Box<[T]>`).
    mapped: usize,
}

// A read-only array: sharing and sending it is as safe as for `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// The first `len` items of `items` (fewer if it runs out), written straight into the
    /// mapping: no temporary copy of a large table on the heap.
    pub fn collect(len: usize, items: impl Iterator<Item = T>) -> HugeSlice<T> {
        let bytes = len * std::mem::size_of::<T>();
        // Smaller arrays stay on the heap: a huge page each would cost more memory than TLB
        // misses on them cost time.
        if bytes >= HUGE_PAGE
            && let Some((ptr, mapped)) = map_huge(bytes)
        {
            let ptr = ptr.cast::<T>();
            let mut written = 0;
            for item in items.take(len) {
                // SAFETY: the mapping holds at least `len` items, page-aligned (so aligned
                // for T), writable and not shared with anything.
                unsafe { ptr.as_ptr().add(written).write(item) };
                written += 1;
            }
            return HugeSlice {
                ptr,
                len: written,
                mapped,
            };
        }
        let boxed: Box<[T]> = items.take(len).collect();
        let len = boxed.len();
        let ptr = NonNull::from(Box::leak(boxed)).cast::<T>();
        HugeSlice {
            ptr,
            len,
            mapped: 0,
        }
    }
}

/// An anonymous read-write mapping of at least `bytes`, starting on a huge-page boundary,
/// advised for huge pages, and its length. The length is rounded up to the base page only:
/// the kernel backs each whole 2 MiB of it with a huge page and the part past the last one
/// with base pages, so the rounding never costs up to a huge page of resident memory.
fn map_huge(bytes: usize) -> Option<(NonNull<u8>, usize)> {
    // SAFETY: sysconf reads a constant of the system.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let len = bytes.next_multiple_of(page);
    // Over-map by one huge page, then trim the unaligned head and the tail.
    let over = len + HUGE_PAGE;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = over - head - len;
    // SAFETY: both ranges lie inside the mapping just made and are page-aligned (mmap returns
    // page-aligned addresses; `len` and `HUGE_PAGE` are multiples of the page size).
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Advice only: without transparent huge pages this changes nothing.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    NonNull::new(aligned as *mut u8).map(|p| (p, len))
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised items for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `map_huge` with this length, or from `Box::leak` of a boxed
        // slice of `len` items; either is released exactly once, here.
        unsafe {
            if self.mapped > 0 {
                libc::munmap(self.ptr.as_ptr().cast(), self.mapped);
            } else {
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.ptr.as_ptr(),
                    self.len,
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_given_mapped_or_not() {
        let big: Vec<u64> = (0..300_000).map(|i| i * 7).collect();
        let small = [1u32, 2, 3];
        let h_big = HugeSlice::collect(big.len(), big.iter().copied());
        let h_small = HugeSlice::collect(small.len(), small.iter().copied());
        // Rounded up to a base page, not to a huge page.
        let bytes = big.len() * 8;
        assert!(
            h_big.mapped >= bytes && h_big.mapped < bytes + 65536,
            "{}",
            h_big.mapped
        );
        assert_eq!(h_big.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(&*h_big, &big[..]);
        assert_eq!(h_small.mapped, 0);
        assert_eq!(&*h_small, &small[..]);
        let empty: HugeSlice<u32> = HugeSlice::collect(0, std::iter::empty());
        assert!(empty.is_empty());
        // A short iterator gives a short slice, never uninitialised items.
        let short = HugeSlice::collect(big.len(), big.iter().copied().take(10));
        assert_eq!(&*short, &big[..10]);
    }
}
