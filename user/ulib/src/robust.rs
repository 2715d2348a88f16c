//! The kernel's resource counters (`kstat`), fault injection (`fail_alloc`), a raw six-argument
//! system call, and graft IR texts for the robustness tests (built in user space with
//! graft-ir's text parser, so the tests need no files in the ramdisk).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::arch::asm;
use sysabi::{Error, KStat, Sys};

use crate::sys;

/// Makes system call `n` with six arguments; returns the raw `rax`.
///
/// # Safety
/// Pointer arguments must describe memory the kernel may read or write as the call documents
/// (or the caller accepts what the kernel does with them: the fuzzer passes memory it does not
/// care about).
#[inline(always)]
pub unsafe fn syscall6(n: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the `syscall` instruction clobbers rcx (return rip) and r11 (rflags); the kernel preserves every other register and does not touch our stack. Memory safety of pointer arguments is the caller's contract.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as i64 => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The kernel's counters now.
pub fn kstat() -> Result<KStat, Error> {
    let mut k = KStat::default();
    let size = core::mem::size_of::<KStat>();
    // SAFETY: `k` is writable for `size` bytes and plain old data.
    let r = unsafe { sys::syscall2(Sys::Kstat as u64, &mut k as *mut KStat as u64, size as u64) };
    Error::result(r).map(|_| k)
}

/// Arms fault injection: the `n`th heap allocation on a kernel system-call path from now on
/// fails (0: none). Returns how many such allocations were made since the previous arming.
pub fn fail_alloc(n: u64) -> Result<u64, Error> {
    // SAFETY: no pointer arguments.
    Error::result(unsafe { sys::syscall1(Sys::FailAlloc as u64, n) })
}

/// The counters that must return to their baseline once the processes a test started have
/// exited, with their names (fault-injection counters, capacity and free memory excluded:
/// free memory is compared with a tolerance by the tests that need it).
pub fn baseline_fields(k: &KStat) -> [(&'static str, u64); 9] {
    [
        ("heap_requested", k.heap_requested),
        // The heap never gives back what it mapped: its frames count as free with it.
        ("frames_free+heap", k.frames_free + k.heap_mapped / 4096),
        ("grafts", k.grafts),
        ("slots", k.slots),
        ("graft_processes", k.graft_processes),
        ("charged", k.charged),
        ("locks_held", k.locks_held),
        ("lock_owners", k.lock_owners),
        ("open_files", k.open_files),
    ]
}

/// The counters of `now` that differ from `base`, printed (empty: back at the baseline).
pub fn differences(base: &KStat, now: &KStat) -> String {
    let mut out = String::new();
    for ((name, b), (_, n)) in baseline_fields(base).iter().zip(baseline_fields(now).iter()) {
        if b != n {
            out.push_str(&format!("{name} {b} -> {n}; "));
        }
    }
    out
}

/// Encodes graft IR text into a blob.
pub fn blob(text: &str) -> Result<Vec<u8>, String> {
    let module = graft_ir::parse(text).map_err(|e| format!("{e:?}"))?;
    graft_ir::encode(&module).map_err(|e| format!("{e:?}"))
}

/// A `sched.pick_next` graft that takes every lock number of its process (0..16) and answers 0.
pub fn every_lock_graft() -> String {
    let n = graft_ir::callables::LOCKS_PER_PROCESS;
    let mut t = String::from(
        "graft sched.pick_next\nresources data_size=8 fuel=100000\nimport imp0 = lock.get(i32) -> handle<lock>\nimport imp1 = lock.acquire(handle<lock>) -> i32\n\nfunction fn0 sched.pick_next(i32) -> i32 {\nb0(v0: i32):\n",
    );
    for i in 0..n {
        let c = 1 + 3 * i;
        t.push_str(&format!("    v{c} = iconst.i32 {i}\n    v{} = call_import imp0(v{c})\n    v{} = call_import imp1(v{})\n", c + 1, c + 2, c + 1));
    }
    let z = 1 + 3 * n;
    t.push_str(&format!("    v{z} = iconst.i32 0\n    return v{z}\n}}\n"));
    t
}

/// A `sched.pick_next` graft that calls every callable the kernel implements (locks, memory it
/// keeps allocated past the call, counters, trace, time) and has a data region of `data_size`
/// bytes (a power of two, 8 to 1 MiB).
pub fn every_callable_graft(data_size: u32) -> String {
    format!(
        "graft sched.pick_next
resources data_size={data_size} fuel=100000
import imp0 = lock.get(i32) -> handle<lock>
import imp1 = lock.acquire(handle<lock>) -> i32
import imp2 = lock.release(handle<lock>) -> i32
import imp3 = mem.alloc(i32) -> i32
import imp4 = mem.free(i32) -> i32
import imp5 = kern.counter_add(i32, i64) -> i64
import imp6 = kern.counter_get(i32) -> i64
import imp7 = debug.trace(i64)
import imp8 = time.now() -> i64

function fn0 sched.pick_next(i32) -> i32 {{
b0(v0: i32):
    v1 = iconst.i32 3
    v2 = call_import imp0(v1)
    v3 = call_import imp1(v2)
    v4 = call_import imp2(v2)
    v5 = iconst.i32 256
    v6 = call_import imp3(v5)
    v7 = iconst.i32 512
    v8 = call_import imp3(v7)
    v9 = call_import imp4(v6)
    v10 = iconst.i32 1
    v11 = iconst.i64 1
    v12 = call_import imp5(v10, v11)
    v13 = call_import imp6(v10)
    call_import imp7(v13)
    v14 = call_import imp8()
    v15 = iconst.i32 0
    return v15
}}
"
    )
}

/// Makes the kernel consult `sched.pick_next` for this process a few times (it does when the
/// process has more than one runnable thread): a second thread and this one yield in turn.
pub fn drive_scheduler() {
    let other = crate::thread::spawn(|| {
        for _ in 0..8 {
            sys::yield_now();
        }
        0
    });
    for _ in 0..8 {
        sys::yield_now();
    }
    if let Ok(h) = other {
        h.join();
    }
}
