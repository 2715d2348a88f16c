//! `robust`: no user can take the kernel down. End-to-end tests of the kernel's resource
//! accounting, each printing `test NAME ... ok|FAILED`:
//!
//! - `locks`: 100 processes in turn take every graft lock number; a 101st gets all of them,
//!   also while another live process holds all of its own.
//! - `reclaim`: 1,000 short processes each load a graft that calls every callable the kernel
//!   implements (keeping graft memory and counters past the call), attach it, run it and exit
//!   without cleaning up; every kernel counter returns to its baseline.
//! - `failalloc`: fault injection swept over a scenario (load, attach, calls, spawn, exit):
//!   the Nth kernel heap allocation on a system-call path fails, for every N until the
//!   scenario makes fewer; each step answers or names its error, and the counters return to
//!   their baseline.
//! - `stress`: a chain of processes loads grafts with the largest data region until the kernel
//!   refuses (`NoMemory`); the kernel keeps running and free memory returns to within 1 %.
//! - `fuzz`: `sysfuzz` with 100,000 random system calls; the counters return to baseline.
//!
//! `robust NAME...` runs only those; `robust fuzz N` runs N fuzzer calls. The children are this
//! program again with a `child-*` first argument.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sysabi::{Error, KStat};
use ulib::robust::{self, blob, differences, kstat};
use ulib::{args, graft, print, println, process, sys};

type TestResult = Result<String, String>;

const POINT: &str = "sched.pick_next";
/// Largest data region a graft may ask for (graft-ir's limit).
const BIG_DATA: u32 = graft_ir::limits::MAX_DATA_SIZE;

fn stat() -> Result<KStat, String> {
    kstat().map_err(|e| format!("kstat: {e:?}"))
}

/// Waits until the counters are back at `base` (an exited process's last pieces go when the
/// scheduler reaps its thread): `Err` with the differences after a while.
fn settle(base: &KStat) -> Result<KStat, String> {
    let mut now = stat()?;
    for _ in 0..200 {
        if differences(base, &now).is_empty() {
            return Ok(now);
        }
        let _ = sys::sleep(5);
        now = stat()?;
    }
    Err(format!("counters not back at their baseline: {}", differences(base, &now)))
}

/// The counters once they stop changing (a process that just exited is reaped when the
/// scheduler next runs): the baseline of a test.
fn quiet() -> Result<KStat, String> {
    let mut last = stat()?;
    for _ in 0..100 {
        let _ = sys::sleep(10);
        let now = stat()?;
        if differences(&last, &now).is_empty() {
            return Ok(now);
        }
        last = now;
    }
    Err(format!("the counters keep changing: {:?}", last))
}

fn run_child(args: &[&str]) -> Result<i32, String> {
    process::run("robust", args).map_err(|e| format!("spawn robust {args:?}: {e:?}"))
}

/// Loads and attaches graft IR `text` for this process; the graft id.
fn load_attach(text: &str) -> Result<u32, Error> {
    let b = blob(text).map_err(|_| Error::BadBlob)?;
    let id = graft::load(&b).map_err(|e| e.error())?;
    sys::graft_attach(id, POINT, 0)?;
    Ok(id)
}

/// Child: takes every lock number in a graft call; exits 0 if the calls committed.
fn child_locks() -> i32 {
    let Ok(id) = load_attach(&robust::every_lock_graft()) else { return 10 };
    robust::drive_scheduler();
    match sys::graft_stats(id) {
        Ok(s) if s.commits > 0 && s.calls == s.commits => 0,
        Ok(s) => {
            println!("robust: child {}: calls {} commits {}", sys::getpid(), s.calls, s.commits);
            11
        }
        Err(_) => 12,
    }
}

fn test_locks() -> TestResult {
    let base = stat()?;
    for i in 0..100 {
        let code = run_child(&["child-locks"])?;
        if code != 0 {
            return Err(format!("process {i} of 100 could not use every lock number (exit {code})"));
        }
    }
    // The 101st, while this process (alive) holds every lock number of its own too.
    let id = load_attach(&robust::every_lock_graft()).map_err(|e| format!("load: {e:?}"))?;
    robust::drive_scheduler();
    let code = run_child(&["child-locks"])?;
    let _ = sys::graft_detach(id);
    if code != 0 {
        return Err(format!("the 101st process did not get every lock number (exit {code})"));
    }
    let mine = sys::graft_stats(id).map_err(|e| format!("{e:?}"))?;
    if mine.commits == 0 || mine.calls != mine.commits {
        return Err(format!("this process's own graft: calls {} commits {}", mine.calls, mine.commits));
    }
    let mut ids = [0u32; 64];
    let n = sys::graft_list(&mut ids).map_err(|e| format!("{e:?}"))?;
    for &g in &ids[..n] {
        let _ = sys::graft_detach(g);
    }
    Ok(format!("101 processes used all {} lock numbers; {} kernel locks held before and after", graft_ir::callables::LOCKS_PER_PROCESS, base.locks_held))
}

