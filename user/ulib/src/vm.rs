//! Paging controls: the resident-set limit with the process's paging counters, and marking a
//! range (e.g. a buffer pool) that `vm.pick_victim` grafts see as flag bit 2.
//!
//! ```ignore
//! let old = ulib::vm::set_limit(64)?;          // at most 64 pages of pageable memory resident
//! ulib::vm::mark(pool, pool_len, true)?;        // the pool's pages carry the mark
//! let s = ulib::vm::stats()?;                   // faults, swap-ins (of marked pages), swap-outs
//! ```
use sysabi::{Error, Sys, VmStats};

use crate::sys::syscall3;

/// Sets the resident-set limit in pages (0 keeps it); returns the previous limit.
pub fn set_limit(pages: u64) -> Result<u64, Error> {
    // SAFETY: no pointer argument (the stats pointer is null).
    Error::result(unsafe { syscall3(Sys::VmLimit as u64, pages, 0, 0) })
}

/// This process's paging counters.
pub fn stats() -> Result<VmStats, Error> {
    let mut s = VmStats::default();
    let len = core::mem::size_of::<VmStats>() as u64;
    // SAFETY: `s` is a plain `repr(C)` struct of integers, writable for `len` bytes.
    Error::result(unsafe { syscall3(Sys::VmLimit as u64, 0, &raw mut s as usize as u64, len) })?;
    Ok(s)
}

/// Marks (`on`) or unmarks this process's pages in `[addr, addr + len)` (`addr` page-aligned).
pub fn mark(addr: *const u8, len: usize, on: bool) -> Result<(), Error> {
    // SAFETY: the kernel only records the range; it reads no memory through the pointer.
    Error::result(unsafe { syscall3(Sys::VmMark as u64, addr as usize as u64, len as u64, u64::from(on)) }).map(|_| ())
}
