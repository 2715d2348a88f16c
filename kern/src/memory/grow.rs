//! How far to grow the kernel heap when an allocation does not fit.
//!
//! The buddy allocator can only serve a block of size `2^k` from a `2^k`-aligned free range, so
//! growing by exactly the request is not enough: the new range must contain an aligned block of
//! the request's rounded-up size.
use super::{PAGE_SIZE, align_up};

/// The smallest growth step, so that many small allocations do not each map a page.
pub const MIN_GROWTH: u64 = 256 * 1024;

/// Given the current end of the heap and a failed request, returns the new end: the range
/// `[top, new_top)` is mapped and handed to the allocator. `None` if the size overflows.
pub fn new_heap_top(top: u64, size: usize, align: usize) -> Option<u64> {
    let block = (size.max(align).max(1) as u64).checked_next_power_of_two()?;
    let block_start = align_up(top, block);
    let end = block_start.checked_add(block)?;
    let end = end.max(top.checked_add(MIN_GROWTH)?);
    Some(align_up(end, PAGE_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_contains_an_aligned_block_of_the_request() {
        for (top, size, align) in [(0x10_0000u64, 3 << 20, 8), (0x12_3000, 4096, 4096), (0x40_0000, 1, 1), (0x10_1000, 1 << 20, 16)] {
            let new_top = new_heap_top(top, size, align).unwrap();
            let block = (size.max(align) as u64).next_power_of_two();
            let start = align_up(top, block);
            assert!(start + block <= new_top, "top {top:#x} size {size:#x}: new top {new_top:#x}");
            assert!(new_top - top >= MIN_GROWTH);
            assert_eq!(new_top % PAGE_SIZE, 0);
        }
    }

    #[test]
    fn absurd_sizes_do_not_overflow() {
        assert_eq!(new_heap_top(0xffff_9000_0000_0000, usize::MAX, 8), None);
        assert_eq!(new_heap_top(u64::MAX - 4096, 8, 8), None);
    }
}
