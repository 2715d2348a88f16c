//! Threads: a boxed closure runs on a stack of its own, obtained with `map`.
//!
//! The thread's exit publishes its code and wakes the joiner from assembly that touches
//! neither the stack nor the heap after the "done" store, so that the joiner may unmap the
//! stack and free the shared record as soon as it sees it.

use crate::sys;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, Ordering};
use sysabi::{Error, Sys};

/// Stack size of [`spawn`].
pub const DEFAULT_STACK: usize = 64 * 1024;

/// Shared between a thread and its joiner.
struct Packet {
    /// 0 while running, 1 once the thread will touch nothing of ours again.
    done: AtomicU32,
    code: AtomicU32,
}

/// What the new thread receives through `arg`.
struct Start {
    main: Box<dyn FnOnce() -> i32 + Send>,
    packet: *const Packet,
}

/// A running thread. Dropping it without [`JoinHandle::join`] detaches the thread (its stack
/// and record are then never freed).
pub struct JoinHandle {
    tid: u64,
    packet: *mut Packet,
    stack: *mut u8,
    stack_len: usize,
}

// SAFETY: the handle only holds addresses of memory that it alone frees, after the thread is
// done; any thread may do that.
unsafe impl Send for JoinHandle {}

impl JoinHandle {
    /// The thread's id.
    pub fn tid(&self) -> u64 {
        self.tid
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        // SAFETY: the packet lives until `join` frees it, which consumes the handle.
        unsafe { (*self.packet).done.load(Ordering::Acquire) != 0 }
    }

    /// Waits for the thread to end; its closure's result.
    pub fn join(self) -> i32 {
        // SAFETY: the packet lives until this function frees it below.
        let packet = unsafe { &*self.packet };
        while packet.done.load(Ordering::Acquire) == 0 {
            match sys::futex_wait(&packet.done, 0, 0) {
                // Woken, or the value changed before we slept: look again.
                Ok(()) | Err(Error::WouldBlock) | Err(Error::TimedOut) => {}
                // A kernel without futexes: poll politely.
                Err(_) => sys::yield_now(),
            }
        }
        let code = packet.code.load(Ordering::Acquire) as i32;
        // SAFETY: `done` is set only after the thread's last access to the packet and its stack (see `ulib_thread_finish`), so both are ours alone now.
        unsafe {
            drop(Box::from_raw(self.packet));
            let _ = sys::unmap(self.stack, self.stack_len);
        }
        code
    }
}

/// Starts a thread running `main`, with a [`DEFAULT_STACK`] stack.
pub fn spawn<F: FnOnce() -> i32 + Send + 'static>(main: F) -> Result<JoinHandle, Error> {
    spawn_with_stack(DEFAULT_STACK, main)
}

/// Starts a thread running `main` on a fresh stack of `stack_len` bytes.
pub fn spawn_with_stack<F: FnOnce() -> i32 + Send + 'static>(
    stack_len: usize,
    main: F,
) -> Result<JoinHandle, Error> {
    let stack_len = stack_len.max(4096).next_multiple_of(4096);
    let stack = sys::map(stack_len)?;
    let packet = Box::into_raw(Box::new(Packet { done: AtomicU32::new(0), code: AtomicU32::new(0) }));
    let start = Box::into_raw(Box::new(Start { main: Box::new(main), packet }));
    // `map` returns page-aligned memory, so the top is 16-byte aligned.
    let top = stack as u64 + stack_len as u64;
    // SAFETY: the entry never returns (it ends in thread_exit), and the stack is fresh memory that only the new thread uses until `join` sees it done.
    match unsafe { sys::thread_spawn(ulib_thread_entry as *const () as usize as u64, top, start as u64) } {
        Ok(tid) => Ok(JoinHandle { tid, packet, stack, stack_len }),
        Err(e) => {
            // SAFETY: the thread was not created, so nothing else owns these.
            unsafe {
                drop(Box::from_raw(start));
                drop(Box::from_raw(packet));
                let _ = sys::unmap(stack, stack_len);
            }
            Err(e)
        }
    }
}

/// Ends the calling thread.
pub fn exit(code: i32) -> ! {
    sys::thread_exit(code)
}

unsafe extern "C" {
    fn ulib_thread_entry(arg: u64) -> !;
    fn ulib_thread_finish(done: *const AtomicU32, code: u32) -> !;
}

// The thread entry aligns the stack for the SysV ABI whatever the kernel did with rsp, and
// keeps rdi (the `Start` pointer). The finish routine stores `done = 1`, then wakes the joiner
// and exits without touching memory: after the store the joiner may unmap this stack.
core::arch::global_asm!(
    ".globl ulib_thread_entry",
    "ulib_thread_entry:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {main}",
    "    ud2",
    ".globl ulib_thread_finish",
    "ulib_thread_finish:",
    "    mov edx, esi",
    "    mov dword ptr [rdi], 1",
    "    mov eax, {wake}",
    "    mov esi, 0x7fffffff",
    "    syscall",
    "    mov eax, {exit}",
    "    mov edi, edx",
    "    syscall",
    "    ud2",
    main = sym thread_main,
    wake = const Sys::FutexWake as u64,
    exit = const Sys::ThreadExit as u64,
);

extern "C" fn thread_main(arg: u64) -> ! {
    // SAFETY: `arg` is the `Start` that `spawn_with_stack` leaked for this thread alone.
    let start = unsafe { Box::from_raw(arg as usize as *mut Start) };
    let Start { main, packet } = *start;
    let code = main();
    // SAFETY: the packet outlives the thread: only `join` frees it, after `done`.
    unsafe {
        (*packet).code.store(code as u32, Ordering::Release);
        ulib_thread_finish(&(*packet).done, code as u32)
    }
}
