//! File system calls: the console (descriptors 0, 1, 2), the disk file system's files and
//! directories (descriptors from 3), and the ramdisk's read-only files.
use alloc::string::String;
use alloc::vec::Vec;

use storage::ext2::{FileKind, Ino};
use sysabi::{DirEntryHeader, Error, FileStat, FsInfo, Sys, kind, open, whence};

use super::uaccess::{self, copy_to_user, read_str, read_vec};
use super::{me, write_out};
use crate::cpu;
use crate::fs::disk::{self, with_fs};
use crate::fs::files::{self, OpenFile};
use crate::fs::{graft_view, ramdisk, readahead};
use crate::graft::points;
use crate::graft::runtime::Outcome;
use crate::task::{self, ProcessId};

const MAX_PATH: u64 = 4096;
/// Most bytes one read or write moves.
const MAX_IO: u64 = 64 * 1024;
/// Room for the blocks `fs.compute_ra` may name per read.
const RA_BLOCKS: usize = 32;
/// New files' and directories' permissions.
const FILE_MODE: u16 = 0o644;
const DIR_MODE: u16 = 0o755;

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Write => match a[0] {
            1 | 2 => {
                let bytes = read_vec(a[1], a[2].min(MAX_IO), MAX_IO)?;
                crate::kprint!("{}", String::from_utf8_lossy(&bytes));
                Ok(bytes.len() as u64)
            }
            0 => Err(Error::BadDescriptor),
            fd => write_file(fd, a[1], a[2]),
        },
        Sys::Read => match a[0] {
            0 => read_console(a[1], a[2]),
            1 | 2 => Err(Error::BadDescriptor),
            fd => read_file(fd, a[1], a[2]),
        },
        Sys::FileList => {
            let mut out = Vec::new();
            for name in ramdisk::names() {
                out.try_reserve(name.len() + 1).map_err(|_| Error::NoMemory)?;
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
            write_out(a[0], a[1], &out)
        }
        Sys::FileRead => {
            let path = read_str(a[0], a[1], MAX_PATH)?;
            let data = ramdisk::file(&path).ok_or(Error::NotFound)?;
            let offset = a[2].min(data.len() as u64) as usize;
            let n = (data.len() - offset).min(a[4].min(MAX_IO) as usize);
            copy_to_user(a[3], &data[offset..offset + n])?;
            Ok(n as u64)
        }
        Sys::Open => open_file(a[0], a[1], a[2]),
        Sys::Close => files::close(me()?, a[0]).map(|()| 0),
        Sys::Seek => seek(a[0], a[1] as i64, a[2]),
        Sys::Stat => {
            let path = path_arg(a[0], a[1])?;
            let st = with_fs(|fs| {
                let ino = fs.lookup(&path).map_err(disk::error)?;
                file_stat(fs, ino)
            })?;
            write_record(a[2], a[3], &st)
        }
        Sys::Fstat => {
            let f = files::get(me()?, a[0])?;
            let st = with_fs(|fs| file_stat(fs, f.ino))?;
            write_record(a[1], a[2], &st)
        }
        Sys::Fsync => {
            let f = files::get(me()?, a[0])?;
            with_fs(|fs| fs.fsync(f.ino).map_err(disk::error)).map(|()| 0)
        }
        Sys::Sync => with_fs(|fs| fs.sync().map_err(disk::error)).map(|()| 0),
        Sys::Unlink => {
            let path = path_arg(a[0], a[1])?;
            with_fs(|fs| {
                let ino = fs.lookup(&path).map_err(disk::error)?;
                if files::is_open(ino) {
                    return Err(Error::Busy);
                }
                fs.unlink_path(&path).map_err(disk::error)
            })
            .map(|()| 0)
        }
        Sys::Mkdir => {
            let path = path_arg(a[0], a[1])?;
            with_fs(|fs| fs.mkdir_path(&path, DIR_MODE).map_err(disk::error)).map(|_| 0)
        }
        Sys::Rmdir => {
            let path = path_arg(a[0], a[1])?;
            with_fs(|fs| {
                let ino = fs.lookup(&path).map_err(disk::error)?;
                if files::is_open(ino) {
                    return Err(Error::Busy);
                }
                fs.rmdir_path(&path).map_err(disk::error)
            })
            .map(|()| 0)
        }
        Sys::Readdir => {
            let path = path_arg(a[0], a[1])?;
            let entries = with_fs(|fs| {
                let ino = fs.lookup(&path).map_err(disk::error)?;
                fs.readdir(ino).map_err(disk::error)
            })?;
            let mut out = Vec::new();
            for e in entries.iter().filter(|e| e.name != b"." && e.name != b"..") {
                let header = DirEntryHeader { ino: u64::from(e.ino), kind: kind_of(e.kind), name_len: e.name.len() as u32 };
                let len = (core::mem::size_of::<DirEntryHeader>() + e.name.len()).next_multiple_of(8);
                out.try_reserve(len).map_err(|_| Error::NoMemory)?;
                let start = out.len();
                out.extend_from_slice(record_bytes(&header));
                out.extend_from_slice(&e.name);
                out.resize(start + len, 0);
            }
            write_out(a[2], a[3], &out)
        }
        Sys::Rename => {
            let from = path_arg(a[0], a[1])?;
            let to = path_arg(a[2], a[3])?;
            with_fs(|fs| {
                // A file some process has open may be renamed, but not replaced.
                if let Ok(target) = fs.lookup(&to) {
                    if files::is_open(target) {
                        return Err(Error::Busy);
                    }
                }
                fs.rename_path(&from, &to).map_err(disk::error)
            })
            .map(|()| 0)
        }
        Sys::FsInfo => {
            let info = with_fs(|fs| {
                let s = fs.stats();
                let cache = &fs.access().cache;
                let c = cache.stats();
                Ok(FsInfo {
                    block_size: u64::from(s.block_size),
                    blocks: u64::from(s.blocks),
                    free_blocks: u64::from(s.free_blocks),
                    inodes: u64::from(s.inodes),
                    free_inodes: u64::from(s.free_inodes),
                    cache_hits: c.hits,
                    cache_misses: c.misses,
                    cache_blocking_reads: c.blocking_reads,
                    cache_async_reads: c.async_reads,
                    cache_prefetch_hits: c.prefetch_hits,
                    cache_blocks: cache.capacity() as u64,
                })
            })?;
            write_record(a[0], a[1], &info)
        }
        _ => Err(Error::NoSys),
    }
}

