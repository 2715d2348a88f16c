//! Memory management: physical frames, page tables, the kernel's virtual address space and heap.
//!
//! The bookkeeping (`frame`, `grow`) is plain logic tested on the host; the parts that touch page
//! tables and the CPU are built only for the kernel.
pub mod dma;
pub mod frame;
pub mod grow;

#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
pub use kernel::*;
#[cfg(target_os = "none")]
pub mod space;

pub const PAGE_SIZE: u64 = 4096;

/// Rounds `x` up to a multiple of `align` (a power of two).
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// `Box::new` that reports a failed allocation instead of ending the kernel (for allocations a
/// user can cause). Gives the value back on failure.
pub fn try_box<T>(value: T) -> Result<alloc::boxed::Box<T>, T> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(alloc::boxed::Box::new(value));
    }
    // SAFETY: the layout is T's and not zero-sized.
    let p = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return Err(value);
    }
    // SAFETY: `p` is a fresh allocation of T's layout; writing moves `value` in, and `Box::from_raw` takes ownership of memory allocated by the global allocator with that layout.
    unsafe {
        p.write(value);
        Ok(alloc::boxed::Box::from_raw(p))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn try_box_holds_the_value() {
        let b = super::try_box([7u64; 9]).unwrap_or_else(|_| panic!("allocation failed"));
        assert_eq!(b[8], 7);
        assert_eq!(*super::try_box(()).unwrap_or_else(|_| panic!()), ());
    }
}
