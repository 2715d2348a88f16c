//! Open files: each process's descriptor table (descriptors from 3 on; 0, 1 and 2 are the
//! console). A descriptor names an inode of the disk file system, an offset and the rights it
//! was opened with. A process's end closes them all (`close_all`).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use spin::Mutex;
use storage::ext2::Ino;
use sysabi::Error;

use crate::task::ProcessId;

/// The first descriptor of a file (below: the console).
pub const FIRST_FD: u64 = 3;
/// Open files per process at most.
pub const MAX_FILES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFile {
    pub ino: Ino,
    pub offset: u64,
    pub read: bool,
    pub write: bool,
    pub append: bool,
    /// The default read-ahead's state for this descriptor.
    pub readahead: super::readahead::ReadAhead,
}

static TABLES: Mutex<BTreeMap<ProcessId, Vec<Option<OpenFile>>>> = Mutex::new(BTreeMap::new());

fn with<R>(f: impl FnOnce(&mut BTreeMap<ProcessId, Vec<Option<OpenFile>>>) -> R) -> R {
    crate::arch::without_interrupts(|| f(&mut TABLES.lock()))
}

fn index(fd: u64) -> Result<usize, Error> {
    fd.checked_sub(FIRST_FD).and_then(|i| usize::try_from(i).ok()).filter(|&i| i < MAX_FILES).ok_or(Error::BadDescriptor)
}

/// Gives `file` a descriptor of `pid`'s: the lowest free one.
pub fn install(pid: ProcessId, file: OpenFile) -> Result<u64, Error> {
    with(|t| {
        if !t.contains_key(&pid) {
            let mut v = Vec::new();
            v.try_reserve_exact(MAX_FILES).map_err(|_| Error::NoMemory)?;
            t.insert(pid, v);
        }
        let table = t.get_mut(&pid).ok_or(Error::NoMemory)?;
        let slot = match table.iter().position(Option::is_none) {
            Some(i) => i,
            None if table.len() < MAX_FILES => {
                table.push(None);
                table.len() - 1
            }
            None => return Err(Error::TooMany),
        };
        table[slot] = Some(file);
        Ok(FIRST_FD + slot as u64)
    })
}

/// A copy of `pid`'s open file `fd`.
pub fn get(pid: ProcessId, fd: u64) -> Result<OpenFile, Error> {
    let i = index(fd)?;
    with(|t| t.get(&pid).and_then(|v| v.get(i).copied().flatten()).ok_or(Error::BadDescriptor))
}

/// Sets the offset of `pid`'s open file `fd` (if it is still open).
pub fn set_offset(pid: ProcessId, fd: u64, offset: u64) {
    update(pid, fd, |f| f.offset = offset);
}

/// Changes `pid`'s open file `fd` (if it is still open).
pub fn update(pid: ProcessId, fd: u64, change: impl FnOnce(&mut OpenFile)) {
    let Ok(i) = index(fd) else { return };
    with(|t| {
        if let Some(Some(f)) = t.get_mut(&pid).and_then(|v| v.get_mut(i)) {
            change(f);
        }
    })
}

pub fn close(pid: ProcessId, fd: u64) -> Result<(), Error> {
    let i = index(fd)?;
    with(|t| match t.get_mut(&pid).and_then(|v| v.get_mut(i)) {
        Some(slot @ Some(_)) => {
            *slot = None;
            Ok(())
        }
        _ => Err(Error::BadDescriptor),
    })
}

/// Closes every file of `pid` (its process ended).
pub fn close_all(pid: ProcessId) {
    with(|t| t.remove(&pid));
}

/// Whether any process has inode `ino` open.
pub fn is_open(ino: Ino) -> bool {
    with(|t| t.values().flatten().flatten().any(|f| f.ino == ino))
}

/// The `handle<file>` a graft receives for `pid`'s descriptor `fd`: both, so that a handle can
/// never name another process's file.
pub fn graft_handle(pid: ProcessId, fd: u64) -> u64 {
    (u64::from(pid.0) << 32) | (fd & 0xffff_ffff)
}

/// The open file graft handle `handle` names, if it is one of `owner`'s (the graft's
/// installer's): callables accept nothing else.
pub fn resolve_graft_handle(owner: ProcessId, handle: u64) -> Option<OpenFile> {
    if (handle >> 32) as u32 != owner.0 {
        return None;
    }
    get(owner, handle & 0xffff_ffff).ok()
}

/// Descriptors open in the whole system (tests check they return to their baseline).
pub fn open_count() -> usize {
    with(|t| t.values().map(|v| v.iter().flatten().count()).sum())
}