/// A path argument, as an absolute path (a relative one is taken from `/`).
fn path_arg(addr: u64, len: u64) -> Result<String, Error> {
    let p = read_str(addr, len, MAX_PATH)?;
    if p.is_empty() {
        return Err(Error::NotFound);
    }
    if p.starts_with('/') {
        return Ok(p);
    }
    let mut abs = String::new();
    abs.try_reserve_exact(p.len() + 1).map_err(|_| Error::NoMemory)?;
    abs.push('/');
    abs.push_str(&p);
    Ok(abs)
}

fn kind_of(k: FileKind) -> u32 {
    match k {
        FileKind::Regular => kind::REGULAR,
        FileKind::Directory => kind::DIRECTORY,
        FileKind::Symlink => kind::SYMLINK,
        _ => kind::OTHER,
    }
}

fn file_stat(fs: &mut disk::Fs, ino: Ino) -> Result<FileStat, Error> {
    let s = fs.stat(ino).map_err(disk::error)?;
    Ok(FileStat {
        ino: u64::from(s.ino),
        size: s.size,
        disk_bytes: u64::from(s.blocks_512) * 512,
        kind: kind_of(s.kind),
        mode: u32::from(s.permissions),
        links: u32::from(s.links),
        _pad: 0,
        mtime: u64::from(s.mtime),
    })
}

