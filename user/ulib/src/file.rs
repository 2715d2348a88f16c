//! The disk's file system (ext2, mounted at `/`): open files, directories and the path calls.
//!
//! [`File`] owns a descriptor and closes it when dropped; the free functions ([`stat`],
//! [`read_dir`], [`mkdir`], [`rename`], ...) take paths. Every error is a [`sysabi::Error`]
//! (`NotFound`, `Exists`, `IsADirectory`, ...); `NoFileSystem` means the kernel has no disk
//! mounted. The read-only boot ramdisk, from which programs are started, is [`crate::fs`].
//!
//! ```ignore
//! use ulib::file::{self, File};
//! let mut f = File::create("/notes.txt")?;
//! f.write_all(b"hello\n")?;
//! f.sync_all()?;
//! for e in file::read_dir("/")? {
//!     println!("{} {}", e.kind, e.name);
//! }
//! ```
//!
//! The parsing of `readdir`'s records ([`parse_dir_entries`]) and [`join`] are pure and tested
//! on the host.

use crate::sys;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use sysabi::{DirEntryHeader, Error, FileStat};

pub use sysabi::FsInfo;
/// `open`'s flag bits: `READ`, `WRITE`, `CREATE`, `TRUNCATE`, `APPEND`, `EXCLUSIVE`.
pub use sysabi::open as flags;

/// What a path names, from [`sysabi::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    /// A device, pipe or socket node: the file system keeps them, the kernel does not open them.
    Other,
    /// A kind number this library does not know (a newer kernel).
    Unknown(u32),
}

impl FileKind {
    pub fn from_raw(raw: u32) -> FileKind {
        match raw {
            sysabi::kind::REGULAR => FileKind::Regular,
            sysabi::kind::DIRECTORY => FileKind::Directory,
            sysabi::kind::SYMLINK => FileKind::Symlink,
            sysabi::kind::OTHER => FileKind::Other,
            n => FileKind::Unknown(n),
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // `pad` so that widths (`{:<7}`) line up columns.
        match self {
            FileKind::Regular => f.pad("file"),
            FileKind::Directory => f.pad("dir"),
            FileKind::Symlink => f.pad("symlink"),
            FileKind::Other => f.pad("other"),
            FileKind::Unknown(n) => f.pad(&alloc::format!("kind{n}")),
        }
    }
}

/// A file's status (`stat`, `fstat`), with its kind decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub ino: u64,
    pub size: u64,
    /// Bytes of disk the file occupies (data and its block map).
    pub disk_bytes: u64,
    pub kind: FileKind,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub links: u32,
    /// Last modification, seconds of the file system's clock.
    pub mtime: u64,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    pub fn is_file(&self) -> bool {
        self.kind == FileKind::Regular
    }
}

impl From<FileStat> for Metadata {
    fn from(st: FileStat) -> Metadata {
        Metadata {
            ino: st.ino,
            size: st.size,
            disk_bytes: st.disk_bytes,
            kind: FileKind::from_raw(st.kind),
            mode: st.mode,
            links: st.links,
            mtime: st.mtime,
        }
    }
}

/// Where [`File::seek`] counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekFrom {
    Start(u64),
    Current(i64),
    End(i64),
}

/// An open file (or directory, opened for reading) of the disk's file system. Dropping it
/// closes the descriptor; [`File::close`] does the same and reports the kernel's answer.
#[derive(Debug)]
pub struct File {
    fd: u64,
}

impl File {
    /// Opens `path` with [`flags`] bits: at least one of `READ`, `WRITE`.
    pub fn open(path: &str, flags: u64) -> Result<File, Error> {
        sys::open(path, flags).map(|fd| File { fd })
    }

    /// Opens `path` for writing, creating it if missing and emptying it if present.
    pub fn create(path: &str) -> Result<File, Error> {
        File::open(path, flags::WRITE | flags::CREATE | flags::TRUNCATE)
    }

    /// The descriptor (3 or more), for raw calls.
    pub fn fd(&self) -> u64 {
        self.fd
    }

    /// Gives up ownership of the descriptor: it stays open, and closing it is the caller's.
    pub fn into_fd(self) -> u64 {
        let fd = self.fd;
        core::mem::forget(self);
        fd
    }

