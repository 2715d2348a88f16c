//! The system calls: raw `syscall` wrappers and a typed API over them.
//!
//! The raw functions ([`syscall0`] ... [`syscall5`]) are `unsafe` because the kernel writes
//! through pointer arguments; the typed functions take slices and return
//! `Result<_, sysabi::Error>`. The conventions (registers, negative error codes) are those of
//! the `sysabi` crate.

use core::arch::asm;
use core::sync::atomic::AtomicU32;
use sysabi::{DirEntryHeader, Error, FileStat, FsInfo, GraftStats, Sys};

/// Makes system call `n` with up to five arguments; returns the raw `rax`.
///
/// # Safety
/// Pointer arguments must describe memory the kernel may read or write as the call documents.
#[inline(always)]
pub unsafe fn syscall5(n: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the `syscall` instruction clobbers rcx (return rip) and r11 (rflags); the kernel preserves every other register and does not touch our stack. Memory safety of pointer arguments is the caller's contract.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as i64 => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4, in("r8") a5,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See [`syscall5`].
///
/// # Safety
/// As for [`syscall5`].
#[inline(always)]
pub unsafe fn syscall4(n: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { syscall5(n, a1, a2, a3, a4, 0) }
}

/// See [`syscall5`].
///
/// # Safety
/// As for [`syscall5`].
#[inline(always)]
pub unsafe fn syscall3(n: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { syscall5(n, a1, a2, a3, 0, 0) }
}

/// See [`syscall5`].
///
/// # Safety
/// As for [`syscall5`].
#[inline(always)]
pub unsafe fn syscall2(n: u64, a1: u64, a2: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { syscall5(n, a1, a2, 0, 0, 0) }
}

/// See [`syscall5`].
///
/// # Safety
/// As for [`syscall5`].
#[inline(always)]
pub unsafe fn syscall1(n: u64, a1: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { syscall5(n, a1, 0, 0, 0, 0) }
}

/// See [`syscall5`].
///
/// # Safety
/// As for [`syscall5`].
#[inline(always)]
pub unsafe fn syscall0(n: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { syscall5(n, 0, 0, 0, 0, 0) }
}

// The layout documented in docs/syscalls.md; a change there is an ABI change.
const _: () = assert!(core::mem::size_of::<GraftStats>() == 168);

fn result(raw: i64) -> Result<u64, Error> {
    Error::result(raw)
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// Ends the process (all its threads) with `code`. Exit codes travel as the low 32 bits, so
/// `wait` gives back the same `i32`.
pub fn exit(code: i32) -> ! {
    // SAFETY: no pointer arguments.
    unsafe { syscall1(Sys::Exit as u64, code as u32 as u64) };
    // The kernel never returns from exit; if it did, do not run on into undefined code.
    loop {
        core::hint::spin_loop();
    }
}

/// Starts the ramdisk program `path` with `args` encoded as [`crate::args::encode`] does
/// (NUL-separated). Prefer [`crate::process::spawn`], which takes a `&[&str]`.
pub fn spawn_raw(path: &str, encoded_args: &[u8]) -> Result<u64, Error> {
    // SAFETY: both slices are readable for their lengths; the kernel only reads them.
    result(unsafe {
        syscall4(
            Sys::Spawn as u64,
            ptr(path.as_ptr()),
            path.len() as u64,
            ptr(encoded_args.as_ptr()),
            encoded_args.len() as u64,
        )
    })
}

/// Waits for child `pid` to exit; its exit code.
pub fn wait(pid: u64) -> Result<i32, Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall1(Sys::Wait as u64, pid) }).map(|c| c as u32 as i32)
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    // SAFETY: no pointer arguments. Yield cannot fail.
    let _ = unsafe { syscall0(Sys::Yield as u64) };
}

/// Blocks for at least `ms` milliseconds.
pub fn sleep(ms: u64) -> Result<(), Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall1(Sys::Sleep as u64, ms) }).map(drop)
}

/// The caller's process id.
pub fn getpid() -> u64 {
    // SAFETY: no pointer arguments. getpid cannot fail; an error reads as 0, never a real pid.
    result(unsafe { syscall0(Sys::GetPid as u64) }).unwrap_or(0)
}

/// The calling thread's id.
pub fn gettid() -> u64 {
    // SAFETY: no pointer arguments. gettid cannot fail; an error reads as 0.
    result(unsafe { syscall0(Sys::GetTid as u64) }).unwrap_or(0)
}

