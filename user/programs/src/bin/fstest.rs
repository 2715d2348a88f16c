//! `fstest`: end-to-end tests of the file-system calls (open .. fsinfo, and read/write/seek on
//! open files) through `ulib::file`, against the ext2 file system the kernel mounts at `/`.
//! Prints `test NAME ... ok|FAILED` per test and `fstest: N passed, N failed`; exits 0 only if
//! all passed. Words on the command line select tests by name. (`fstest --child PATH FD` is
//! the helper process of the `descriptors_per_process` test.)
//!
//! Without a file system (the first call answers `NoFileSystem`, or `NoSys` on a kernel
//! without the calls) it prints `fstest: no file system` and exits 0 having run nothing.
//!
//! Each test works in a directory of its own, `/fstest/work/NAME`, removed at the end. What it
//! leaves for the host to check once the guest has powered off (after a `sync`):
//!
//! - `/fstest/hello.txt`: exactly `hello from the guest\n` (21 bytes);
//! - `/fstest/pattern.bin`: 200,000 bytes, byte `i` = `(i * 7 + i / 1000) % 256`.
//!
//! `/fstest` is emptied at the start, so a run on an image a previous run wrote starts clean.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use sysabi::{Error, FileStat, FsInfo, Sys};
use ulib::file::{self, File, FileKind, SeekFrom, flags};
use ulib::args::parse_u64;
use ulib::{check, expect_err, ok, print, println, process, sys};

use ulib::testing::TestResult;

const ROOT: &str = "/fstest";
const WORK: &str = "/fstest/work";
const HELLO_PATH: &str = "/fstest/hello.txt";
const HELLO: &[u8] = b"hello from the guest\n";
const PATTERN_PATH: &str = "/fstest/pattern.bin";
const PATTERN_LEN: usize = 200_000;

/// Byte `i` of `/fstest/pattern.bin` (the host compares against the same formula).
fn known_pattern(i: usize) -> u8 {
    ((i * 7 + i / 1000) % 256) as u8
}

/// The large-file test's bytes: position-dependent with a period (251, prime) that no block
/// size divides, so a block read from the wrong place shows.
fn large_pattern(i: usize) -> u8 {
    ((i * 31 + i / 4096) % 251) as u8
}

/// A kernel-half address: never user memory.
const KERNEL_ADDR: u64 = 0xffff_8000_0000_0000;
/// Just below the lowest user address: never mapped for us.
const BELOW_USER: u64 = sysabi::USER_START - 0x1000;

fn raw(n: Sys, a: [u64; 5]) -> Result<u64, Error> {
    // SAFETY: the tests pass only addresses the kernel must refuse, or memory we own and may have written; the kernel checks every pointer before it writes.
    Error::result(unsafe { sys::syscall5(n as u64, a[0], a[1], a[2], a[3], a[4]) })
}

/// A user address that was mapped and is not any more.
fn unmapped_addr() -> Result<u64, String> {
    let p = ok!(sys::map(4096));
    // SAFETY: nothing uses the page: it was only just mapped.
    ok!(unsafe { sys::unmap(p, 4096) });
    Ok(p as u64)
}

fn bad_addrs() -> Result<[u64; 4], String> {
    Ok([0, KERNEL_ADDR, BELOW_USER, unmapped_addr()?])
}

