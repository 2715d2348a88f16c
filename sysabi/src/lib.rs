//! The system-call interface, shared by the kernel and user programs.
//!
//! Calling convention (x86_64 `syscall`): the number in `rax`, arguments in `rdi, rsi, rdx, r10,
//! r8, r9`; the result comes back in `rax`: a value `>= 0` on success, or `-(error code)`
//! (see [`Error`]). `rcx` and `r11` are clobbered, as the instruction requires; every other
//! register is preserved.
//!
//! Pointers are user addresses; the kernel checks every one and answers `BadAddress` for memory
//! that is not mapped and user-accessible, never faulting itself. Strings are (pointer, length)
//! pairs of UTF-8, never NUL-terminated.
#![no_std]

use core::fmt;

/// System-call numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Sys {
    /// `exit(code)`: ends the calling process (all its threads) with `code`. Does not return.
    Exit = 0,
    /// `spawn(path, path_len, args, args_len) -> pid`: starts the ramdisk program at `path`
    /// (a bare name is looked up in `bin/`) as a new child process, which is a process group
    /// of its own: its threads share the group's turns of the CPU. `args` holds the arguments separated by
    /// NUL bytes (`args_len` 0 for none); the program's first argument is its path.
    Spawn = 1,
    /// `wait(pid) -> exit code`: blocks until child `pid` exits; `NoSuchProcess` if it is not a
    /// child of the caller.
    Wait = 2,
    /// `yield()`: gives up the rest of the time slice.
    Yield = 3,
    /// `sleep(ms)`: blocks for at least `ms` milliseconds.
    Sleep = 4,
    /// `getpid() -> pid`.
    GetPid = 5,
    /// `write(fd, buf, len) -> written`: `fd` 1 or 2 is the console; any other is an open
    /// file, written at its offset (at its end with `APPEND`), which then advances.
    Write = 6,
    /// `read(fd, buf, len) -> read`: `fd` 0 is the console (blocks until at least one byte);
    /// any other is an open file, read from its offset (0 at the end).
    Read = 7,
    /// `clock() -> ns`: monotonic time since boot in nanoseconds.
    Clock = 8,
    /// `map(len, flags) -> addr`: maps `len` bytes (rounded up to pages) of zeroed,
    /// read-write memory. `flags` must be 0.
    Map = 9,
    /// `unmap(addr, len)`: unmaps pages previously returned by `map`.
    Unmap = 10,
    /// `graft_load(blob, blob_len, log, log_len) -> graft id`: verifies and compiles a graft
    /// blob. On `Rejected`, the verifier's log is copied to `log` (truncated to `log_len`).
    GraftLoad = 11,
    /// `graft_attach(id, point, point_len, target_pid) -> 0`: attaches graft `id` to the
    /// named graft point for process `target_pid` (0: the caller). The target must be the
    /// caller or one of its children (`PermissionDenied`). The point must be the one the graft was
    /// written for (`WrongPoint` otherwise).
    GraftAttach = 12,
    /// `graft_detach(id) -> 0`.
    GraftDetach = 13,
    /// `graft_stats(id, out, out_len) -> bytes written`: fills a [`GraftStats`].
    GraftStats = 14,
    /// `graft_list(out, max) -> count`: writes the ids (u32) of the caller's loaded grafts.
    GraftList = 15,
    /// `file_list(out, out_len) -> bytes`: the ramdisk's file names, each followed by a NUL
    /// byte; `BufferTooSmall` if they do not fit.
    FileList = 16,
    /// `file_read(path, path_len, offset, buf, len) -> bytes read`: reads a ramdisk file; 0 at
    /// the end.
    FileRead = 17,
    /// `thread_spawn(entry, stack_top, arg) -> tid`: a new thread of the caller's process,
    /// starting at `entry(arg)` (`arg` in `rdi`) on the given stack.
    ThreadSpawn = 18,
    /// `thread_exit(code)`: ends the calling thread; the last thread's exit ends the process.
    ThreadExit = 19,
    /// `futex_wait(addr, expected, timeout_ms) -> 0`: blocks while the u32 at `addr` equals
    /// `expected`, until woken or `timeout_ms` passes (0: no time-out; `TimedOut`).
    FutexWait = 20,
    /// `futex_wake(addr, count) -> woken`: wakes up to `count` threads waiting on `addr`.
    FutexWake = 21,
    /// `gettid() -> tid`.
    GetTid = 22,
    /// `points(out, out_len) -> bytes`: the graft points' names, each followed by a NUL byte.
    GraftPoints = 23,
    /// `open(path, path_len, flags) -> fd`: opens a file of the disk's file system (an absolute
    /// path; a relative one is taken from `/`). `flags` are [`open`] bits: at least one of
    /// `READ`, `WRITE`; `CREATE` makes a missing file (`EXCLUSIVE` with it: `Exists` if it is
    /// there), `TRUNCATE` empties it (needs `WRITE`), `APPEND` writes at the end. Directories
    /// open only for reading (`IsADirectory` otherwise). `EXCLUSIVE` without `CREATE`,
    /// `TRUNCATE` without `WRITE`, and unknown bits are `InvalidArgument`. Descriptors start at
    /// 3; 0, 1 and 2 are the console and cannot be closed.
    Open = 24,
    /// `close(fd) -> 0`.
    Close = 25,
    /// `seek(fd, offset, whence) -> new offset`: `whence` 0 from the start, 1 from the current
    /// offset, 2 from the end; a negative result is `InvalidArgument`.
    Seek = 26,
    /// `stat(path, path_len, out, out_len) -> bytes`: fills a [`FileStat`].
    Stat = 27,
    /// `fstat(fd, out, out_len) -> bytes`: fills a [`FileStat`] for an open file.
    Fstat = 28,
    /// `fsync(fd) -> 0`: returns once the file's data and metadata are on the disk.
    Fsync = 29,
    /// `sync() -> 0`: writes every dirty block of the file system and waits for them.
    Sync = 30,
    /// `unlink(path, path_len) -> 0`: removes a file (not a directory: `IsADirectory`); a file
    /// some process has open is `Busy`.
    Unlink = 31,
    /// `mkdir(path, path_len) -> 0`.
    Mkdir = 32,
    /// `rmdir(path, path_len) -> 0`: removes an empty directory (`NotEmpty` otherwise).
    Rmdir = 33,
    /// `readdir(path, path_len, out, out_len) -> bytes`: the directory's entries (without `.`
    /// and `..`), each a [`DirEntryHeader`] followed by the name's bytes; `BufferTooSmall` if
    /// they do not all fit.
    Readdir = 34,
    /// `rename(from, from_len, to, to_len) -> 0`: moves or renames; an existing file at `to`
    /// is replaced, an existing directory only if empty.
    Rename = 35,
    /// `fsinfo(out, out_len) -> bytes`: fills a [`FsInfo`] (for `df`).
    FsInfo = 36,
    /// `kstat(out, out_len) -> bytes`: fills a [`KStat`] with the kernel's resource counters
    /// (for tests that check everything returns to its baseline).
    Kstat = 37,
    /// `fail_alloc(n) -> allocations seen`: fault injection, for tests. Makes the `n`th heap
    /// allocation on a system-call path from now on fail (0 disarms), and returns how many such
    /// allocations were made since the previous arming. Refused (`PermissionDenied`) unless the
    /// kernel was booted with `failalloc=N` or `mode=test`.
    FailAlloc = 38,
    /// `vm_limit(pages, stats_out, stats_len) -> previous limit`: sets the caller's resident-set
    /// limit to `pages` of its pageable memory (0 keeps it; outside the system's floor and
    /// ceiling is `InvalidArgument`); with a non-null `stats_out`, also fills a [`VmStats`].
    VmLimit = 39,
    /// `vm_mark(addr, len, on) -> 0`: marks (`on` = 1) or unmarks (0) the caller's pages in
    /// `[addr, addr + len)`, e.g. its buffer pool: `vm.pick_victim` sees the mark (flag bit 2),
    /// and swap-ins of marked pages are counted apart.
    VmMark = 40,
    /// `graft_info(id, out, out_len) -> bytes`: one of the caller's grafts described as text
    /// (as `bpftool prog dump` does): its point, state, code size, limits and statistics, then
    /// its IR in the text format. `BufferTooSmall` if it does not fit.
    GraftInfo = 41,
}