/// The bytes of a plain-old-data record (`repr(C)`, integers only, no padding).
fn record_bytes<T: Copy>(r: &T) -> &[u8] {
    // SAFETY: callers pass sysabi's records, which are repr(C) with only integer fields and explicit padding fields, so every byte is initialised.
    unsafe { core::slice::from_raw_parts((r as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
}

fn write_record<T: Copy>(addr: u64, cap: u64, r: &T) -> Result<u64, Error> {
    let size = core::mem::size_of::<T>() as u64;
    if cap < size {
        return Err(Error::BufferTooSmall);
    }
    copy_to_user(addr, record_bytes(r))?;
    Ok(size)
}

fn open_file(path_addr: u64, path_len: u64, flags: u64) -> Result<u64, Error> {
    if flags & !open::ALL != 0
        || flags & (open::READ | open::WRITE) == 0
        || (flags & open::TRUNCATE != 0 && flags & open::WRITE == 0)
        || (flags & open::EXCLUSIVE != 0 && flags & open::CREATE == 0)
    {
        return Err(Error::InvalidArgument);
    }
    let pid = me()?;
    let path = path_arg(path_addr, path_len)?;
    let write = flags & open::WRITE != 0;
    let ino = with_fs(|fs| {
        let ino = match fs.lookup(&path) {
            Ok(_) if flags & open::EXCLUSIVE != 0 => return Err(Error::Exists),
            Ok(ino) => ino,
            Err(storage::ext2::Error::NotFound) if flags & open::CREATE != 0 => {
                fs.create_path(&path, FILE_MODE).map_err(disk::error)?
            }
            Err(e) => return Err(disk::error(e)),
        };
        let st = fs.stat(ino).map_err(disk::error)?;
        match st.kind {
            FileKind::Directory if write => return Err(Error::IsADirectory),
            FileKind::Regular | FileKind::Directory => {}
            _ => return Err(Error::InvalidArgument),
        }
        if flags & open::TRUNCATE != 0 && st.size != 0 {
            fs.truncate(ino, 0).map_err(disk::error)?;
        }
        Ok(ino)
    })?;
    let file = OpenFile {
        ino,
        offset: 0,
        read: flags & open::READ != 0,
        write,
        append: flags & open::APPEND != 0,
        readahead: Default::default(),
    };
    files::install(pid, file)
}

fn read_console(buf: u64, len: u64) -> Result<u64, Error> {
    let len = len.min(MAX_IO) as usize;
    if len == 0 {
        return Ok(0);
    }
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
    data.resize(len, 0);
    // Check the buffer is there and writable before blocking: a bad pointer must not wait for
    // input first. Copying the bytes back unchanged changes nothing.
    uaccess::copy_from_user(&mut data, buf)?;
    copy_to_user(buf, &data)?;
    let n = task::console_read(&mut data);
    copy_to_user(buf, &data[..n])?;
    Ok(n as u64)
}

fn read_file(fd: u64, buf: u64, len: u64) -> Result<u64, Error> {
    let pid = me()?;
    let f = files::get(pid, fd)?;
    if !f.read {
        return Err(Error::BadDescriptor);
    }
    let len = len.min(MAX_IO) as usize;
    uaccess::check_range(buf, len as u64)?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
    data.resize(len, 0);
    let (n, size, block_size) = with_fs(|fs| {
        let n = fs.read(f.ino, f.offset, &mut data).map_err(disk::error)?;
        let size = fs.stat(f.ino).map_err(disk::error)?.size;
        Ok((n, size, fs.block_size() as u64))
    })?;
    let handle = files::graft_handle(pid, fd);
    // `fs.read_filter`: between the file system and the process. An aborted (or failing)
    // filter fails the read: the process never sees half-transformed data.
    if n > 0 {
        let (r, outcome) = cpu::with_txn(|txn| match txn {
            Some(txn) => points::fs_filter(false, pid, txn, handle, f.offset as i64, &mut data[..n]),
            None => (0, Outcome::Default),
        });
        if r < 0 || matches!(outcome, Outcome::Aborted(_)) {
            return Err(Error::IoError);
        }
    }
    copy_to_user(buf, &data[..n])?;
    let end = f.offset + n as u64;
    files::set_offset(pid, fd, end);
    if n > 0 {
        read_ahead(pid, fd, f, end - n as u64, n as u64, size, block_size);
    }
    Ok(n as u64)
}

/// After a read of `[offset, offset + len)`: `fs.compute_ra` chooses the blocks to read ahead
/// (default: the descriptor's sequential window), and each one not cached becomes an
/// asynchronous read. The reader does not wait for them. Reads committed grafts asked for with
/// `fs.prefetch` are issued here too.
fn read_ahead(pid: ProcessId, fd: u64, f: OpenFile, offset: u64, len: u64, size: u64, block_size: u64) {
    let bs = block_size.max(1);
    let file_blocks = size.div_ceil(bs);
    let first = offset / bs;
    let last = (offset + len - 1) / bs;
    let mut ra = f.readahead;
    let window = ra.after_read(first, last, file_blocks);
    files::update(pid, fd, |o| o.readahead = ra);
    let mut default = [0i64; readahead::MAX_WINDOW as usize];
    let n = (window.end - window.start).min(default.len() as u64) as usize;
    for (i, d) in default.iter_mut().take(n).enumerate() {
        *d = (window.start + i as u64) as i64;
    }
    let mut out = [0i64; RA_BLOCKS];
    let handle = files::graft_handle(pid, fd);
    let (count, _) = cpu::with_txn(|txn| match txn {
        Some(txn) => points::fs_compute_ra(pid, txn, handle, offset as i64, len as i64, file_blocks as i64, &default[..n], &mut out),
        None => {
            let k = n.min(out.len());
            out[..k].copy_from_slice(&default[..k]);
            (k, Outcome::Default)
        }
    });
    let queued = graft_view::take_queued();
    if count == 0 && queued.is_empty() {
        return;
    }
    let _ = with_fs(|fs| {
        for &b in &out[..count] {
            // The validator already checked every block lies inside the file.
            let _ = fs.prefetch_file_block(f.ino, b as u64);
        }
        for (ino, b) in queued {
            let _ = fs.prefetch_file_block(ino, b);
        }
        Ok(())
    });
}

fn write_file(fd: u64, buf: u64, len: u64) -> Result<u64, Error> {
    let pid = me()?;
    let f = files::get(pid, fd)?;
    if !f.write {
        return Err(Error::BadDescriptor);
    }
    let mut data = read_vec(buf, len.min(MAX_IO), MAX_IO)?;
    let offset = if f.append { with_fs(|fs| Ok(fs.stat(f.ino).map_err(disk::error)?.size))? } else { f.offset };
    // `fs.write_filter`: between the process and the file system. An aborted (or failing)
    // filter fails the write and leaves the file as it was: no untransformed data reaches the
    // disk through a failing filter.
    if !data.is_empty() {
        let handle = files::graft_handle(pid, fd);
        let (r, outcome) = cpu::with_txn(|txn| match txn {
            Some(txn) => points::fs_filter(true, pid, txn, handle, offset as i64, &mut data),
            None => (0, Outcome::Default),
        });
        if r < 0 || matches!(outcome, Outcome::Aborted(_)) {
            return Err(Error::IoError);
        }
    }
    let end = with_fs(|fs| {
        let n = fs.write(f.ino, offset, &data).map_err(disk::error)?;
        Ok(offset + n as u64)
    })?;
    files::set_offset(pid, fd, end);
    Ok(data.len() as u64)
}

fn seek(fd: u64, offset: i64, from: u64) -> Result<u64, Error> {
    let pid = me()?;
    let f = files::get(pid, fd)?;
    let base = match from {
        whence::SET => 0,
        whence::CURRENT => f.offset,
        whence::END => with_fs(|fs| Ok(fs.stat(f.ino).map_err(disk::error)?.size))?,
        _ => return Err(Error::InvalidArgument),
    };
    let new = i64::try_from(base).ok().and_then(|b| b.checked_add(offset)).filter(|&n| n >= 0).ok_or(Error::InvalidArgument)?;
    files::set_offset(pid, fd, new as u64);
    Ok(new as u64)
}
