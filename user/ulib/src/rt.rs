//! Process start-up and the language items of a `no_std` program: `_start`, the global
//! allocator and the panic handler. Only built for the bare-metal target.

use crate::sys;
use alloc::vec::Vec;
use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use core::alloc::Layout;

// Entry convention: rdi = argc, rsi = pointer to argc (ptr: u64, len: u64) pairs of UTF-8
// strings on the initial stack. The stack is aligned again here (rather than trusting the
// kernel) so that `ulib_start` sees the SysV alignment (rsp + 8 a multiple of 16 at entry);
// rbp is zeroed to end frame-pointer walks.
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {start}",
    "    ud2",
    start = sym ulib_start,
);

unsafe extern "Rust" {
    /// Defined by the program with [`crate::entry!`].
    fn __ulib_user_main(args: &[&str]) -> i32;
}

extern "C" fn ulib_start(argc: u64, argv: *const [u64; 2]) -> ! {
    let mut args: Vec<&'static str> = Vec::new();
    // SAFETY: the kernel put `argc` (pointer, length) pairs of UTF-8 bytes on the initial stack, which stays mapped for the life of the process and is never written by us above rsp. Invalid UTF-8 reads as an empty argument rather than trusting it.
    unsafe {
        if !argv.is_null() {
            for i in 0..argc.min(4096) as usize {
                let [p, len] = *argv.add(i);
                let bytes = core::slice::from_raw_parts(p as usize as *const u8, len as usize);
                args.push(core::str::from_utf8(bytes).unwrap_or(""));
            }
        }
    }
    // SAFETY: `entry!` defines the symbol with exactly this signature.
    let code = unsafe { __ulib_user_main(&args) };
    crate::console::flush();
    sys::exit(code)
}

/// Heap chunks are at least this big, so that small allocations do not each cost a `map`.
const MIN_CHUNK: usize = 256 * 1024;

/// Grows the heap with fresh `map`ped memory when an allocation does not fit. The chunk is
/// twice the rounded-up request, so that it holds a block of the request's size at the
/// request's (power-of-two) alignment wherever `map` places it.
fn grow(heap: &mut Heap<32>, layout: &Layout) {
    let want = layout.size().max(layout.align()).next_power_of_two();
    let chunk = want.saturating_mul(2).max(MIN_CHUNK);
    if let Ok(addr) = sys::map(chunk) {
        // SAFETY: `map` returned `chunk` fresh, zeroed, read-write bytes that nothing else uses and that are never unmapped.
        unsafe { heap.add_to_heap(addr as usize, addr as usize + chunk) };
    }
    // On failure the allocation returns null and the allocation-error path aborts.
}

#[global_allocator]
static HEAP: LockedHeapWithRescue<32> = LockedHeapWithRescue::new(grow);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut err = crate::console::Stderr;
    let _ = match info.location() {
        Some(l) => writeln!(err, "panic at {}:{}: {}", l.file(), l.line(), info.message()),
        None => writeln!(err, "panic: {}", info.message()),
    };
    sys::exit(101)
}