/// Child: uses every callable the kernel implements, keeps its graft memory and counters, and
/// exits without detaching or unloading.
fn child_every() -> i32 {
    let Ok(id) = load_attach(&robust::every_callable_graft(4096)) else { return 10 };
    robust::drive_scheduler();
    match sys::graft_stats(id) {
        Ok(s) if s.commits > 0 => 0,
        _ => 11,
    }
}

fn test_reclaim(count: usize) -> TestResult {
    // One run first: lazily made kernel structures (compile stacks, the callable registry)
    // belong to the baseline.
    run_child(&["child-every"])?;
    let base = quiet()?;
    let mut worst = 0u64;
    for i in 0..count {
        let code = run_child(&["child-every"])?;
        if code != 0 {
            return Err(format!("process {i}: exit {code}"));
        }
        let now = stat()?;
        worst = worst.max(now.heap_requested.saturating_sub(base.heap_requested));
    }
    let now = settle(&base)?;
    Ok(format!(
        "{count} processes used every callable; heap {} bytes, {} free frames, {} grafts, {} graft locks held as before (largest heap excess between processes {worst} bytes)",
        now.heap_requested, now.frames_free, now.grafts, now.locks_held
    ))
}

/// The fault-injection scenario (a child): load, attach, calls, spawn, exit. Exits 0 if every
/// step succeeded or failed with a named error.
fn child_scenario() -> i32 {
    let mut unnamed = 0;
    let mut note = |r: Result<u64, Error>| {
        if let Err(e) = r
            && Error::from_code(e.code()) != Some(e)
        {
            unnamed += 1;
        }
    };
    let b = match blob(&robust::every_callable_graft(64)) {
        Ok(b) => b,
        Err(_) => return 20,
    };
    let mut log = [0u8; 256];
    let id = sys::graft_load(&b, &mut log);
    note(id.map(u64::from));
    if let Ok(id) = id {
        note(sys::graft_attach(id, POINT, 0).map(|_| 0));
        robust::drive_scheduler();
        note(sys::graft_stats(id).map(|s| s.calls));
        let mut ids = [0u32; 8];
        note(sys::graft_list(&mut ids).map(|n| n as u64));
        let mut names = [0u8; 256];
        note(sys::graft_points(&mut names).map(|n| n as u64));
        note(sys::graft_detach(id).map(|_| 0));
    }
    let mut files = [0u8; 4096];
    note(sys::file_list(&mut files).map(|n| n as u64));
    // A bad blob (and its log) and a spawn.
    note(sys::graft_load(&[1, 2, 3], &mut log).map(u64::from));
    match process::spawn_program("exitcode", &["3"]) {
        Ok(pid) => note(sys::wait(pid).map(|c| c as u64)),
        Err(e) => note(Err(e)),
    }
    match sys::map(8192) {
        // SAFETY: a fresh mapping nothing else uses.
        Ok(p) => note(unsafe { sys::unmap(p, 8192) }.map(|_| 0)),
        Err(e) => note(Err(e)),
    }
    note(kstat().map(|_| 0));
    if unnamed > 0 { 21 } else { 0 }
}

fn test_failalloc() -> TestResult {
    // Warm up, then the baseline.
    run_child(&["child-scenario"])?;
    let base = quiet()?;
    let mut n = 1u64;
    let mut errors = 0;
    loop {
        robust::fail_alloc(n).map_err(|e| format!("fail_alloc: {e:?}"))?;
        let r = process::run("robust", &["child-scenario"]);
        let seen = robust::fail_alloc(0).map_err(|e| format!("fail_alloc: {e:?}"))?;
        match r {
            Ok(0) => {}
            Ok(code) => return Err(format!("allocation {n}: the scenario exited {code}")),
            // The spawn of the scenario itself failed: a named error.
            Err(e) if Error::from_code(e.code()) == Some(e) => errors += 1,
            Err(e) => return Err(format!("allocation {n}: spawn answered {e:?}")),
        }
        settle(&base).map_err(|e| format!("after failing allocation {n}: {e}"))?;
        if seen < n {
            // The scenario made fewer allocations than n: every one has been failed once.
            break;
        }
        n += 1;
        if n > 5000 {
            return Err(String::from("more than 5000 allocations in the scenario"));
        }
    }
    let k = stat()?;
    Ok(format!(
        "{} allocations failed one at a time ({} injected in all, {errors} spawns refused); counters back at baseline each time",
        n - 1,
        k.failalloc_injected
    ))
}