/// Writes to `fd` (1 or 2: the console; 3 and up: an open file, at its offset); the count
/// written, possibly short.
pub fn write(fd: u64, buf: &[u8]) -> Result<usize, Error> {
    // SAFETY: `buf` is readable for its length; the kernel only reads it.
    result(unsafe { syscall3(Sys::Write as u64, fd, ptr(buf.as_ptr()), buf.len() as u64) })
        .map(|n| n as usize)
}

/// Writes all of `buf` to `fd`, retrying short writes.
pub fn write_all(fd: u64, mut buf: &[u8]) -> Result<(), Error> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 || n > buf.len() {
            // A console that takes nothing (or claims more than it was given) will not take the
            // rest either: give up instead of spinning.
            return Err(Error::InvalidArgument);
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads from `fd` (0: the console, which blocks until at least one byte is there; 3 and up:
/// an open file, from its offset, 0 at the end).
pub fn read(fd: u64, buf: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `buf` is writable for its length and nothing else aliases it during the call.
    result(unsafe { syscall3(Sys::Read as u64, fd, ptr(buf.as_mut_ptr()), buf.len() as u64) })
        .map(|n| (n as usize).min(buf.len()))
}

/// Monotonic time since boot in nanoseconds.
pub fn clock() -> u64 {
    // SAFETY: no pointer arguments. clock cannot fail; an error reads as 0.
    result(unsafe { syscall0(Sys::Clock as u64) }).unwrap_or(0)
}

/// Maps `len` bytes (rounded up to pages) of zeroed read-write memory; its address.
pub fn map(len: usize) -> Result<*mut u8, Error> {
    // SAFETY: no pointer arguments; the kernel picks an address that is unused in our space.
    result(unsafe { syscall2(Sys::Map as u64, len as u64, 0) }).map(|a| a as usize as *mut u8)
}

/// Unmaps pages returned by [`map`].
///
/// # Safety
/// Nothing may use `[addr, addr + len)` afterwards.
pub unsafe fn unmap(addr: *mut u8, len: usize) -> Result<(), Error> {
    // SAFETY: the caller promises the range is no longer used.
    result(unsafe { syscall2(Sys::Unmap as u64, ptr(addr), len as u64) }).map(drop)
}

/// Loads a graft blob. On `Err(Rejected)`, `log` holds the verifier's log (truncated to its
/// length; the kernel does not say how much it wrote, see [`crate::graft::load`]).
pub fn graft_load(blob: &[u8], log: &mut [u8]) -> Result<u32, Error> {
    // SAFETY: `blob` is readable and `log` writable for their lengths.
    result(unsafe {
        syscall4(
            Sys::GraftLoad as u64,
            ptr(blob.as_ptr()),
            blob.len() as u64,
            ptr(log.as_mut_ptr()),
            log.len() as u64,
        )
    })
    .map(|id| id as u32)
}

/// Attaches graft `id` to `point` for process `target_pid` (0: the caller).
pub fn graft_attach(id: u32, point: &str, target_pid: u64) -> Result<(), Error> {
    // SAFETY: `point` is readable for its length.
    result(unsafe {
        syscall4(
            Sys::GraftAttach as u64,
            id as u64,
            ptr(point.as_ptr()),
            point.len() as u64,
            target_pid,
        )
    })
    .map(drop)
}

/// Detaches graft `id` from its point.
pub fn graft_detach(id: u32) -> Result<(), Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall1(Sys::GraftDetach as u64, id as u64) }).map(drop)
}

/// The statistics of graft `id`.
pub fn graft_stats(id: u32) -> Result<GraftStats, Error> {
    let mut stats = GraftStats::default();
    let len = core::mem::size_of::<GraftStats>();
    // SAFETY: `stats` is a plain `repr(C)` struct of integers, writable for `len` bytes; any bytes the kernel writes form a valid value.
    let n = result(unsafe {
        syscall3(Sys::GraftStats as u64, id as u64, ptr(&raw mut stats), len as u64)
    })?;
    if n as usize != len {
        // A kernel built against another GraftStats layout: do not pretend we understood it.
        return Err(Error::InvalidArgument);
    }
    Ok(stats)
}

