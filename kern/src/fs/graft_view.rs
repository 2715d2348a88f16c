//! What grafts see of files, through their callables: never waiting for the disk and never
//! issuing I/O from inside a transaction. A callable answers from the buffer cache alone; the
//! file system's lock is only tried (a graft call must not sleep), and a read a graft asks for
//! (`fs.prefetch`) is queued at commit and issued by the read path after the call.
use alloc::vec::Vec;

use graft_ir::AbortReason;
use graft_ir::abi::errors;
use spin::Mutex;
use storage::cache::Residency;
use storage::ext2::Ino;

use super::disk::{FS, Fs};
use super::files;
use crate::task::ProcessId;

const BAD_HANDLE: AbortReason = AbortReason::CallableFailed(errors::BAD_HANDLE);

/// Runs `f` on the file system if its lock is free now; a held lock (another thread is in the
/// file system) aborts the call as a contended lock would.
fn try_fs<R>(f: impl FnOnce(&mut Fs) -> Result<R, AbortReason>) -> Result<R, AbortReason> {
    let mut guard = FS.try_lock().ok_or(AbortReason::LockTimeout)?;
    let fs = guard.as_mut().ok_or(BAD_HANDLE)?;
    f(fs)
}

fn inode(owner: ProcessId, handle: u64) -> Result<Ino, AbortReason> {
    files::resolve_graft_handle(owner, handle).map(|f| f.ino).ok_or(BAD_HANDLE)
}

pub fn file_size(owner: ProcessId, handle: u64) -> Result<i64, AbortReason> {
    let ino = inode(owner, handle)?;
    try_fs(|fs| match fs.size_resident(ino) {
        Ok(Some(size)) => i64::try_from(size).map_err(|_| AbortReason::ResourceLimit),
        // The inode is not in the cache: answering would need the disk.
        Ok(None) => Err(AbortReason::ResourceLimit),
        Err(_) => Err(BAD_HANDLE),
    })
}

pub fn block_size(owner: ProcessId, handle: u64) -> Result<i32, AbortReason> {
    inode(owner, handle)?;
    try_fs(|fs| i32::try_from(fs.block_size()).map_err(|_| AbortReason::ResourceLimit))
}

/// Whether file block `block` needs no read to be asked for: resident, or already being read
/// (a hole counts as resident). A block whose map is not resident counts as not cached.
pub fn block_cached(owner: ProcessId, handle: u64, block: i64) -> Result<bool, AbortReason> {
    let ino = inode(owner, handle)?;
    let block = u64::try_from(block).map_err(|_| AbortReason::CallableFailed(errors::BAD_ARGUMENT))?;
    try_fs(|fs| match fs.block_map_resident(ino, block) {
        Ok(Some(Some(disk))) => Ok(fs.access().cache.residency(disk) != Residency::Absent),
        Ok(Some(None)) => Ok(true),
        Ok(None) => Ok(false),
        Err(_) => Err(BAD_HANDLE),
    })
}

/// Reads a committed graft asked for, waiting for the read path to issue them: (inode, file
/// block). Bounded: read-ahead is a hint, and a full queue drops the request.
const MAX_QUEUED: usize = 64;
static QUEUED: Mutex<Vec<(Ino, u64)>> = Mutex::new(Vec::new());

/// The commit action of `fs.prefetch`: `a` = inode, `b` = file block.
pub fn commit_prefetch(ino: u64, block: u64) {
    crate::arch::without_interrupts(|| {
        let mut q = QUEUED.lock();
        if q.len() < MAX_QUEUED && q.try_reserve(1).is_ok() {
            q.push((ino as Ino, block));
        }
    })
}

/// `fs.prefetch`'s check: the handle is the installer's; returns the inode for the commit action.
pub fn prefetch_target(owner: ProcessId, handle: u64) -> Result<Ino, AbortReason> {
    inode(owner, handle)
}

/// Takes the reads committed grafts asked for.
pub fn take_queued() -> Vec<(Ino, u64)> {
    crate::arch::without_interrupts(|| core::mem::take(&mut *QUEUED.lock()))
}

/// Reads issued so far on behalf of `fs.prefetch` (tests check an aborted graft issued none).
pub fn queued_len() -> usize {
    crate::arch::without_interrupts(|| QUEUED.lock().len())
}