/// Child of the stress chain: loads big grafts until refused. If its own budget stopped it
/// (the system still had room), starts the next link and waits for it. Exits 0 if some link
/// of the chain from here was refused by the system (`NoMemory` before its budget ran out),
/// 1 if not, 2 on an unexpected error; prints what it loaded.
fn child_stress(depth: u32) -> i32 {
    let Ok(b) = blob(&robust::every_callable_graft(BIG_DATA)) else { return 2 };
    let mut log = [0u8; 512];
    let mut loaded = 0u32;
    let err = loop {
        match sys::graft_load(&b, &mut log) {
            Ok(_) => loaded += 1,
            Err(e) => break e,
        }
    };
    let before = kstat().map(|k| k.free_bytes / 1024).unwrap_or(0);
    let text = graft::log_text(&log);
    let system = text.contains("the kernel keeps");
    println!("robust: stress link {depth}: {loaded} grafts of {} KiB loaded, then {err:?} ({}); {before} KiB free", BIG_DATA / 1024, text.trim());
    if !matches!(err, Error::NoMemory | Error::TooMany) {
        return 2;
    }
    if system {
        return 0;
    }
    if depth >= 100 {
        return 1;
    }
    let d = format!("{}", depth + 1);
    match process::run("robust", &["child-stress", &d]) {
        Ok(code) => code,
        // The system refused the next process: also a refusal, named.
        Err(Error::NoMemory | Error::TooMany) => 0,
        Err(_) => 2,
    }
}

fn test_stress() -> TestResult {
    let base = quiet()?;
    let code = run_child(&["child-stress", "1"])?;
    if code != 0 {
        return Err(format!("the chain ended with {code} (1: never refused by the system; 2: an unexpected error)"));
    }
    // Still running: a small graft loads and the counters come back.
    let id = load_attach(&robust::every_callable_graft(64)).map_err(|e| format!("load after the stress: {e:?}"))?;
    let _ = sys::graft_detach(id);
    let mut ids = [0u32; 64];
    let n = sys::graft_list(&mut ids).map_err(|e| format!("{e:?}"))?;
    let mut now = stat()?;
    for _ in 0..200 {
        if now.free_bytes.abs_diff(base.free_bytes) * 100 <= base.free_bytes {
            break;
        }
        let _ = sys::sleep(5);
        now = stat()?;
    }
    let _ = n;
    let diff = now.free_bytes.abs_diff(base.free_bytes);
    if diff * 100 > base.free_bytes {
        return Err(format!("free memory {} KiB, was {} KiB (more than 1 % apart)", now.free_bytes / 1024, base.free_bytes / 1024));
    }
    Ok(format!("refused with NoMemory; free memory {} KiB after, {} KiB before ({:.3} %)", now.free_bytes / 1024, base.free_bytes / 1024, diff as f64 * 100.0 / base.free_bytes as f64))
}

fn test_fuzz(calls: u64) -> TestResult {
    // A short run first: caches the calls fill (file-system lookups) belong to the baseline.
    process::run("sysfuzz", &["2000", "7"]).map_err(|e| format!("spawn sysfuzz: {e:?}"))?;
    let base = quiet()?;
    let n = format!("{calls}");
    let code = process::run("sysfuzz", &[&n]).map_err(|e| format!("spawn sysfuzz: {e:?}"))?;
    if code != 0 {
        return Err(format!("sysfuzz exited {code}"));
    }
    let now = settle(&base)?;
    Ok(format!("{calls} random system calls; counters back at baseline (heap {} bytes)", now.heap_requested))
}

fn main(argv: &[&str]) -> i32 {
    match argv.get(1).copied() {
        Some("child-locks") => return child_locks(),
        Some("child-every") => return child_every(),
        Some("child-scenario") => return child_scenario(),
        Some("child-stress") => return child_stress(argv.get(2).and_then(|d| args::parse_u64(d)).unwrap_or(1) as u32),
        _ => {}
    }
    let wanted: Vec<&str> = argv.iter().skip(1).copied().collect();
    let fuzz_calls = match wanted.as_slice() {
        ["fuzz", n] => args::parse_u64(n).unwrap_or(100_000),
        _ => 100_000,
    };
    let all = wanted.is_empty();
    let tests: [(&str, &dyn Fn() -> TestResult); 5] = [
        ("locks", &test_locks),
        ("reclaim", &|| test_reclaim(1000)),
        ("failalloc", &test_failalloc),
        ("stress", &test_stress),
        ("fuzz", &|| test_fuzz(fuzz_calls)),
    ];
    let mut failed = 0;
    for (name, f) in tests {
        if !all && !wanted.contains(&name) {
            continue;
        }
        print!("test robust::{name} ... ");
        let t0 = sys::clock();
        match f() {
            Ok(what) => println!("ok ({what}; {} ms)", (sys::clock() - t0) / 1_000_000),
            Err(why) => {
                println!("FAILED: {why}");
                failed += 1;
            }
        }
    }
    i32::from(failed > 0)
}
ulib::entry!(main);