/// Writes the ids of the caller's loaded grafts to `out`; the count (may exceed `out.len()`
/// if the kernel reports the total, see [`crate::graft::list`]).
pub fn graft_list(out: &mut [u32]) -> Result<usize, Error> {
    // SAFETY: `out` is writable for `out.len()` u32s.
    result(unsafe {
        syscall2(Sys::GraftList as u64, ptr(out.as_mut_ptr()), out.len() as u64)
    })
    .map(|n| n as usize)
}

/// The graft points' names, each followed by a NUL byte; the bytes written.
pub fn graft_points(out: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `out` is writable for its length.
    result(unsafe { syscall2(Sys::GraftPoints as u64, ptr(out.as_mut_ptr()), out.len() as u64) })
        .map(|n| (n as usize).min(out.len()))
}

/// Graft `id` described as text (its point, state, code, limits, statistics and IR); the bytes
/// written.
pub fn graft_info(id: u32, out: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `out` is writable for its length.
    result(unsafe { syscall3(Sys::GraftInfo as u64, id as u64, ptr(out.as_mut_ptr()), out.len() as u64) })
        .map(|n| (n as usize).min(out.len()))
}

/// The ramdisk's file names, each followed by a NUL byte; the bytes written.
pub fn file_list(out: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `out` is writable for its length.
    result(unsafe { syscall2(Sys::FileList as u64, ptr(out.as_mut_ptr()), out.len() as u64) })
        .map(|n| (n as usize).min(out.len()))
}

/// Reads ramdisk file `path` from `offset` into `buf`; 0 at the end.
pub fn file_read(path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `path` is readable and `buf` writable for their lengths.
    result(unsafe {
        syscall5(
            Sys::FileRead as u64,
            ptr(path.as_ptr()),
            path.len() as u64,
            offset,
            ptr(buf.as_mut_ptr()),
            buf.len() as u64,
        )
    })
    .map(|n| (n as usize).min(buf.len()))
}

/// Starts a thread at `entry(arg)` on the stack whose top is `stack_top`.
///
/// # Safety
/// `entry` must be code that never returns (it must end with `thread_exit`), and the stack
/// must stay mapped and unused by anything else until the thread has exited.
pub unsafe fn thread_spawn(entry: u64, stack_top: u64, arg: u64) -> Result<u64, Error> {
    // SAFETY: the caller guarantees the entry and the stack.
    result(unsafe { syscall3(Sys::ThreadSpawn as u64, entry, stack_top, arg) })
}

/// Ends the calling thread; the last thread's exit ends the process with `code`.
pub fn thread_exit(code: i32) -> ! {
    // SAFETY: no pointer arguments.
    unsafe { syscall1(Sys::ThreadExit as u64, code as u32 as u64) };
    loop {
        core::hint::spin_loop();
    }
}

/// Blocks while `*word == expected`, until woken or `timeout_ms` passes (0: forever).
/// `Err(WouldBlock)` if the value differed, `Err(TimedOut)` at the time-out.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) -> Result<(), Error> {
    // SAFETY: `word` is a live, aligned u32 that the kernel only reads.
    result(unsafe {
        syscall3(Sys::FutexWait as u64, ptr(word.as_ptr()), expected as u64, timeout_ms)
    })
    .map(drop)
}

/// Wakes up to `count` threads waiting on `word`; how many were woken.
pub fn futex_wake(word: &AtomicU32, count: u32) -> Result<u64, Error> {
    // SAFETY: the kernel uses the address only as a key.
    result(unsafe { syscall2(Sys::FutexWake as u64, ptr(word.as_ptr()), count as u64) })
}

// The file system's records, as docs/syscalls.md lays them out; a change there is an ABI change.
const _: () = assert!(core::mem::size_of::<FileStat>() == 48);
const _: () = assert!(core::mem::size_of::<DirEntryHeader>() == 16);
const _: () = assert!(core::mem::size_of::<FsInfo>() == 88);

/// Opens `path` on the disk's file system with [`sysabi::open`] flags; the descriptor (3 or
/// more). Prefer [`crate::file::File::open`], which closes it when dropped.
pub fn open(path: &str, flags: u64) -> Result<u64, Error> {
    // SAFETY: `path` is readable for its length; the kernel only reads it.
    result(unsafe { syscall3(Sys::Open as u64, ptr(path.as_ptr()), path.len() as u64, flags) })
}

/// Closes descriptor `fd`.
pub fn close(fd: u64) -> Result<(), Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall1(Sys::Close as u64, fd) }).map(drop)
}

