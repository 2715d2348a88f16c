//! `hostile`: loads every hostile graft of the ramdisk (`grafts/hostile/*.gb`), attaches it
//! to the point it was written for, drives that point (scheduling, memory pressure, file
//! reads) until the graft has aborted, prints its statistics and detaches it, while counter
//! threads show that the system keeps running. Exits 0 only if every hostile graft was
//! rejected at load or aborted with an expected reason, and the counters kept moving.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sysabi::GraftStats;
use ulib::graft::{self, LoadError, StatsLine};
use ulib::{eprintln, fs, println, sys, thread};

const DIR: &str = "grafts/hostile/";

/// What each hostile graft must come to, by file name (the sources are in
/// `sample-grafts/hostile/`): either rejected at load, or aborted with one of the reasons.
/// Files not listed here must be rejected or abort with any reason.
const EXPECTED: &[(&str, Expect)] = &[
    ("endless_loop", Expect::Abort(&["OutOfFuel", "Watchdog"])),
    ("out_of_bounds", Expect::Abort(&["OutOfBounds"])),
    ("forbidden_call", Expect::Rejected),
    ("deep_recursion", Expect::Abort(&["CallDepthExceeded", "StackOverflow"])),
    ("bad_return", Expect::Abort(&["InvalidResult"])),
    // It waits forever holding its lock: fuel ends it (or the watchdog, or a contender's
    // time-out dooms it).
    ("holds_lock", Expect::Abort(&["OutOfFuel", "Watchdog", "LockTimeout", "Deadlock"])),
    ("unbounded_alloc", Expect::Abort(&["ResourceLimit"])),
    ("ra_bad_block", Expect::Abort(&["InvalidResult"])),
    // Its fs.prefetch reads are dropped with the transaction: fsgrafts checks none was issued.
    ("ra_prefetch_then_abort", Expect::Abort(&["Explicit"])),
    ("filter_endless", Expect::Abort(&["OutOfFuel", "Watchdog"])),
    ("filter_out_of_bounds", Expect::Abort(&["OutOfBounds"])),
];

/// A file of the disk's file system the file points are driven with (made by run.sh), and a
/// scratch file the write path writes.
const DISK_FILE: &str = "/data/ra1.bin";
const SCRATCH_FILE: &str = "/hostile.tmp";

#[derive(Clone, Copy)]
enum Expect {
    Rejected,
    Abort(&'static [&'static str]),
}

/// How long one graft may take to abort before it counts as a failure.
const PATIENCE_NS: u64 = 5_000_000_000;
/// Memory touched at most to make the kernel evict pages (for `vm.pick_victim`).
const PRESSURE_MAX: usize = 64 << 20;
const PRESSURE_STEP: usize = 4 << 20;

static STOP: AtomicU32 = AtomicU32::new(0);

/// A counter thread: proves that user threads still run while grafts misbehave. It yields
/// often so that the scheduler has runnable threads of this group to choose from.
fn counter(count: Arc<AtomicU64>) -> i32 {
    while STOP.load(Ordering::Relaxed) == 0 {
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
        count.fetch_add(1, Ordering::Relaxed);
        if count.load(Ordering::Relaxed).is_multiple_of(64) {
            sys::yield_now();
        }
    }
    0
}

/// Memory this process touches to make the kernel choose victims among its pages.
struct Pressure {
    chunks: Vec<(*mut u8, usize)>,
}

impl Pressure {
    /// Maps one more step (up to the maximum) and writes every page of everything mapped.
    fn push(&mut self) {
        let mapped: usize = self.chunks.iter().map(|c| c.1).sum();
        if mapped < PRESSURE_MAX
            && let Ok(p) = sys::map(PRESSURE_STEP) {
                self.chunks.push((p, PRESSURE_STEP));
            }
        for &(p, len) in &self.chunks {
            for off in (0..len).step_by(4096) {
                // SAFETY: `p` is a live mapping of `len` bytes that only this struct uses.
                unsafe { p.add(off).write_volatile(off as u8 | 1) };
            }
        }
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        for &(p, len) in &self.chunks {
            // SAFETY: nothing else refers to these mappings; the struct is going away.
            let _ = unsafe { sys::unmap(p, len) };
        }
    }
}

/// Makes the kernel consult `point` for this process for a while, on the kernel path its row
/// in the ABI table names.
fn drive(point: &str, pressure: &mut Pressure, some_file: &str) {
    use graft_ir::abi::Reach;
    // A point this program does not know (a blob for a newer kernel): let the scheduler run.
    let reach = graft_ir::abi::graft_point(point).map_or(Reach::Scheduler, |p| p.reached_from);
    match reach {
        Reach::PageReplacement => pressure.push(),
        // Reads of a disk file at scattered offsets: each read reaches fs.read_filter, then
        // fs.compute_ra.
        Reach::FileRead => {
            let _ = some_file;
            if let Ok(mut f) = ulib::file::File::open(DISK_FILE, sysabi::open::READ) {
                let mut buf = [0u8; 1024];
                for k in 0..8u64 {
                    let _ = f.seek(ulib::file::SeekFrom::Start((k * 37 % 64) * 1024));
                    let _ = f.read(&mut buf);
                }
            }
            let _ = sys::sleep(5);
        }
        // Writes of a scratch file: each reaches fs.write_filter (and fails while it aborts).
        Reach::FileWrite => {
            if let Ok(mut f) = ulib::file::File::open(SCRATCH_FILE, sysabi::open::WRITE | sysabi::open::CREATE) {
                for _ in 0..4 {
                    let _ = f.write(b"hostile write filter test data!\n");
                }
            }
            let _ = sys::sleep(5);
        }
        Reach::Scheduler => {
            for _ in 0..5 {
                sys::yield_now();
            }
            let _ = sys::sleep(10);
        }
    }
}