impl Sys {
    pub const ALL: [Sys; 42] = [
        Sys::Exit, Sys::Spawn, Sys::Wait, Sys::Yield, Sys::Sleep, Sys::GetPid, Sys::Write,
        Sys::Read, Sys::Clock, Sys::Map, Sys::Unmap, Sys::GraftLoad, Sys::GraftAttach,
        Sys::GraftDetach, Sys::GraftStats, Sys::GraftList, Sys::FileList, Sys::FileRead,
        Sys::ThreadSpawn, Sys::ThreadExit, Sys::FutexWait, Sys::FutexWake, Sys::GetTid,
        Sys::GraftPoints, Sys::Open, Sys::Close, Sys::Seek, Sys::Stat, Sys::Fstat, Sys::Fsync,
        Sys::Sync, Sys::Unlink, Sys::Mkdir, Sys::Rmdir, Sys::Readdir, Sys::Rename, Sys::FsInfo,
        Sys::Kstat, Sys::FailAlloc, Sys::VmLimit, Sys::VmMark, Sys::GraftInfo,
    ];

    pub fn from_number(n: u64) -> Option<Sys> {
        Sys::ALL.get(n as usize).copied()
    }
}

/// Error codes: a failed call returns `-(code as i64)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// No such system call.
    NoSys = 1,
    /// A pointer argument is not mapped user memory of the needed length and rights.
    BadAddress = 2,
    /// An argument is out of range (a bad flag, length, file descriptor...).
    InvalidArgument = 3,
    /// No such file (in the ramdisk, or in the disk's file system).
    NotFound = 4,
    /// The file is not a program the kernel can run.
    NotExecutable = 5,
    /// No such process, or not a child of the caller.
    NoSuchProcess = 6,
    /// Out of memory or another kernel resource.
    NoMemory = 7,
    /// The output buffer is too small for the answer.
    BufferTooSmall = 8,
    /// The graft blob could not be decoded.
    BadBlob = 9,
    /// The verifier rejected the graft; its log was copied to the caller's buffer.
    Rejected = 10,
    /// No such graft (or not the caller's).
    NoSuchGraft = 11,
    /// No such graft point.
    NoSuchPoint = 12,
    /// The graft was written for another graft point.
    WrongPoint = 13,
    /// The point's slot for that process already holds a graft.
    SlotTaken = 14,
    /// The graft is not attached.
    NotAttached = 15,
    /// The caller may not act on that process.
    PermissionDenied = 16,
    /// A wait ended by its time-out.
    TimedOut = 17,
    /// The value at a futex address differed from the expected one.
    WouldBlock = 18,
    /// Too many processes, threads or grafts.
    TooMany = 19,
    /// The graft uses a kernel callable that is not implemented yet.
    Unsupported = 20,
    /// The file already exists.
    Exists = 21,
    /// A path component (or the target) is not a directory.
    NotADirectory = 22,
    /// The operation needs a file, not a directory.
    IsADirectory = 23,
    /// The directory is not empty.
    NotEmpty = 24,
    /// The file system is full (blocks or inodes).
    NoSpace = 25,
    /// Not an open file descriptor of the caller (or not open for this operation).
    BadDescriptor = 26,
    /// A path component is longer than the file system allows.
    NameTooLong = 27,
    /// The disk failed a transfer.
    IoError = 28,
    /// The file system's on-disk structures are inconsistent; nothing was changed.
    Corrupt = 29,
    /// The file system is read-only.
    ReadOnly = 30,
    /// There is no file system (no disk, or it could not be mounted).
    NoFileSystem = 31,
    /// The file is in use (open by a process).
    Busy = 32,
    /// The file is too large for the file system.
    FileTooLarge = 33,
}