/// Moves the offset of `fd` to `offset` relative to `whence` ([`sysabi::whence`]); the new
/// offset from the start. A position before the start is `InvalidArgument`.
pub fn seek(fd: u64, offset: i64, whence: u64) -> Result<u64, Error> {
    // SAFETY: no pointer arguments; the offset travels as its two's-complement bits.
    result(unsafe { syscall3(Sys::Seek as u64, fd, offset as u64, whence) })
}

/// Checks that a record call wrote exactly one `T`.
fn whole_record<T>(written: u64) -> Result<(), Error> {
    if written as usize == core::mem::size_of::<T>() {
        Ok(())
    } else {
        // A kernel built against another layout: do not pretend we understood it.
        Err(Error::InvalidArgument)
    }
}

/// The status of the file at `path`.
pub fn stat(path: &str) -> Result<FileStat, Error> {
    let mut st = FileStat::default();
    let len = core::mem::size_of::<FileStat>();
    // SAFETY: `path` is readable for its length; `st` is a plain `repr(C)` struct of integers, writable for `len` bytes, and any bytes the kernel writes form a valid value.
    let n = result(unsafe {
        syscall4(Sys::Stat as u64, ptr(path.as_ptr()), path.len() as u64, ptr(&raw mut st), len as u64)
    })?;
    whole_record::<FileStat>(n)?;
    Ok(st)
}

/// The status of the open file `fd`.
pub fn fstat(fd: u64) -> Result<FileStat, Error> {
    let mut st = FileStat::default();
    let len = core::mem::size_of::<FileStat>();
    // SAFETY: as in `stat`: a plain integer struct, writable for `len` bytes.
    let n = result(unsafe { syscall3(Sys::Fstat as u64, fd, ptr(&raw mut st), len as u64) })?;
    whole_record::<FileStat>(n)?;
    Ok(st)
}

/// Returns once the data and metadata of `fd` are on the disk.
pub fn fsync(fd: u64) -> Result<(), Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall1(Sys::Fsync as u64, fd) }).map(drop)
}

/// Writes every dirty block of the file system and waits for them.
pub fn sync() -> Result<(), Error> {
    // SAFETY: no pointer arguments.
    result(unsafe { syscall0(Sys::Sync as u64) }).map(drop)
}

/// Calls `n(path, path_len)`.
fn path_call(n: Sys, path: &str) -> Result<(), Error> {
    // SAFETY: `path` is readable for its length; the kernel only reads it.
    result(unsafe { syscall2(n as u64, ptr(path.as_ptr()), path.len() as u64) }).map(drop)
}

/// Removes the file at `path` (not a directory).
pub fn unlink(path: &str) -> Result<(), Error> {
    path_call(Sys::Unlink, path)
}

/// Makes the directory `path`.
pub fn mkdir(path: &str) -> Result<(), Error> {
    path_call(Sys::Mkdir, path)
}

/// Removes the empty directory `path`.
pub fn rmdir(path: &str) -> Result<(), Error> {
    path_call(Sys::Rmdir, path)
}

/// Writes the entries of directory `path` into `out` as [`DirEntryHeader`] records; the bytes
/// written. [`crate::file::read_dir`] grows the buffer and parses the records.
pub fn readdir(path: &str, out: &mut [u8]) -> Result<usize, Error> {
    // SAFETY: `path` is readable and `out` writable for their lengths.
    result(unsafe {
        syscall4(
            Sys::Readdir as u64,
            ptr(path.as_ptr()),
            path.len() as u64,
            ptr(out.as_mut_ptr()),
            out.len() as u64,
        )
    })
    .map(|n| n as usize)
}

/// Moves or renames `from` to `to`.
pub fn rename(from: &str, to: &str) -> Result<(), Error> {
    // SAFETY: both strings are readable for their lengths; the kernel only reads them.
    result(unsafe {
        syscall4(Sys::Rename as u64, ptr(from.as_ptr()), from.len() as u64, ptr(to.as_ptr()), to.len() as u64)
    })
    .map(drop)
}

/// The file system's sizes and the buffer cache's counters.
pub fn fsinfo() -> Result<FsInfo, Error> {
    let mut info = FsInfo::default();
    let len = core::mem::size_of::<FsInfo>();
    // SAFETY: `info` is a plain `repr(C)` struct of integers, writable for `len` bytes.
    let n = result(unsafe { syscall2(Sys::FsInfo as u64, ptr(&raw mut info), len as u64) })?;
    whole_record::<FsInfo>(n)?;
    Ok(info)
}
