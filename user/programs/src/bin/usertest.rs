//! `usertest`: end-to-end tests of the system-call layer. Prints `test NAME ... ok|FAILED`
//! per test and `usertest: N passed, N failed`; exits 0 only if all passed.
//!
//! Needs in the ramdisk: the `exitcode` program, and at least one graft blob under `grafts/`
//! that the kernel accepts (for the attach tests).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use sysabi::{Error, Sys};
use ulib::sync::Mutex;
use ulib::{check, expect_err, fs, graft, ok, print, println, process, sys, thread};

use ulib::testing::TestResult;

/// A kernel-half address: never user memory.
const KERNEL_ADDR: u64 = 0xffff_8000_0000_0000;
/// Just below the lowest user address: never mapped for us.
const BELOW_USER: u64 = sysabi::USER_START - 0x1000;

fn raw(n: u64, a: [u64; 5]) -> Result<u64, Error> {
    // SAFETY: the tests pass only addresses the kernel must refuse, or memory we own; nothing of ours is written through a bad pointer because the kernel checks before it writes.
    Error::result(unsafe { sys::syscall5(n, a[0], a[1], a[2], a[3], a[4]) })
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

fn some_file() -> Result<String, String> {
    let files = ok!(fs::list());
    files.into_iter().find(|f| f.ends_with("exitcode")).ok_or_else(|| "no exitcode in the ramdisk".into())
}

/// The first graft blob under `grafts/` that the kernel loads: (id, its point).
fn some_graft() -> Result<(u32, String), String> {
    for f in ok!(fs::list()) {
        if !f.starts_with("grafts/") || !f.ends_with(".gb") || f.contains("hostile") {
            continue;
        }
        if let Ok(l) = graft::load_file(&f)
            && let Some(p) = l.point {
                return Ok((l.id, p));
            }
    }
    Err("no loadable graft blob under grafts/".into())
}

fn write_bad_pointers() -> TestResult {
    for a in bad_addrs()? {
        expect_err!(raw(Sys::Write as u64, [1, a, 16, 0, 0]), Error::BadAddress);
    }
    // The end of a buffer that runs into the kernel half.
    expect_err!(raw(Sys::Write as u64, [1, sysabi::USER_END - 8, 16, 0, 0]), Error::BadAddress);
    Ok(())
}

fn write_bad_fd() -> TestResult {
    expect_err!(sys::write(7, b"x"), Error::BadDescriptor);
    Ok(())
}

/// Descriptors 0, 1, 2 are the console, one direction each, and cannot be closed; any other
/// that is not an open file is `BadDescriptor` for every call that takes one.
fn console_descriptors() -> TestResult {
    let mut buf = [0u8; 4];
    expect_err!(sys::write(0, b"x"), Error::BadDescriptor);
    expect_err!(sys::read(1, &mut buf), Error::BadDescriptor);
    expect_err!(sys::read(2, &mut buf), Error::BadDescriptor);
    for fd in [0, 1, 2] {
        expect_err!(sys::close(fd), Error::BadDescriptor);
    }
    // An empty write from a real buffer: prints nothing in the middle of the test line.
    check!(ok!(sys::write(1, &buf[..0])) == 0, "the console went away after close(1)");
    for fd in [3, 7, 66, 1 << 32, u64::MAX] {
        expect_err!(sys::read(fd, &mut buf), Error::BadDescriptor);
        expect_err!(sys::write(fd, b"x"), Error::BadDescriptor);
        expect_err!(sys::seek(fd, 0, sysabi::whence::SET), Error::BadDescriptor);
        expect_err!(sys::fstat(fd), Error::BadDescriptor);
        expect_err!(sys::fsync(fd), Error::BadDescriptor);
        expect_err!(sys::close(fd), Error::BadDescriptor);
    }
    Ok(())
}

fn read_bad_pointers() -> TestResult {
    // The kernel must check the buffer before it blocks for console input.
    for a in bad_addrs()? {
        expect_err!(raw(Sys::Read as u64, [0, a, 16, 0, 0]), Error::BadAddress);
    }
    Ok(())
}

fn graft_load_bad_pointers() -> TestResult {
    let mut log = [0u8; 64];
    for a in bad_addrs()? {
        expect_err!(raw(Sys::GraftLoad as u64, [a, 64, log.as_mut_ptr() as u64, 64, 0]), Error::BadAddress);
    }
    Ok(())
}

fn file_read_bad_pointers() -> TestResult {
    let file = some_file()?;
    let mut buf = [0u8; 16];
    for a in bad_addrs()? {
        // A bad path, then a bad buffer for a file that exists.
        expect_err!(raw(Sys::FileRead as u64, [a, 8, 0, buf.as_mut_ptr() as u64, 16]), Error::BadAddress);
        expect_err!(raw(Sys::FileRead as u64, [file.as_ptr() as u64, file.len() as u64, 0, a, 16]), Error::BadAddress);
    }
    Ok(())
}

fn unknown_syscall() -> TestResult {
    for n in [Sys::ALL.len() as u64, 1000, u64::MAX] {
        expect_err!(raw(n, [0; 5]), Error::NoSys);
    }
    Ok(())
}

fn spawn_missing_file() -> TestResult {
    expect_err!(process::spawn("no/such/program", &[]), Error::NotFound);
    Ok(())
}

fn spawn_not_executable() -> TestResult {
    let files = ok!(fs::list());
    let Some(blob) = files.iter().find(|f| f.ends_with(".gb")) else {
        return Err("no .gb file in the ramdisk to try".into());
    };
    expect_err!(process::spawn(blob, &[]), Error::NotExecutable);
    // An ELF header whose program-header table lies past the end of the file (the test ramdisk
    // carries one): refused, and the kernel is still here to say so.
    if files.iter().any(|f| f == "bin/broken-elf") {
        expect_err!(process::spawn("bin/broken-elf", &[]), Error::NotExecutable);
    }
    Ok(())
}

fn exit_codes_through_wait() -> TestResult {
    for (arg, want) in [("0", 0), ("3", 3), ("42", 42), ("255", 255)] {
        let code = ok!(process::run("exitcode", &[arg]));
        check!(code == want, "exitcode {arg} gave {code}");
    }
    Ok(())
}

fn panic_exits_101() -> TestResult {
    let code = ok!(process::run("exitcode", &["panic"]));
    check!(code == 101, "a panicking program exited with {code}");
    Ok(())
}

fn wait_non_child() -> TestResult {
    expect_err!(sys::wait(sys::getpid()), Error::NoSuchProcess);
    expect_err!(sys::wait(0x7fff_fff0), Error::NoSuchProcess);
    // A child can be waited for once only.
    let pid = ok!(process::spawn_program("exitcode", &["5"]));
    check!(ok!(sys::wait(pid)) == 5, "wrong exit code");
    expect_err!(sys::wait(pid), Error::NoSuchProcess);
    Ok(())
}

fn graft_load_garbage() -> TestResult {
    match graft::load(b"this is not a graft blob at all") {
        Err(e) => check!(e.error() == Error::BadBlob, "expected BadBlob, got {}", e.error()),
        Ok(id) => return Err(format!("garbage loaded as graft {id}")),
    }
    expect_err!(graft::load(&[]).map_err(|e| e.error()), Error::BadBlob);
    // Far larger than any graft: refused before the kernel decodes it.
    let huge = alloc::vec![0x47u8; 1 << 20];
    expect_err!(graft::load(&huge).map_err(|e| e.error()), Error::BadBlob);
    Ok(())
}

/// Asking for more memory than the machine has fails cleanly, and the system goes on.
fn map_beyond_memory() -> TestResult {
    expect_err!(sys::map(1 << 31), Error::NoMemory);
    let p = ok!(sys::map(4096));
    // SAFETY: `p` is a fresh page of ours, not used after this.
    ok!(unsafe { sys::unmap(p, 4096) });
    Ok(())
}

fn graft_attach_errors() -> TestResult {
    expect_err!(graft::attach(0xffff_fff0, "sched.pick_next", 0), Error::NoSuchGraft);
    let (id, point) = some_graft()?;
    expect_err!(graft::attach(id, "no.such_point", 0), Error::NoSuchPoint);
    let other = ok!(graft::points()).into_iter().find(|p| *p != point);
    if let Some(other) = other {
        expect_err!(graft::attach(id, &other, 0), Error::WrongPoint);
    }
    expect_err!(graft::detach(id), Error::NotAttached);
    expect_err!(graft::detach(0xffff_fff0), Error::NoSuchGraft);
    expect_err!(graft::stats(0xffff_fff0), Error::NoSuchGraft);
    let stats = ok!(graft::stats(id));
    check!(stats.id == id && stats.attached == 0, "stats of a fresh graft: {stats:?}");
    check!(ok!(graft::list()).contains(&id), "graft_list lacks loaded graft {id}");
    Ok(())
}

fn points_and_files_listed() -> TestResult {
    let points = ok!(graft::points());
    check!(points.iter().any(|p| p == "sched.pick_next"), "points: {points:?}");
    let elf = ok!(fs::read_file(&some_file()?));
    check!(elf.starts_with(b"\x7fELF"), "exitcode does not read back as an ELF file");
    expect_err!(fs::read_file("no/such/file"), Error::NotFound);
    Ok(())
}

fn map_unmap_round_trip() -> TestResult {
    let len = 3 * 4096 + 100;
    let p = ok!(sys::map(len));
    check!(p as u64 >= sysabi::USER_START && (p as u64) < sysabi::USER_END, "map gave {p:?}");
    check!((p as u64).is_multiple_of(4096), "map gave an unaligned address {p:?}");
    // SAFETY: `map` returned `len` (rounded up to pages) read-write bytes for us alone.
    let mem = unsafe { core::slice::from_raw_parts_mut(p, 4 * 4096) };
    check!(mem.iter().all(|&b| b == 0), "mapped memory is not zeroed");
    for (i, b) in mem.iter_mut().enumerate() {
        *b = i as u8;
    }
    check!(mem.iter().enumerate().all(|(i, &b)| b == i as u8), "mapped memory lost writes");
    // The kernel can write into it.
    let file = some_file()?;
    check!(ok!(sys::file_read(&file, 0, &mut mem[4096..4100])) == 4, "short file read");
    check!(&mem[4096..4100] == b"\x7fELF", "file_read into mapped memory read {:?}", &mem[4096..4100]);
    // SAFETY: `mem` is not used after this.
    ok!(unsafe { sys::unmap(p, len) });
    expect_err!(raw(Sys::Write as u64, [1, p as u64, 1, 0, 0]), Error::BadAddress);
    expect_err!(raw(Sys::Map as u64, [4096, 1, 0, 0, 0]), Error::InvalidArgument);
    Ok(())
}

fn clock_and_sleep() -> TestResult {
    let t0 = sys::clock();
    ok!(sys::sleep(20));
    let t1 = sys::clock();
    check!(t1 >= t0 + 20_000_000, "slept 20 ms but the clock moved {} ns", t1.saturating_sub(t0));
    sys::yield_now();
    check!(sys::clock() >= t1, "the clock went backwards");
    Ok(())
}

fn futex_errors() -> TestResult {
    let word = AtomicU32::new(5);
    expect_err!(sys::futex_wait(&word, 4, 0), Error::WouldBlock);
    let t0 = sys::clock();
    expect_err!(sys::futex_wait(&word, 5, 10), Error::TimedOut);
    check!(sys::clock() >= t0 + 10_000_000, "futex time-out came early");
    check!(ok!(sys::futex_wake(&word, 1)) == 0, "woke a waiter that does not exist");
    Ok(())
}

fn threads_and_futex_wake() -> TestResult {
    // A thread sleeps on a futex until the main thread changes the word and wakes it.
    let word = Arc::new(AtomicU32::new(0));
    let w = word.clone();
    let waiter = ok!(thread::spawn(move || {
        while w.load(Ordering::Acquire) == 0 {
            let _ = sys::futex_wait(&w, 0, 2000);
        }
        sys::gettid() as i32
    }));
    ok!(sys::sleep(10));
    word.store(1, Ordering::Release);
    ok!(sys::futex_wake(&word, 1));
    let tid = waiter.tid();
    let code = waiter.join();
    check!(code as u32 as u64 == tid as u32 as u64, "thread reported tid {code}, spawn said {tid}");
    check!(tid != sys::gettid(), "the new thread has the main thread's tid");

    // Threads contend on a futex mutex.
    const THREADS: usize = 4;
    const ROUNDS: u64 = 2000;
    let counter = Arc::new(Mutex::new(0u64));
    let mut handles = Vec::new();
    for _ in 0..THREADS {
        let c = counter.clone();
        handles.push(ok!(thread::spawn(move || {
            for i in 0..ROUNDS {
                *c.lock() += 1;
                if i % 256 == 0 {
                    sys::yield_now();
                }
            }
            0
        })));
    }
    for h in handles {
        h.join();
    }
    let total = *counter.lock();
    check!(total == THREADS as u64 * ROUNDS, "counter is {total}");
    Ok(())
}

type Test = (&'static str, fn() -> TestResult);

const TESTS: &[Test] = &[
    ("write_bad_pointers", write_bad_pointers),
    ("write_bad_fd", write_bad_fd),
    ("console_descriptors", console_descriptors),
    ("read_bad_pointers", read_bad_pointers),
    ("graft_load_bad_pointers", graft_load_bad_pointers),
    ("file_read_bad_pointers", file_read_bad_pointers),
    ("unknown_syscall", unknown_syscall),
    ("spawn_missing_file", spawn_missing_file),
    ("spawn_not_executable", spawn_not_executable),
    ("exit_codes_through_wait", exit_codes_through_wait),
    ("panic_exits_101", panic_exits_101),
    ("wait_non_child", wait_non_child),
    ("graft_load_garbage", graft_load_garbage),
    ("graft_attach_errors", graft_attach_errors),
    ("points_and_files_listed", points_and_files_listed),
    ("map_unmap_round_trip", map_unmap_round_trip),
    ("map_beyond_memory", map_beyond_memory),
    ("clock_and_sleep", clock_and_sleep),
    ("futex_errors", futex_errors),
    ("threads_and_futex_wake", threads_and_futex_wake),
];

fn main(args: &[&str]) -> i32 {
    // `usertest NAME...` runs only the tests whose names contain one of the words.
    let filters = &args[1.min(args.len())..];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f)) {
            continue;
        }
        print!("test {name} ... ");
        match test() {
            Ok(()) => {
                println!("ok");
                passed += 1;
            }
            Err(why) => {
                println!("FAILED: {why}");
                failed += 1;
            }
        }
    }
    println!("usertest: {passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
ulib::entry!(main);