impl Error {
    pub const ALL: [Error; 33] = [
        Error::NoSys, Error::BadAddress, Error::InvalidArgument, Error::NotFound,
        Error::NotExecutable, Error::NoSuchProcess, Error::NoMemory, Error::BufferTooSmall,
        Error::BadBlob, Error::Rejected, Error::NoSuchGraft, Error::NoSuchPoint,
        Error::WrongPoint, Error::SlotTaken, Error::NotAttached, Error::PermissionDenied,
        Error::TimedOut, Error::WouldBlock, Error::TooMany, Error::Unsupported, Error::Exists,
        Error::NotADirectory, Error::IsADirectory, Error::NotEmpty, Error::NoSpace,
        Error::BadDescriptor, Error::NameTooLong, Error::IoError, Error::Corrupt, Error::ReadOnly,
        Error::NoFileSystem, Error::Busy, Error::FileTooLarge,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Error> {
        Error::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// Decodes a raw system-call return value.
    pub fn result(raw: i64) -> Result<u64, Error> {
        if raw >= 0 { Ok(raw as u64) } else { Err(Error::from_code(-raw).unwrap_or(Error::NoSys)) }
    }

    /// The name, as in the documentation (`BadAddress`).
    pub fn name(self) -> &'static str {
        match self {
            Error::NoSys => "NoSys",
            Error::BadAddress => "BadAddress",
            Error::InvalidArgument => "InvalidArgument",
            Error::NotFound => "NotFound",
            Error::NotExecutable => "NotExecutable",
            Error::NoSuchProcess => "NoSuchProcess",
            Error::NoMemory => "NoMemory",
            Error::BufferTooSmall => "BufferTooSmall",
            Error::BadBlob => "BadBlob",
            Error::Rejected => "Rejected",
            Error::NoSuchGraft => "NoSuchGraft",
            Error::NoSuchPoint => "NoSuchPoint",
            Error::WrongPoint => "WrongPoint",
            Error::SlotTaken => "SlotTaken",
            Error::NotAttached => "NotAttached",
            Error::PermissionDenied => "PermissionDenied",
            Error::TimedOut => "TimedOut",
            Error::WouldBlock => "WouldBlock",
            Error::TooMany => "TooMany",
            Error::Unsupported => "Unsupported",
            Error::Exists => "Exists",
            Error::NotADirectory => "NotADirectory",
            Error::IsADirectory => "IsADirectory",
            Error::NotEmpty => "NotEmpty",
            Error::NoSpace => "NoSpace",
            Error::BadDescriptor => "BadDescriptor",
            Error::NameTooLong => "NameTooLong",
            Error::IoError => "IoError",
            Error::Corrupt => "Corrupt",
            Error::ReadOnly => "ReadOnly",
            Error::NoFileSystem => "NoFileSystem",
            Error::Busy => "Busy",
            Error::FileTooLarge => "FileTooLarge",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Abort reasons are counted in `GraftStats::aborts` by their code (graft-ir's
/// `AbortReason::code`), index 0 unused.
pub const ABORT_SLOTS: usize = 16;

/// What `graft_stats` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GraftStats {
    pub id: u32,
    /// 1 if attached to its point, else 0.
    pub attached: u32,
    /// Index of the graft's point in the kernel's point table (same order as `points`).
    pub point: u32,
    pub _pad: u32,
    pub calls: u64,
    pub commits: u64,
    /// Aborts by reason code.
    pub aborts: [u64; ABORT_SLOTS],
    /// Fuel spent (IR instructions executed) over all calls.
    pub fuel_used: u64,
}

/// Bits of `open`'s flags.
pub mod open {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const CREATE: u64 = 1 << 2;
    pub const TRUNCATE: u64 = 1 << 3;
    pub const APPEND: u64 = 1 << 4;
    pub const EXCLUSIVE: u64 = 1 << 5;
    /// Every defined bit: any other is `InvalidArgument`.
    pub const ALL: u64 = READ | WRITE | CREATE | TRUNCATE | APPEND | EXCLUSIVE;
}

/// `seek`'s `whence`.
pub mod whence {
    pub const SET: u64 = 0;
    pub const CURRENT: u64 = 1;
    pub const END: u64 = 2;
}

/// File kinds in [`FileStat::kind`] and [`DirEntryHeader::kind`].
pub mod kind {
    pub const REGULAR: u32 = 1;
    pub const DIRECTORY: u32 = 2;
    pub const SYMLINK: u32 = 3;
    pub const OTHER: u32 = 4;
}

/// What `stat` and `fstat` write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FileStat {
    /// The inode number.
    pub ino: u64,
    pub size: u64,
    /// Bytes of disk the file occupies (data and its block map).
    pub disk_bytes: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub links: u32,
    pub _pad: u32,
    /// Last modification, seconds (the file system's clock).
    pub mtime: u64,
}

/// One entry of `readdir`'s answer; the name's `name_len` bytes follow it, then the next entry
/// (at the next multiple of 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DirEntryHeader {
    pub ino: u64,
    /// One of [`kind`].
    pub kind: u32,
    pub name_len: u32,
}

/// What `fsinfo` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FsInfo {
    pub block_size: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u64,
    pub free_inodes: u64,
    /// Buffer-cache counters since boot.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_blocking_reads: u64,
    pub cache_async_reads: u64,
    pub cache_prefetch_hits: u64,
    pub cache_blocks: u64,
}

/// What `kstat` writes: the kernel's resources in use, system-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct KStat {
    /// Bytes mapped for the kernel heap, handed out by it (in its blocks), and requested by
    /// live allocations.
    pub heap_mapped: u64,
    pub heap_allocated: u64,
    pub heap_requested: u64,
    /// Heap requests that failed for want of memory (injected failures not counted).
    pub heap_failed: u64,
    /// Physical frames: free, and in all.
    pub frames_free: u64,
    pub frames_total: u64,
    /// Bytes the kernel could still hand out (free frames and unused heap).
    pub free_bytes: u64,
    /// Loaded grafts, and slots holding one.
    pub grafts: u64,
    pub slots: u64,
    /// Processes the graft runtime keeps state for (counters, allocations, charges), and the
    /// kernel memory charged to processes in all.
    pub graft_processes: u64,
    pub charged: u64,
    /// Graft locks held now, and lock-owner ids in use (one per thread).
    pub locks_held: u64,
    pub lock_owners: u64,
    /// Open files of all processes.
    pub open_files: u64,
    /// Fault injection: allocations seen on system-call paths since last armed, whether it is
    /// still armed, and failures injected in all.
    pub failalloc_seen: u64,
    pub failalloc_armed: u64,
    pub failalloc_injected: u64,
}