    /// Reads from the offset into `buf`; 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        sys::read(self.fd, buf)
    }

    /// Reads from the offset to the end.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = self.read(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Fills all of `buf` from the offset; `Err(InvalidArgument)` if the file ends first.
    pub fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.read(buf)?;
            if n == 0 {
                return Err(Error::InvalidArgument);
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Writes at the offset (at the end if opened with `APPEND`); the count written, possibly
    /// short.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        sys::write(self.fd, buf)
    }

    /// Writes all of `buf`, continuing after short writes.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            if n == 0 || n > buf.len() {
                // A file write that takes nothing without an error will take nothing on a retry
                // either; the file system has no room for more.
                return Err(Error::NoSpace);
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Moves the offset; the new offset from the start. A position before the start is
    /// `InvalidArgument` and leaves the offset where it was.
    pub fn seek(&mut self, pos: SeekFrom) -> Result<u64, Error> {
        let (offset, whence) = match pos {
            SeekFrom::Start(o) => (i64::try_from(o).map_err(|_| Error::InvalidArgument)?, sysabi::whence::SET),
            SeekFrom::Current(o) => (o, sysabi::whence::CURRENT),
            SeekFrom::End(o) => (o, sysabi::whence::END),
        };
        sys::seek(self.fd, offset, whence)
    }

    /// The file's status (`fstat`).
    pub fn stat(&self) -> Result<Metadata, Error> {
        sys::fstat(self.fd).map(Metadata::from)
    }

    /// Returns once the file's data and metadata are on the disk (`fsync`).
    pub fn sync_all(&self) -> Result<(), Error> {
        sys::fsync(self.fd)
    }

    /// Closes the descriptor and reports the kernel's answer (which `drop` cannot).
    pub fn close(self) -> Result<(), Error> {
        sys::close(self.into_fd())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // Nothing to do about a failed close here; `File::close` reports it.
        let _ = sys::close(self.fd);
    }
}

/// The status of the file at `path`.
pub fn stat(path: &str) -> Result<Metadata, Error> {
    sys::stat(path).map(Metadata::from)
}

/// Removes the file at `path` (`IsADirectory` for a directory, `Busy` if a process has it open).
pub fn unlink(path: &str) -> Result<(), Error> {
    sys::unlink(path)
}

/// Makes the directory `path` (its parent must exist).
pub fn mkdir(path: &str) -> Result<(), Error> {
    sys::mkdir(path)
}

/// Removes the empty directory `path` (`NotEmpty` otherwise).
pub fn rmdir(path: &str) -> Result<(), Error> {
    sys::rmdir(path)
}

/// Moves or renames `from` to `to`; a file at `to` is replaced, a directory only if empty.
pub fn rename(from: &str, to: &str) -> Result<(), Error> {
    sys::rename(from, to)
}

/// Writes every dirty block of the file system and waits for them.
pub fn sync() -> Result<(), Error> {
    sys::sync()
}

/// The file system's sizes and the buffer cache's counters.
pub fn fs_info() -> Result<FsInfo, Error> {
    sys::fsinfo()
}

/// Reads the whole file at `path`.
pub fn read_file(path: &str) -> Result<Vec<u8>, Error> {
    File::open(path, flags::READ)?.read_to_end()
}

/// Creates (or empties) the file at `path` and writes `data` to it.
pub fn write_file(path: &str, data: &[u8]) -> Result<(), Error> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.close()
}

/// `dir` and `name` joined by one `/`.
pub fn join(dir: &str, name: &str) -> String {
    let mut p = String::from(dir.trim_end_matches('/'));
    p.push('/');
    p.push_str(name.trim_start_matches('/'));
    p
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    /// The name (not a path). A name that is not UTF-8 is shown with U+FFFD in place of the
    /// bad bytes, and cannot be opened through this library.
    pub name: String,
}

/// Largest `readdir` answer accepted: a kernel answering `BufferTooSmall` beyond it is not
/// believed.
const MAX_DIR_BYTES: usize = 16 << 20;

/// The entries of directory `path` (without `.` and `..`), in the file system's order.
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>, Error> {
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        match sys::readdir(path, &mut buf) {
            Ok(n) if n <= buf.len() => return parse_dir_entries(&buf[..n]),
            // It claims to have written more than it was given room for.
            Ok(_) => return Err(Error::InvalidArgument),
            Err(Error::BufferTooSmall) if size < MAX_DIR_BYTES => size *= 2,
            Err(e) => return Err(e),
        }
    }
}