/// Removes `path` and everything under it; `NotFound` is success.
fn remove_tree(path: &str) -> Result<(), Error> {
    let meta = match file::stat(path) {
        Ok(m) => m,
        Err(Error::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return file::unlink(path);
    }
    for e in file::read_dir(path)? {
        remove_tree(&file::join(path, &e.name))?;
    }
    file::rmdir(path)
}

fn read_all(path: &str) -> Result<Vec<u8>, String> {
    Ok(ok!(file::read_file(path)))
}

fn free_counts() -> Result<(u64, u64), String> {
    let info: FsInfo = ok!(file::fs_info());
    Ok((info.free_blocks, info.free_inodes))
}

fn names(dir: &str) -> Result<Vec<String>, String> {
    let mut n: Vec<String> = ok!(file::read_dir(dir)).into_iter().map(|e| e.name).collect();
    n.sort();
    Ok(n)
}

fn fs_info_sane(_dir: &str) -> TestResult {
    let i = ok!(file::fs_info());
    check!([1024, 2048, 4096].contains(&i.block_size), "block size {}", i.block_size);
    check!(i.blocks > 0 && i.free_blocks <= i.blocks, "blocks {} free {}", i.blocks, i.free_blocks);
    check!(i.inodes > 0 && i.free_inodes <= i.inodes, "inodes {} free {}", i.inodes, i.free_inodes);
    check!(i.cache_blocks > 0, "the buffer cache holds no blocks: {i:?}");
    let root = ok!(file::stat("/"));
    check!(root.is_dir() && root.ino == 2, "/ is {:?} inode {} (ext2's root is inode 2)", root.kind, root.ino);
    check!(names("/")?.iter().any(|n| n == "fstest"), "/ does not list fstest");
    Ok(())
}

fn create_write_read(dir: &str) -> TestResult {
    let p = file::join(dir, "a.txt");
    let mut f = ok!(File::open(&p, flags::WRITE | flags::CREATE | flags::EXCLUSIVE));
    check!(f.fd() >= 3, "a file got descriptor {} (0-2 are the console)", f.fd());
    ok!(f.write_all(b"hello, disk\n"));
    let m = ok!(f.stat());
    check!(m.size == 12 && m.kind == FileKind::Regular && m.links == 1, "fstat after writing: {m:?}");
    ok!(f.close());
    check!(read_all(&p)? == b"hello, disk\n", "read back {:?}", read_all(&p)?);

    let mut f = ok!(File::open(&p, flags::READ));
    let mut buf = [0u8; 5];
    ok!(f.read_exact(&mut buf));
    check!(&buf == b"hello", "first 5 bytes {buf:?}");
    let rest = ok!(f.read_to_end());
    check!(rest == b", disk\n", "the rest {rest:?}");
    check!(ok!(f.read(&mut buf)) == 0, "read at the end gave bytes");
    drop(f);

    // Overwrite in the middle: the size stays.
    let mut f = ok!(File::open(&p, flags::READ | flags::WRITE));
    check!(ok!(f.seek(SeekFrom::Start(7))) == 7, "seek");
    ok!(f.write_all(b"DISK"));
    check!(ok!(f.stat()).size == 12, "overwriting grew the file");
    drop(f);
    check!(read_all(&p)? == b"hello, DISK\n", "after overwrite {:?}", read_all(&p)?);

    // An empty file.
    let e = file::join(dir, "empty");
    ok!(ok!(File::create(&e)).close());
    check!(ok!(file::stat(&e)).size == 0, "empty file has a size");
    check!(read_all(&e)?.is_empty(), "empty file reads bytes");
    Ok(())
}

fn seek_whence(dir: &str) -> TestResult {
    let p = file::join(dir, "hundred");
    let data: Vec<u8> = (0..100u8).collect();
    ok!(file::write_file(&p, &data));
    let mut f = ok!(File::open(&p, flags::READ));
    let mut one = [0u8; 1];
    let mut five = [0u8; 5];
    check!(ok!(f.seek(SeekFrom::Start(10))) == 10, "SET 10");
    ok!(f.read_exact(&mut five));
    check!(five == [10, 11, 12, 13, 14], "read at 10: {five:?}");
    check!(ok!(f.seek(SeekFrom::Current(5))) == 20, "CUR +5 from 15");
    ok!(f.read_exact(&mut one));
    check!(one[0] == 20, "read at 20: {}", one[0]);
    check!(ok!(f.seek(SeekFrom::Current(-21))) == 0, "CUR -21 from 21");
    check!(ok!(f.seek(SeekFrom::End(0))) == 100, "END 0");
    check!(ok!(f.read(&mut five)) == 0, "read at the end");
    check!(ok!(f.seek(SeekFrom::End(-10))) == 90, "END -10");
    let mut ten = [0u8; 10];
    ok!(f.read_exact(&mut ten));
    check!(ten[0] == 90 && ten[9] == 99, "read at 90: {ten:?}");
    // Before the start: refused, and the offset stays where it was.
    expect_err!(f.seek(SeekFrom::Current(-200)), Error::InvalidArgument);
    expect_err!(f.seek(SeekFrom::End(-101)), Error::InvalidArgument);
    expect_err!(sys::seek(f.fd(), -1, sysabi::whence::SET), Error::InvalidArgument);
    check!(ok!(f.seek(SeekFrom::Current(0))) == 100, "a refused seek moved the offset");
    // Unknown whence.
    expect_err!(sys::seek(f.fd(), 0, 3), Error::InvalidArgument);
    expect_err!(sys::seek(f.fd(), 0, u64::MAX), Error::InvalidArgument);
    // Past the end is allowed; reading there gives nothing.
    check!(ok!(f.seek(SeekFrom::Start(200))) == 200, "SET 200");
    check!(ok!(f.read(&mut five)) == 0, "read past the end gave bytes");
    Ok(())
}

fn write_past_end_reads_zeros(dir: &str) -> TestResult {
    let p = file::join(dir, "gap");
    let mut f = ok!(File::open(&p, flags::READ | flags::WRITE | flags::CREATE));
    ok!(f.write_all(b"ab"));
    ok!(f.seek(SeekFrom::Start(5000)));
    ok!(f.write_all(b"cd"));
    check!(ok!(f.stat()).size == 5002, "size {}", ok!(f.stat()).size);
    // Far past the end: a hole of many blocks.
    ok!(f.seek(SeekFrom::Start(100_000)));
    ok!(f.write_all(b"z"));
    drop(f);
    let got = read_all(&p)?;
    check!(got.len() == 100_001, "length {}", got.len());
    check!(&got[..2] == b"ab" && &got[5000..5002] == b"cd" && got[100_000] == b'z', "the written bytes moved");
    let zeros = got[2..5000].iter().chain(&got[5002..100_000]).all(|&b| b == 0);
    check!(zeros, "the gaps do not read as zeros");
    Ok(())
}

fn append_mode(dir: &str) -> TestResult {
    let p = file::join(dir, "log");
    ok!(file::write_file(&p, b"one\n"));
    let mut f = ok!(File::open(&p, flags::WRITE | flags::APPEND));
    ok!(f.write_all(b"two\n"));
    // APPEND writes at the end wherever the offset was put.
    ok!(f.seek(SeekFrom::Start(0)));
    ok!(f.write_all(b"three\n"));
    drop(f);
    check!(read_all(&p)? == b"one\ntwo\nthree\n", "got {:?}", String::from_utf8_lossy(&read_all(&p)?));
    // APPEND with CREATE makes a missing file.
    let q = file::join(dir, "new-log");
    let mut f = ok!(File::open(&q, flags::WRITE | flags::CREATE | flags::APPEND));
    ok!(f.write_all(b"first\n"));
    drop(f);
    check!(read_all(&q)? == b"first\n", "appending to a new file");
    Ok(())
}

fn truncate_on_open(dir: &str) -> TestResult {
    let p = file::join(dir, "t");
    ok!(file::write_file(&p, &[0x55u8; 5000]));
    check!(ok!(file::stat(&p)).size == 5000, "size before");
    let (free_before, _) = free_counts()?;
    expect_err!(File::open(&p, flags::READ | flags::TRUNCATE), Error::InvalidArgument);
    check!(ok!(file::stat(&p)).size == 5000, "a refused TRUNCATE emptied the file");
    let mut f = ok!(File::open(&p, flags::READ | flags::WRITE | flags::TRUNCATE));
    check!(ok!(f.stat()).size == 0, "TRUNCATE left a size");
    let (free_after, _) = free_counts()?;
    check!(free_after > free_before, "truncating 5000 bytes freed no block ({free_before} -> {free_after})");
    ok!(f.write_all(b"xy"));
    ok!(f.seek(SeekFrom::Start(0)));
    check!(ok!(f.read_to_end()) == b"xy", "old bytes after truncate");
    Ok(())
}

fn large_file_indirect(dir: &str) -> TestResult {
    // 300 KiB: past the 12 direct blocks for 1 KiB and 4 KiB blocks, and past the single
    // indirect block into the double indirect one for 1 KiB blocks (12 + 256 = 268 KiB).
    const LEN: usize = 300 * 1024;
    let p = file::join(dir, "big");
    let (free_before, inodes_before) = free_counts()?;
    let mut want: Vec<u8> = (0..LEN).map(large_pattern).collect();
    let mut f = ok!(File::open(&p, flags::READ | flags::WRITE | flags::CREATE | flags::EXCLUSIVE));
    // Odd chunks: no write starts or ends on a block boundary.
    for chunk in want.chunks(3001) {
        ok!(f.write_all(chunk));
    }
    let m = ok!(f.stat());
    check!(m.size == LEN as u64, "size {}", m.size);
    check!(m.disk_bytes >= LEN as u64, "{} bytes on disk for {LEN}", m.disk_bytes);
    ok!(f.seek(SeekFrom::Start(0)));
    let mut got = Vec::with_capacity(LEN);
    let mut buf = vec![0u8; 4099];
    loop {
        let n = ok!(f.read(&mut buf));
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    if let Some(i) = (0..LEN).find(|&i| got.get(i) != want.get(i)) {
        return Err(format!("first difference at byte {i} (block {} of 1 KiB); read {} bytes", i / 1024, got.len()));
    }
    check!(got.len() == LEN, "read {} bytes", got.len());
    // Short reads around each boundary.
    for at in [0, 12 * 1024 - 3, 12 * 4096 - 3, 268 * 1024 - 3, LEN - 3] {
        check!(ok!(f.seek(SeekFrom::Start(at as u64))) == at as u64, "seek {at}");
        let mut six = [0u8; 6];
        let n = ok!(f.read(&mut six));
        check!(n >= 1 && at + n <= LEN && six[..n] == want[at..at + n], "read at {at}: {:?}", &six[..n]);
    }
    // Overwrite across the direct/indirect boundary of 1 KiB blocks.
    let at = 12 * 1024 - 5;
    ok!(f.seek(SeekFrom::Start(at as u64)));
    ok!(f.write_all(&[0xee; 10]));
    want[at..at + 10].fill(0xee);
    check!(ok!(f.stat()).size == LEN as u64, "overwrite changed the size");
    ok!(f.sync_all());
    drop(f);
    check!(read_all(&p)? == want, "the file differs after the overwrite");
    // Removing it gives every block back, the indirect ones included.
    ok!(file::unlink(&p));
    let (free_after, inodes_after) = free_counts()?;
    check!(
        free_after == free_before && inodes_after == inodes_before,
        "free blocks {free_before} -> {free_after}, free inodes {inodes_before} -> {inodes_after} after create + unlink"
    );
    Ok(())
}

fn mkdir_readdir(dir: &str) -> TestResult {
    let d = file::join(dir, "d");
    ok!(file::mkdir(&d));
    check!(ok!(file::read_dir(&d)).is_empty(), "a new directory lists entries");
    for n in ["a", "b"] {
        ok!(ok!(File::create(&file::join(&d, n))).close());
    }
    ok!(file::write_file(&file::join(&d, "c"), b"abc"));
    ok!(file::mkdir(&file::join(&d, "sub")));
    let entries = ok!(file::read_dir(&d));
    let mut seen: Vec<(String, FileKind)> = entries.iter().map(|e| (e.name.clone(), e.kind)).collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let want = [("a", FileKind::Regular), ("b", FileKind::Regular), ("c", FileKind::Regular), ("sub", FileKind::Directory)];
    check!(
        seen.len() == want.len() && seen.iter().zip(want).all(|(s, w)| s.0 == w.0 && s.1 == w.1),
        "entries {seen:?}"
    );
    for e in &entries {
        let m = ok!(file::stat(&file::join(&d, &e.name)));
        check!(m.ino == e.ino && m.kind == e.kind, "{}: readdir says {} {:?}, stat {} {:?}", e.name, e.ino, e.kind, m.ino, m.kind);
    }
    // Errors.
    expect_err!(file::mkdir(&d), Error::Exists);
    expect_err!(file::mkdir(&file::join(&d, "c")), Error::Exists);
    expect_err!(file::mkdir(&file::join(dir, "no/such/parent")), Error::NotFound);
    expect_err!(file::mkdir(&file::join(&d, "c/x")), Error::NotADirectory);
    expect_err!(file::read_dir(&file::join(&d, "c")), Error::NotADirectory);
    expect_err!(file::read_dir(&file::join(dir, "missing")), Error::NotFound);
    Ok(())
}

fn readdir_many(dir: &str) -> TestResult {
    // 120 entries of 48 bytes each: more than the 4 KiB first buffer of `read_dir`, which must
    // grow it on BufferTooSmall.
    const N: usize = 120;
    let name = |i: usize| format!("file-with-a-rather-long-name-{i:03}");
    for i in 0..N {
        ok!(ok!(File::open(&file::join(dir, &name(i)), flags::WRITE | flags::CREATE | flags::EXCLUSIVE)).close());
    }
    let got = names(dir)?;
    let mut want: Vec<String> = (0..N).map(name).collect();
    want.sort();
    check!(got == want, "listed {} entries, first {:?}", got.len(), got.first());
    let mut small = [0u8; 64];
    expect_err!(sys::readdir(dir, &mut small), Error::BufferTooSmall);
    expect_err!(sys::readdir(dir, &mut []), Error::BufferTooSmall);
    for i in (0..N).step_by(2) {
        ok!(file::unlink(&file::join(dir, &name(i))));
    }
    let got = names(dir)?;
    let mut want: Vec<String> = (1..N).step_by(2).map(name).collect();
    want.sort();
    check!(got == want, "after removing the even ones: {} entries", got.len());
    Ok(())
}

fn rename_files_and_dirs(dir: &str) -> TestResult {
    let j = |n: &str| file::join(dir, n);
    // A file, in its directory: same inode, same bytes.
    ok!(file::write_file(&j("a"), b"contents of a"));
    let ino = ok!(file::stat(&j("a"))).ino;
    ok!(file::rename(&j("a"), &j("b")));
    expect_err!(file::stat(&j("a")), Error::NotFound);
    let m = ok!(file::stat(&j("b")));
    check!(m.ino == ino && read_all(&j("b"))? == b"contents of a", "renamed file changed: {m:?}");
    // Across directories.
    ok!(file::mkdir(&j("other")));
    ok!(file::rename(&j("b"), &j("other/c")));
    check!(read_all(&j("other/c"))? == b"contents of a", "moved file");
    check!(names(dir)? == ["other"], "source directory lists {:?}", names(dir)?);
    // Onto an existing file: replaced.
    ok!(file::write_file(&j("x"), b"X"));
    ok!(file::write_file(&j("y"), b"Y"));
    ok!(file::rename(&j("x"), &j("y")));
    check!(read_all(&j("y"))? == b"X", "rename onto a file did not replace it");
    expect_err!(file::stat(&j("x")), Error::NotFound);
    // Onto itself: nothing changes.
    ok!(file::rename(&j("y"), &j("y")));
    check!(read_all(&j("y"))? == b"X", "rename onto itself lost the file");
    // A directory with its contents, into another directory: link counts follow `..`.
    ok!(file::mkdir(&j("d1")));
    ok!(file::write_file(&j("d1/inner"), b"in"));
    ok!(file::mkdir(&j("d2")));
    let parent_links = ok!(file::stat(dir)).links;
    ok!(file::rename(&j("d1"), &j("d2/moved")));
    expect_err!(file::stat(&j("d1")), Error::NotFound);
    check!(ok!(file::stat(&j("d2/moved"))).is_dir(), "moved directory is not one");
    check!(read_all(&j("d2/moved/inner"))? == b"in", "moved directory's file");
    let d2 = ok!(file::stat(&j("d2"))).links;
    check!(d2 == 3, "d2 has {d2} links with one subdirectory (want 3)");
    let after = ok!(file::stat(dir)).links;
    check!(after + 1 == parent_links, "the old parent's links {parent_links} -> {after}");
    // Onto an empty directory: replaced; onto a non-empty one: refused.
    ok!(file::mkdir(&j("e1")));
    ok!(file::mkdir(&j("e2")));
    ok!(file::rename(&j("e1"), &j("e2")));
    expect_err!(file::stat(&j("e1")), Error::NotFound);
    check!(ok!(file::stat(&j("e2"))).is_dir(), "e2 is not a directory");
    expect_err!(file::rename(&j("e2"), &j("d2")), Error::NotEmpty);
    check!(ok!(file::stat(&j("e2"))).is_dir(), "a refused rename removed e2");
    // Kinds must match; a directory cannot move under itself.
    expect_err!(file::rename(&j("y"), &j("e2")), Error::IsADirectory);
    expect_err!(file::rename(&j("e2"), &j("y")), Error::NotADirectory);
    expect_err!(file::rename(&j("d2"), &j("d2/moved/deeper")), Error::InvalidArgument);
    check!(read_all(&j("d2/moved/inner"))? == b"in", "a refused rename disturbed d2");
    // Missing source or target directory.
    expect_err!(file::rename(&j("missing"), &j("z")), Error::NotFound);
    expect_err!(file::rename(&j("y"), &j("no/such/dir")), Error::NotFound);
    check!(read_all(&j("y"))? == b"X", "a refused rename lost the file");
    Ok(())
}

fn rmdir_errors(dir: &str) -> TestResult {
    let d = file::join(dir, "d");
    let f = file::join(&d, "f");
    let links = ok!(file::stat(dir)).links;
    ok!(file::mkdir(&d));
    check!(ok!(file::stat(dir)).links == links + 1, "mkdir did not add a link to the parent");
    ok!(file::write_file(&f, b"1"));
    expect_err!(file::rmdir(&d), Error::NotEmpty);
    expect_err!(file::rmdir(&f), Error::NotADirectory);
    expect_err!(file::rmdir(&file::join(dir, "missing")), Error::NotFound);
    check!(read_all(&f)? == b"1", "a refused rmdir disturbed the directory");
    ok!(file::unlink(&f));
    ok!(file::rmdir(&d));
    expect_err!(file::stat(&d), Error::NotFound);
    check!(ok!(file::stat(dir)).links == links, "rmdir did not give the parent's link back");
    Ok(())
}

fn unlink_errors(dir: &str) -> TestResult {
    let d = file::join(dir, "d");
    let f = file::join(dir, "f");
    ok!(file::mkdir(&d));
    expect_err!(file::unlink(&d), Error::IsADirectory);
    expect_err!(file::unlink(&file::join(dir, "missing")), Error::NotFound);
    let (_, inodes_before) = free_counts()?;
    ok!(file::write_file(&f, b"data"));
    expect_err!(file::unlink(&file::join(&f, "x")), Error::NotADirectory);
    // Open somewhere: refused, and still readable.
    let mut open = ok!(File::open(&f, flags::READ));
    expect_err!(file::unlink(&f), Error::Busy);
    check!(ok!(open.read_to_end()) == b"data", "the open file changed");
    drop(open);
    ok!(file::unlink(&f));
    expect_err!(File::open(&f, flags::READ), Error::NotFound);
    expect_err!(file::unlink(&f), Error::NotFound);
    let (_, inodes_after) = free_counts()?;
    check!(inodes_after == inodes_before, "free inodes {inodes_before} -> {inodes_after} after create + unlink");
    check!(names(dir)? == ["d"], "left {:?}", names(dir)?);
    Ok(())
}

fn stat_fields(dir: &str) -> TestResult {
    let f = file::join(dir, "f");
    ok!(file::write_file(&f, &[7u8; 1234]));
    let m = ok!(file::stat(&f));
    check!(m.size == 1234 && m.kind == FileKind::Regular && m.links == 1, "file: {m:?}");
    check!(m.ino > 2 && m.mode & 0o7777 != 0 && m.disk_bytes >= 1234, "file: {m:?}");
    let open = ok!(File::open(&f, flags::READ));
    check!(ok!(open.stat()) == m, "fstat {:?} differs from stat {m:?}", ok!(open.stat()));
    drop(open);
    let d = file::join(dir, "d");
    ok!(file::mkdir(&d));
    let m = ok!(file::stat(&d));
    check!(m.kind == FileKind::Directory && m.links == 2, "new directory: {m:?}");
    ok!(file::mkdir(&file::join(&d, "sub")));
    check!(ok!(file::stat(&d)).links == 3, "directory with a subdirectory: {:?}", ok!(file::stat(&d)));
    // A relative path is taken from `/`.
    let rel = f.trim_start_matches('/');
    check!(ok!(file::stat(rel)).ino == ok!(file::stat(&f)).ino, "relative {rel} is another file");
    expect_err!(file::stat(&file::join(dir, "missing")), Error::NotFound);
    expect_err!(file::stat(&file::join(&f, "x")), Error::NotADirectory);
    Ok(())
}

fn open_flags(dir: &str) -> TestResult {
    let f = file::join(dir, "f");
    ok!(file::write_file(&f, b"keep"));
    // Neither READ nor WRITE.
    for bad in [0, flags::CREATE, flags::APPEND, flags::TRUNCATE, flags::CREATE | flags::EXCLUSIVE] {
        expect_err!(File::open(&f, bad), Error::InvalidArgument);
    }
    // Bits that mean nothing.
    for bad in [1 << 6, flags::READ | 1 << 6, flags::READ | 1 << 63, flags::WRITE | !flags::ALL] {
        expect_err!(File::open(&f, bad), Error::InvalidArgument);
    }
    // TRUNCATE needs WRITE; EXCLUSIVE means something only with CREATE.
    expect_err!(File::open(&f, flags::READ | flags::TRUNCATE), Error::InvalidArgument);
    expect_err!(File::open(&f, flags::READ | flags::EXCLUSIVE), Error::InvalidArgument);
    expect_err!(File::open(&f, flags::WRITE | flags::CREATE | flags::EXCLUSIVE), Error::Exists);
    check!(read_all(&f)? == b"keep", "refused opens changed the file");
    // Directories open for reading only.
    expect_err!(File::open(dir, flags::WRITE), Error::IsADirectory);
    expect_err!(File::open(dir, flags::READ | flags::WRITE), Error::IsADirectory);
    ok!(File::open(dir, flags::READ));
    // Missing files, parents, and paths through a file.
    expect_err!(File::open(&file::join(dir, "missing"), flags::READ), Error::NotFound);
    expect_err!(File::open(&file::join(dir, "no/such"), flags::WRITE | flags::CREATE), Error::NotFound);
    expect_err!(File::open(&file::join(&f, "x"), flags::READ), Error::NotADirectory);
    // ext2 names are at most 255 bytes.
    let long = "n".repeat(256);
    expect_err!(File::open(&file::join(dir, &long), flags::WRITE | flags::CREATE), Error::NameTooLong);
    let longest = "n".repeat(255);
    ok!(ok!(File::open(&file::join(dir, &longest), flags::WRITE | flags::CREATE)).close());
    check!(names(dir)?.contains(&longest), "a 255-byte name is not listed");
    Ok(())
}

fn bad_descriptors(dir: &str) -> TestResult {
    let f = file::join(dir, "f");
    ok!(file::write_file(&f, b"data"));
    let fd = ok!(sys::open(&f, flags::READ | flags::WRITE));
    ok!(sys::close(fd));
    expect_err!(sys::close(fd), Error::BadDescriptor);
    let mut buf = [0u8; 4];
    expect_err!(sys::read(fd, &mut buf), Error::BadDescriptor);
    // Opened for one direction only.
    let wo = ok!(File::open(&f, flags::WRITE));
    expect_err!(sys::read(wo.fd(), &mut buf), Error::BadDescriptor);
    let ro = ok!(File::open(&f, flags::READ));
    expect_err!(sys::write(ro.fd(), b"x"), Error::BadDescriptor);
    check!(wo.fd() != ro.fd(), "two open files share descriptor {}", wo.fd());
    drop((wo, ro));
    check!(read_all(&f)? == b"data", "refused calls changed the file");
    // Never opened.
    for fd in [99, 1 << 20, u64::MAX] {
        expect_err!(sys::read(fd, &mut buf), Error::BadDescriptor);
        expect_err!(sys::write(fd, b"x"), Error::BadDescriptor);
        expect_err!(sys::seek(fd, 0, sysabi::whence::SET), Error::BadDescriptor);
        expect_err!(sys::fstat(fd), Error::BadDescriptor);
        expect_err!(sys::fsync(fd), Error::BadDescriptor);
        expect_err!(sys::close(fd), Error::BadDescriptor);
    }
    Ok(())
}

fn many_open_files(dir: &str) -> TestResult {
    const N: usize = 16;
    let mut files = Vec::new();
    for i in 0..N {
        let mut f = ok!(File::create(&file::join(dir, &format!("f{i}"))));
        ok!(f.write_all(format!("file {i}\n").as_bytes()));
        files.push(f);
    }
    let mut fds: Vec<u64> = files.iter().map(File::fd).collect();
    fds.sort_unstable();
    fds.dedup();
    check!(fds.len() == N && fds[0] >= 3, "descriptors {fds:?}");
    drop(files);
    for i in 0..N {
        let got = read_all(&file::join(dir, &format!("f{i}")))?;
        check!(got == format!("file {i}\n").as_bytes(), "f{i} reads {got:?}");
    }
    // Closing gives descriptors back: far more opens than any table holds at once.
    let p = file::join(dir, "f0");
    for _ in 0..300 {
        ok!(ok!(File::open(&p, flags::READ)).close());
    }
    Ok(())
}

fn bad_pointers(dir: &str) -> TestResult {
    let f = file::join(dir, "f");
    ok!(file::write_file(&f, b"0123456789abcdef"));
    let fb = (f.as_ptr() as u64, f.len() as u64);
    let mut st = FileStat::default();
    let st_out = (&raw mut st as u64, core::mem::size_of::<FileStat>() as u64);
    let mut info = FsInfo::default();
    let mut listing = [0u8; 4096];
    let mut file = ok!(File::open(&f, flags::READ | flags::WRITE));
    let fd = file.fd();
    for a in bad_addrs()? {
        expect_err!(raw(Sys::Open, [a, 8, flags::READ, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Stat, [a, 8, st_out.0, st_out.1, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Stat, [fb.0, fb.1, a, st_out.1, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Fstat, [fd, a, st_out.1, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Unlink, [a, 8, 0, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Mkdir, [a, 8, 0, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Rmdir, [a, 8, 0, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Rename, [a, 8, fb.0, fb.1, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Rename, [fb.0, fb.1, a, 8, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Readdir, [a, 8, listing.as_mut_ptr() as u64, 4096, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Readdir, [dir.as_ptr() as u64, dir.len() as u64, a, 4096, 0]), Error::BadAddress);
        expect_err!(raw(Sys::FsInfo, [a, core::mem::size_of::<FsInfo>() as u64, 0, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Read, [fd, a, 16, 0, 0]), Error::BadAddress);
        expect_err!(raw(Sys::Write, [fd, a, 16, 0, 0]), Error::BadAddress);
    }
    // A buffer that runs into the kernel half.
    expect_err!(raw(Sys::Read, [fd, sysabi::USER_END - 8, 16, 0, 0]), Error::BadAddress);
    expect_err!(raw(Sys::Write, [fd, sysabi::USER_END - 8, 16, 0, 0]), Error::BadAddress);
    // None of that moved the offset, wrote the file, or removed it.
    check!(ok!(file.seek(SeekFrom::Current(0))) == 0, "refused reads or writes moved the offset");
    drop(file);
    check!(read_all(&f)? == b"0123456789abcdef", "refused calls changed the file");
    // Records that do not fit their buffer.
    expect_err!(raw(Sys::Stat, [fb.0, fb.1, st_out.0, 8, 0]), Error::BufferTooSmall);
    expect_err!(raw(Sys::FsInfo, [&raw mut info as u64, 8, 0, 0, 0]), Error::BufferTooSmall);
    // A path that is not UTF-8.
    let bad_utf8 = [b'/', 0xff, 0xfe];
    expect_err!(raw(Sys::Open, [bad_utf8.as_ptr() as u64, 3, flags::READ, 0, 0]), Error::InvalidArgument);
    Ok(())
}

fn fsync_and_sync(dir: &str) -> TestResult {
    let p = file::join(dir, "synced");
    let mut f = ok!(File::open(&p, flags::READ | flags::WRITE | flags::CREATE));
    ok!(f.write_all(b"durable\n"));
    ok!(f.sync_all());
    ok!(f.write_all(b"more\n"));
    ok!(file::sync());
    ok!(f.sync_all());
    drop(f);
    // fsync of a file open for reading is allowed: there may be nothing to write.
    let r = ok!(File::open(&p, flags::READ));
    ok!(r.sync_all());
    drop(r);
    check!(read_all(&p)? == b"durable\nmore\n", "after syncs: {:?}", read_all(&p)?);
    Ok(())
}

/// The child's half of `descriptors_per_process` (`fstest --child PATH PARENT_FD`): the
/// parent's open descriptor is not ours, and a file we leave open is closed by our exit.
/// Exit codes: 0 as expected, 2 the parent's descriptor worked here, 3 PATH did not open,
/// 4 bad arguments.
fn child(args: &[&str]) -> i32 {
    let (Some(path), Some(parent_fd)) = (args.first(), args.get(1).and_then(|s| parse_u64(s))) else {
        return 4;
    };
    if sys::fstat(parent_fd) != Err(Error::BadDescriptor) {
        return 2;
    }
    match sys::open(path, flags::READ) {
        // Exit without closing it: the kernel must.
        Ok(_) => 0,
        Err(_) => 3,
    }
}

fn descriptors_per_process(dir: &str) -> TestResult {
    let p = file::join(dir, "held");
    ok!(file::write_file(&p, b"x"));
    let mine = ok!(File::open(&p, flags::READ));
    let fd = format!("{}", mine.fd());
    let code = ok!(process::run("fstest", &["--child", &p, &fd]));
    check!(code == 0, "the child exited with {code} (2: our descriptor {fd} worked in it; 3: it could not open {p})");
    drop(mine);
    // Nobody has it open now: the child's descriptor went with the child.
    ok!(file::unlink(&p));
    Ok(())
}

/// A 16 MiB file made by run.sh (more than the buffer cache holds).
const BIG_FILE: &str = "/data/big.bin";

/// A process that exits while another of its threads is inside the file system (holding its
/// lock, waiting for the disk) must not leave the file system locked or half-changed: that
/// thread finishes its call and dies on its way out; other processes go on using files.
fn exit_while_a_thread_is_in_the_file_system(dir: &str) -> TestResult {
    if file::stat(BIG_FILE).is_err() {
        return Err(format!("{BIG_FILE} is missing (run.sh makes it)"));
    }
    let p = file::join(dir, "after");
    for ms in [3u64, 7, 12, 20, 31] {
        let code = ok!(process::run("fstest", &["--exit-race", &format!("{ms}")]));
        check!(code == 0, "the racing child exited with {code}");
        // The file system still answers, and still writes.
        ok!(file::write_file(&p, format!("after a race of {ms} ms").as_bytes()));
        check!(read_all(&p)? == format!("after a race of {ms} ms").as_bytes(), "the file system misbehaves after the race");
    }
    Ok(())
}

/// Writes the files the host checks after the guest powers off, reads them back, syncs.
fn known_files(_dir: &str) -> TestResult {
    let pattern: Vec<u8> = (0..PATTERN_LEN).map(known_pattern).collect();
    for (path, data) in [(HELLO_PATH, HELLO), (PATTERN_PATH, &pattern[..])] {
        let mut f = ok!(File::create(path));
        ok!(f.write_all(data));
        ok!(f.sync_all());
        ok!(f.close());
        let got = read_all(path)?;
        check!(got == data, "{path} reads back {} bytes, not the {} written", got.len(), data.len());
    }
    ok!(file::sync());
    Ok(())
}

type Test = (&'static str, fn(&str) -> TestResult);

const TESTS: &[Test] = &[
    ("fs_info_sane", fs_info_sane),
    ("create_write_read", create_write_read),
    ("seek_whence", seek_whence),
    ("write_past_end_reads_zeros", write_past_end_reads_zeros),
    ("append_mode", append_mode),
    ("truncate_on_open", truncate_on_open),
    ("large_file_indirect", large_file_indirect),
    ("mkdir_readdir", mkdir_readdir),
    ("readdir_many", readdir_many),
    ("rename_files_and_dirs", rename_files_and_dirs),
    ("rmdir_errors", rmdir_errors),
    ("unlink_errors", unlink_errors),
    ("stat_fields", stat_fields),
    ("open_flags", open_flags),
    ("bad_descriptors", bad_descriptors),
    ("many_open_files", many_open_files),
    ("bad_pointers", bad_pointers),
    ("fsync_and_sync", fsync_and_sync),
    ("descriptors_per_process", descriptors_per_process),
    ("exit_while_a_thread_is_in_the_file_system", exit_while_a_thread_is_in_the_file_system),
    ("known_files", known_files),
];

/// Empties `/fstest` and makes `/fstest/work`.
fn prepare() -> Result<(), Error> {
    remove_tree(ROOT)?;
    file::mkdir(ROOT)?;
    file::mkdir(WORK)
}

/// Prints `test NAME ... ok|FAILED: why`; whether it passed.
fn report(name: &str, r: TestResult) -> bool {
    print!("test {name} ... ");
    match r {
        Ok(()) => {
            println!("ok");
            true
        }
        Err(why) => {
            println!("FAILED: {why}");
            false
        }
    }
}

/// `fstest --exit-race MS`: a thread reads a large file over and over (so that it is inside
/// the file system, often waiting for the disk) while the main thread exits the process after
/// `MS` milliseconds.
fn exit_race(args: &[&str]) -> i32 {
    let ms = args.first().and_then(|s| parse_u64(s)).unwrap_or(10);
    let reader = ulib::thread::spawn(|| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Ok(mut f) = File::open(BIG_FILE, flags::READ) {
                while let Ok(1..) = f.read(&mut buf) {}
            }
        }
    });
    if reader.is_err() {
        return 5;
    }
    let _ = sys::sleep(ms);
    // The process ends while its reader is (most likely) inside the file system.
    0
}

fn main(args: &[&str]) -> i32 {
    if args.get(1) == Some(&"--child") {
        return child(&args[2..]);
    }
    if args.get(1) == Some(&"--exit-race") {
        return exit_race(&args[2..]);
    }
    match file::fs_info() {
        Ok(_) => {}
        Err(Error::NoFileSystem | Error::NoSys) => {
            println!("fstest: no file system");
            return 0;
        }
        Err(e) => {
            println!("fstest: fsinfo: {e}");
            println!("fstest: 0 passed, 1 failed");
            return 1;
        }
    }
    if let Err(e) = prepare() {
        report("prepare", Err(format!("cannot empty {ROOT} and make {WORK}: {e}")));
        println!("fstest: 0 passed, 1 failed");
        return 1;
    }
    // `fstest NAME...` runs only the tests whose names contain one of the words.
    let filters = &args[1.min(args.len())..];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f)) {
            continue;
        }
        let dir = file::join(WORK, name);
        let r = match file::mkdir(&dir) {
            Ok(()) => test(&dir),
            Err(e) => Err(format!("mkdir {dir}: {e}")),
        };
        if report(name, r) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // Leave only the known files, on the disk.
    let cleanup = remove_tree(WORK).and_then(|()| file::sync());
    if let Err(e) = cleanup {
        report("cleanup", Err(format!("removing {WORK}: {e}")));
        failed += 1;
    }
    println!("fstest: {passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
ulib::entry!(main);