/// What `vm_limit` writes: the caller's paging counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VmStats {
    /// The resident-set limit (pages), and the system's ceiling for it.
    pub limit: u64,
    pub ceiling: u64,
    /// Pageable pages resident now, and frames the process's address space holds in all (its
    /// program's pages too).
    pub resident: u64,
    pub frames: u64,
    /// Page faults on pageable memory; of those, zero-filled and read back from swap (and of
    /// those, inside a marked range).
    pub faults: u64,
    pub zero_fills: u64,
    pub swap_ins: u64,
    pub marked_swap_ins: u64,
    /// Pages evicted, and of those written to swap first (dirty).
    pub evictions: u64,
    pub swap_outs: u64,
    /// Evictions a `vm.pick_victim` graft chose, and its calls that aborted (the clock chose).
    pub graft_choices: u64,
    pub graft_aborts: u64,
    /// Swap slots the process holds now.
    pub swap_slots: u64,
    /// The whole system's swap slots in use and their number, and its free frames (for tests
    /// that check nothing leaked once a process is gone).
    pub system_swap_slots: u64,
    pub system_swap_capacity: u64,
    pub free_frames: u64,
}

/// Lowest address user programs may use; everything from `USER_END` up is the kernel's.
pub const USER_START: u64 = 0x0000_0000_0040_0000;
pub const USER_END: u64 = 0x0000_8000_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_codes_round_trip() {
        for (i, s) in Sys::ALL.iter().enumerate() {
            assert_eq!(*s as u64, i as u64);
            assert_eq!(Sys::from_number(i as u64), Some(*s));
        }
        assert_eq!(Sys::from_number(Sys::ALL.len() as u64), None);
        for e in Error::ALL {
            assert_eq!(Error::result(-e.code()), Err(e));
        }
        assert_eq!(Error::result(5), Ok(5));
    }
}
