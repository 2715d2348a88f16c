//! System calls: decoding the registers, checking every argument, and answering with a value or
//! a named error (see `sysabi` and `docs/syscalls.md`). One module per area:
//!
//! | module | calls |
//! |---|---|
//! | `process` | exit, spawn, wait, threads, sleep, yield, ids, clock, futexes |
//! | `memory` | map, unmap |
//! | `file` | the console (read, write) and the ramdisk's files |
//! | `graft` | graft points, load, attach, detach, statistics, list |
//! | `kstat` | the kernel's resource counters; fault injection for tests |
//!
//! Rules every area follows: a value that does not fit its field is `InvalidArgument`, never
//! truncated; a user pointer is checked before use and copies go through `uaccess`; a call
//! reports the first real problem (a log buffer it cannot write never hides a load's error).
mod file;
mod graft;
mod kstat;
mod memory;
mod process;
pub mod uaccess;

use sysabi::{Error, Sys};

use crate::arch::syscall::SyscallFrame;
use crate::task::{self, ProcessId};
use uaccess::copy_to_user;

pub fn dispatch(frame: &mut SyscallFrame) {
    kstat::init_fault_injection();
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    let result = match Sys::from_number(frame.rax) {
        // Fault injection counts the allocations of the calls that cannot block. A blocked
        // call would leave the mark on while other threads run (their page faults would be
        // counted as its allocations), and the exits must not fail at all.
        Some(sys) if injectable(sys) => crate::memory::on_syscall_path(|| call(sys, args)),
        Some(sys) => call(sys, args),
        None => Err(Error::NoSys),
    };
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => (-e.code()) as u64,
    };
    // sysret to a non-canonical address would fault in ring 0. User memory ends below the
    // canonical boundary, so this cannot happen; if it ever did, the process goes, not the kernel.
    if frame.rip >= sysabi::USER_END {
        log::warn!("system call returning to non-canonical {:#x}; process killed", frame.rip);
        task::exit_process(128 + 11);
    }
    // Back to user mode: a thread whose process ended while it was busy here dies now.
    task::leave_kernel();
}

/// Whether fault injection counts `sys`'s allocations: every call but those that may block
/// (waits, sleeps, the console and the disk) and the exits.
fn injectable(sys: Sys) -> bool {
    !matches!(
        sys,
        Sys::Exit
            | Sys::ThreadExit
            | Sys::Wait
            | Sys::Yield
            | Sys::Sleep
            | Sys::FutexWait
            | Sys::Read
            | Sys::Write
            | Sys::Open
            | Sys::Close
            | Sys::Seek
            | Sys::Stat
            | Sys::Fstat
            | Sys::Fsync
            | Sys::Sync
            | Sys::Unlink
            | Sys::Mkdir
            | Sys::Rmdir
            | Sys::Readdir
            | Sys::Rename
            | Sys::FsInfo
            | Sys::FailAlloc
    )
}

fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Exit | Sys::ThreadExit | Sys::Spawn | Sys::Wait | Sys::Yield | Sys::Sleep | Sys::GetPid | Sys::GetTid
        | Sys::Clock | Sys::ThreadSpawn | Sys::FutexWait | Sys::FutexWake => process::call(sys, a),
        Sys::Map | Sys::Unmap => memory::call(sys, a),
        Sys::Write | Sys::Read | Sys::FileList | Sys::FileRead | Sys::Open | Sys::Close | Sys::Seek | Sys::Stat
        | Sys::Fstat | Sys::Fsync | Sys::Sync | Sys::Unlink | Sys::Mkdir | Sys::Rmdir | Sys::Readdir | Sys::Rename
        | Sys::FsInfo => file::call(sys, a),
        Sys::GraftPoints | Sys::GraftLoad | Sys::GraftAttach | Sys::GraftDetach | Sys::GraftStats | Sys::GraftList
        | Sys::GraftInfo => {
            graft::call(sys, a)
        }
        Sys::VmLimit | Sys::VmMark => memory::call(sys, a),
        Sys::Kstat | Sys::FailAlloc => kstat::call(sys, a),
    }
}

/// The calling process.
fn me() -> Result<ProcessId, Error> {
    task::current_pid().ok_or(Error::NoSuchProcess)
}

/// A 32-bit argument; a larger value is `InvalidArgument`, never truncated.
fn arg_u32(raw: u64) -> Result<u32, Error> {
    u32::try_from(raw).map_err(|_| Error::InvalidArgument)
}

/// Reads `len` bytes (at most `max`) of user memory into a buffer allocated fallibly
/// (`NoMemory` if it cannot be).
fn read_user(addr: u64, len: u64, max: u64) -> Result<alloc::vec::Vec<u8>, Error> {
    if len > max {
        return Err(Error::InvalidArgument);
    }
    if len == 0 {
        return Ok(alloc::vec::Vec::new());
    }
    uaccess::check_range(addr, len)?;
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(len as usize).map_err(|_| Error::NoMemory)?;
    v.resize(len as usize, 0);
    uaccess::copy_from_user(&mut v, addr)?;
    Ok(v)
}

/// A UTF-8 string of `len` bytes (at most `max`) of user memory, read like `read_user`.
fn read_user_str(addr: u64, len: u64, max: u64) -> Result<alloc::string::String, Error> {
    alloc::string::String::from_utf8(read_user(addr, len, max)?).map_err(|_| Error::InvalidArgument)
}

/// Copies `bytes` to the user buffer `addr` of `cap` bytes; `BufferTooSmall` if they do not fit.
fn write_out(addr: u64, cap: u64, bytes: &[u8]) -> Result<u64, Error> {
    if (bytes.len() as u64) > cap {
        return Err(Error::BufferTooSmall);
    }
    copy_to_user(addr, bytes)?;
    Ok(bytes.len() as u64)
}
