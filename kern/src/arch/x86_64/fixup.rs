//! Exception fix-ups: kernel code that may touch memory that is not there (copies from and to
//! user space, probes) runs through the routines here. Each instruction allowed to fault has an
//! entry in the `ex_table` linker section saying where execution continues instead; the page
//! fault handler looks the faulting RIP up and, when found, resumes at the fix-up rather than
//! treating the fault as a kernel bug. The fault address is recorded for the caller.
//!
//! Entries are pairs of 32-bit offsets relative to the entry itself (as in Linux), so the table
//! needs no relocations in our position-independent kernel.
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::trap::TrapFrame;

// `checked_copy(dst: rdi, src: rsi, len: rdx) -> rax = bytes left uncopied (0: success)`.
// On a fault inside `rep movsb`, RCX still holds the count not yet copied; the fix-up returns it.
global_asm!(
    r#"
    .section .text.checked_copy, "ax"
    .global checked_copy
checked_copy:
    movq %rdx, %rcx
1:  rep movsb
    xorl %eax, %eax
    ret
2:  movq %rcx, %rax
    ret
    .pushsection ex_table, "a"
    .balign 4
    .long 1b - .
    .long 2b - .
    .popsection
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn checked_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static __start_ex_table: ExEntry;
    static __stop_ex_table: ExEntry;
}

#[repr(C)]
struct ExEntry {
    insn: i32,
    fixup: i32,
}

impl ExEntry {
    fn resolve(&self) -> (u64, u64) {
        let base = self as *const ExEntry as u64;
        let insn = base.wrapping_add_signed(i64::from(self.insn));
        let fixup = (base + 4).wrapping_add_signed(i64::from(self.fixup));
        (insn, fixup)
    }
}

/// The address of the last fault that a fix-up recovered from.
static LAST_FAULT_ADDR: AtomicU64 = AtomicU64::new(0);
static FIXUPS: AtomicU64 = AtomicU64::new(0);

fn table() -> &'static [ExEntry] {
    // SAFETY: the linker defines both symbols around the `ex_table` section, which holds only `ExEntry` records emitted above.
    unsafe {
        let start = core::ptr::addr_of!(__start_ex_table);
        let stop = core::ptr::addr_of!(__stop_ex_table);
        let len = (stop as usize - start as usize) / core::mem::size_of::<ExEntry>();
        core::slice::from_raw_parts(start, len)
    }
}

/// Called by the page fault handler: if the faulting instruction has a fix-up, continue there.
pub(super) fn try_fixup(frame: &mut TrapFrame, fault_addr: u64) -> bool {
    for entry in table() {
        let (insn, fixup) = entry.resolve();
        if insn == frame.rip {
            LAST_FAULT_ADDR.store(fault_addr, Ordering::Relaxed);
            FIXUPS.fetch_add(1, Ordering::Relaxed);
            frame.rip = fixup;
            return true;
        }
    }
    false
}

/// How many faults have been recovered through fix-ups since boot.
pub fn fixup_count() -> u64 {
    FIXUPS.load(Ordering::Relaxed)
}

/// A memory access that faulted, recovered by a fix-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFault {
    /// The address whose access faulted.
    pub addr: u64,
    /// Bytes copied before the fault.
    pub copied: usize,
}

/// Copies `len` bytes from `src` to `dst`, either of which may be unmapped. Returns where it
/// faulted instead of crashing the kernel.
///
/// # Safety
/// Mapped parts of `dst` must be memory the caller may write (not kernel data in use), and the
/// ranges must not overlap.
pub unsafe fn copy_checked(dst: *mut u8, src: *const u8, len: usize) -> Result<(), MemoryFault> {
    // SAFETY: forwarded from the caller; faults are caught by the `ex_table` entry.
    let left = unsafe { checked_copy(dst, src, len) };
    if left == 0 {
        Ok(())
    } else {
        Err(MemoryFault { addr: LAST_FAULT_ADDR.load(Ordering::Relaxed), copied: len - left })
    }
}

/// Reads a `u64` at an address that may not be mapped.
pub fn probe_read_u64(addr: u64) -> Result<u64, MemoryFault> {
    let mut value = 0u64;
    // SAFETY: the destination is a local; reading any source address is allowed because a fault is recovered by the fix-up, and reading mapped kernel memory has no side effects on RAM.
    unsafe { copy_checked(&mut value as *mut u64 as *mut u8, addr as *const u8, 8) }?;
    Ok(value)
}

#[cfg(feature = "ktest")]
mod ktests {
    use super::*;
    use crate::{check, check_eq, ktest};

    /// Lowest canonical address of the lower half's last 2 GiB: never mapped in the kernel.
    const UNMAPPED: u64 = 0x0000_7fff_0000_0000;

    ktest! {
        fn page_fault_on_unmapped_address_is_caught_and_reported() -> TestResult {
            let before = fixup_count();
            let fault = probe_read_u64(UNMAPPED + 0x123);
            check_eq!(fault, Err(MemoryFault { addr: UNMAPPED + 0x123, copied: 0 }));
            check_eq!(fixup_count(), before + 1);
            // The kernel is fine afterwards: a mapped read works.
            let x = 42u64;
            check_eq!(probe_read_u64(&x as *const u64 as u64), Ok(42));
            Ok(())
        }

        fn checked_copy_stops_at_the_first_missing_page() -> TestResult {
            // Copy from the last 16 bytes of a mapped buffer into ... an unmapped destination
            // that starts mid-way: bytes before the hole are copied, the fault address is exact.
            let src = [7u8; 64];
            let mut dst = [0u8; 64];
            // SAFETY: both are locals of the right size.
            let ok = unsafe { copy_checked(dst.as_mut_ptr(), src.as_ptr(), 64) };
            check_eq!(ok, Ok(()));
            check!(dst.iter().all(|&b| b == 7));
            // SAFETY: the destination is a local; the source is unmapped, which is recovered.
            let err = unsafe { copy_checked(dst.as_mut_ptr(), UNMAPPED as *const u8, 16) };
            check_eq!(err.map_err(|f| (f.addr, f.copied)), Err((UNMAPPED, 0)));
            Ok(())
        }
    }
}