fn expected_for(stem: &str) -> Option<Expect> {
    EXPECTED.iter().find(|(n, _)| *n == stem).map(|(_, e)| *e)
}

fn aborted_as(stats: &GraftStats, reasons: &[&str]) -> bool {
    graft::aborts_by_reason(stats).iter().any(|(name, _)| reasons.contains(name))
}

/// Tests one hostile graft; whether it behaved as expected.
fn try_graft(path: &str, points: &[String], some_file: &str, progress: &AtomicU64) -> bool {
    let stem = path.trim_start_matches(DIR).trim_end_matches(".gb");
    let expect = expected_for(stem);
    println!("hostile: {stem}");
    let blob = match fs::read_file(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hostile:   cannot read {path}: {e}");
            return false;
        }
    };
    let id = match graft::load(&blob) {
        Err(LoadError::Rejected { log }) => {
            println!("hostile:   rejected at load; the verifier says:");
            for line in log.lines() {
                println!("hostile:   | {line}");
            }
            let ok = matches!(expect, Some(Expect::Rejected) | None);
            if !ok {
                eprintln!("hostile:   FAILED: expected it to load and abort");
            }
            return ok;
        }
        Err(LoadError::Sys(e)) => {
            eprintln!("hostile:   FAILED: graft_load: {e}");
            return false;
        }
        Ok(id) => id,
    };
    if let Some(Expect::Rejected) = expect {
        eprintln!("hostile:   FAILED: graft {id} loaded, but the verifier should have rejected it");
        return false;
    }
    let point = graft::blob_point(&blob).unwrap_or_else(|| String::from("sched.pick_next"));
    if let Err(e) = graft::attach(id, &point, 0) {
        eprintln!("hostile:   FAILED: graft_attach to {point}: {e}");
        return false;
    }
    println!("hostile:   graft {id} attached to {point}");

    let reasons: &[&str] = match expect {
        Some(Expect::Abort(r)) => r,
        _ => &[],
    };
    let before = progress.load(Ordering::Relaxed);
    let start = sys::clock();
    let mut pressure = Pressure { chunks: Vec::new() };
    let mut stats = graft::stats(id).unwrap_or_default();
    loop {
        drive(&point, &mut pressure, some_file);
        match graft::stats(id) {
            Ok(s) => stats = s,
            Err(e) => {
                eprintln!("hostile:   graft_stats: {e}");
                break;
            }
        }
        let done = if reasons.is_empty() { graft::total_aborts(&stats) > 0 } else { aborted_as(&stats, reasons) };
        // The kernel detaches a graft that keeps aborting: then nothing more will happen.
        if done || stats.attached == 0 || sys::clock().saturating_sub(start) > PATIENCE_NS {
            break;
        }
    }
    drop(pressure);
    println!("hostile:   {}", StatsLine { stats: &stats, points });
    match graft::detach(id) {
        Ok(()) => println!("hostile:   detached"),
        Err(sysabi::Error::NotAttached) => println!("hostile:   already detached by the kernel"),
        Err(e) => eprintln!("hostile:   graft_detach: {e}"),
    }
    let moved = progress.load(Ordering::Relaxed) - before;
    println!("hostile:   counter threads advanced {moved} meanwhile");
    let aborted = if reasons.is_empty() { graft::total_aborts(&stats) > 0 } else { aborted_as(&stats, reasons) };
    if !aborted {
        if stats.calls == 0 {
            eprintln!("hostile:   FAILED: the kernel never called the graft at {point}");
        } else {
            eprintln!("hostile:   FAILED: no abort with an expected reason ({})", reasons.join(", "));
        }
    }
    if moved == 0 {
        eprintln!("hostile:   FAILED: the counter threads made no progress");
    }
    aborted && moved > 0
}

fn main(_args: &[&str]) -> i32 {
    let files = match fs::list() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hostile: file_list: {e}");
            return 1;
        }
    };
    let mut blobs: Vec<&String> = files.iter().filter(|f| f.starts_with(DIR) && f.ends_with(".gb")).collect();
    blobs.sort();
    if blobs.is_empty() {
        eprintln!("hostile: no {DIR}*.gb in the ramdisk");
        return 1;
    }
    for (name, _) in EXPECTED {
        if !blobs.iter().any(|b| b.trim_start_matches(DIR).trim_end_matches(".gb") == *name) {
            println!("hostile: note: {DIR}{name}.gb is not in the ramdisk");
        }
    }
    let some_file = files.iter().find(|f| !f.ends_with(".gb")).cloned().unwrap_or_default();
    let points = graft::points().unwrap_or_default();

    let progress = Arc::new(AtomicU64::new(0));
    let mut counters = Vec::new();
    for _ in 0..2 {
        let p = progress.clone();
        match thread::spawn(move || counter(p)) {
            Ok(t) => counters.push(t),
            Err(e) => eprintln!("hostile: cannot start a counter thread: {e}"),
        }
    }
    if counters.is_empty() {
        return 1;
    }

    let mut failed = 0;
    for path in &blobs {
        if !try_graft(path, &points, &some_file, &progress) {
            failed += 1;
        }
    }

    STOP.store(1, Ordering::Release);
    for c in counters {
        c.join();
    }
    println!(
        "hostile: {} of {} hostile grafts contained; counters reached {}; {}",
        blobs.len() - failed,
        blobs.len(),
        progress.load(Ordering::Relaxed),
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 { 0 } else { 1 }
}
ulib::entry!(main);