const HEADER: usize = core::mem::size_of::<DirEntryHeader>();

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Parses `readdir`'s answer: records of a [`DirEntryHeader`] (`ino: u64, kind: u32,
/// name_len: u32`) followed by `name_len` bytes of name, each record starting at a multiple of
/// 8 bytes. Every length is checked against the buffer: a header or a name running past its
/// end, an empty name, or a name holding `/` or NUL is `InvalidArgument` (an answer this
/// library does not understand). `.` and `..`, which the kernel does not send, are skipped.
pub fn parse_dir_entries(bytes: &[u8]) -> Result<Vec<DirEntry>, Error> {
    let bad = Error::InvalidArgument;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let ino = u64_at(bytes, at).ok_or(bad)?;
        let kind = u32_at(bytes, at + 8).ok_or(bad)?;
        let name_len = u32_at(bytes, at + 12).ok_or(bad)? as usize;
        let start = at + HEADER;
        let end = start.checked_add(name_len).ok_or(bad)?;
        let name = bytes.get(start..end).ok_or(bad)?;
        if name.is_empty() || name.iter().any(|&b| b == b'/' || b == 0) {
            return Err(bad);
        }
        if name != b"." && name != b".." {
            out.push(DirEntry {
                ino,
                kind: FileKind::from_raw(kind),
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        // The next record starts at the next multiple of 8; the padding after the last one
        // may or may not be counted in the answer's length.
        at = end.checked_next_multiple_of(8).ok_or(bad)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(out: &mut Vec<u8>, ino: u64, kind: u32, name: &[u8], pad: bool) {
        out.extend_from_slice(&ino.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        out.extend_from_slice(name);
        if pad {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
        }
    }

    #[test]
    fn parses_records_at_multiples_of_eight() {
        let mut b = Vec::new();
        record(&mut b, 12, sysabi::kind::REGULAR, b"hello.txt", true);
        record(&mut b, 13, sysabi::kind::DIRECTORY, b"sub", true);
        record(&mut b, 14, 99, b"exactly8", true);
        record(&mut b, 15, sysabi::kind::SYMLINK, b"last", false);
        let e = parse_dir_entries(&b).expect("well-formed");
        let names: Vec<_> = e.iter().map(|e| (e.ino, e.kind, e.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (12, FileKind::Regular, "hello.txt"),
                (13, FileKind::Directory, "sub"),
                (14, FileKind::Unknown(99), "exactly8"),
                (15, FileKind::Symlink, "last"),
            ]
        );
        // The last record's padding counted or not: the same answer.
        let mut padded = b.clone();
        while !padded.len().is_multiple_of(8) {
            padded.push(0);
        }
        assert_eq!(parse_dir_entries(&padded), Ok(e));
        assert_eq!(parse_dir_entries(&[]), Ok(Vec::new()));
    }

    #[test]
    fn rejects_lengths_past_the_buffer() {
        let mut b = Vec::new();
        record(&mut b, 12, 1, b"name", true);
        // A truncated header, a name running past the end, a huge name_len.
        assert_eq!(parse_dir_entries(&b[..10]), Err(Error::InvalidArgument));
        assert_eq!(parse_dir_entries(&b[..HEADER + 2]), Err(Error::InvalidArgument));
        let mut huge = b.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse_dir_entries(&huge), Err(Error::InvalidArgument));
        // Trailing bytes too short for another header.
        let mut tail = b.clone();
        tail.extend_from_slice(&[0; 8]);
        assert_eq!(parse_dir_entries(&tail), Err(Error::InvalidArgument));
    }

    #[test]
    fn rejects_bad_names_and_skips_dots() {
        for name in [&b""[..], b"a/b", b"a\0b"] {
            let mut b = Vec::new();
            record(&mut b, 12, 1, name, true);
            assert_eq!(parse_dir_entries(&b), Err(Error::InvalidArgument), "{name:?}");
        }
        let mut b = Vec::new();
        record(&mut b, 2, 2, b".", true);
        record(&mut b, 2, 2, b"..", true);
        record(&mut b, 11, 2, b"lost+found", true);
        let e = parse_dir_entries(&b).expect("well-formed");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "lost+found");
        let mut b = Vec::new();
        record(&mut b, 12, 1, b"caf\xe9", true);
        assert_eq!(parse_dir_entries(&b).expect("lossy")[0].name, "caf\u{fffd}");
    }

    #[test]
    fn kinds_display_padded() {
        assert_eq!(alloc::format!("{:<5}|{}", FileKind::Directory, FileKind::Unknown(9)), "dir  |kind9");
    }

    #[test]
    fn joins_paths() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/d/", "a"), "/d/a");
        assert_eq!(join("/d", "a"), "/d/a");
        assert_eq!(join("d", "/a"), "d/a");
    }
}
