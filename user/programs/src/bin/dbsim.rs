//! `dbsim`: a database-like workload under a resident-set limit, for the virtual memory's demo
//! and tests.
//!
//! - `dbsim demo`: a buffer pool the program revisits and a table it scans, under
//!   a resident limit smaller than both together; once with the kernel's clock, once with
//!   `keep_buffer_cache.gb` attached to `vm.pick_victim`. Prints page faults, swap-ins of pool
//!   pages, pages written to swap and run time for each; exits 0 only if the data stayed intact
//!   and, with the graft, pool swap-ins were at most 10 % of the default's.
//! - `dbsim verify`: writes a pattern over five times its resident limit, reads it back, writes
//!   another and reads that back (every page goes to swap and returns); exits 0 if every word
//!   came back and no swap slot is left once the memory is unmapped.
//! - `dbsim test` (also `dbsim`, as init runs it): `verify`, `hostile` with the two hostile
//!   `vm.pick_victim` grafts of the ramdisk, then `demo`.
//! - `dbsim hold PAGES MS [read]`: for the kernel's tests, keeps PAGES marked pages resident for
//!   MS ms (written, or only read: clean).
//! - `dbsim faultbench [graft]`: for the kernel's benchmark, faults on clean pages only.
//! - `dbsim hostile GRAFT...`: attaches each `vm.pick_victim` graft (e.g. one that returns a
//!   bad index, one that never returns) and runs the workload under it: every call must abort,
//!   the data must stay intact, and nothing may be left behind (swap slots, resident pages).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use sysabi::VmStats;
use ulib::graft::{self, StatsLine};
use ulib::{eprintln, println, sys, vm};

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

/// The demo's shape: the pool and the table together are over twice the limit.
const POOL_PAGES: usize = 64;
const TABLE_PAGES: usize = 192;
const LIMIT: u64 = 96;
/// Table scans, and pool pages visited after each table page.
const SCANS: usize = 3;
const POOL_VISITS: usize = 1;
const GRAFT: &str = "grafts/keep_buffer_cache.gb";
/// Pool swap-ins with the graft, at most this percentage of the default's.
const TARGET_PERCENT: u64 = 10;

/// A mapping the program owns, unmapped on drop.
struct Region {
    base: *mut u64,
    pages: usize,
}

impl Region {
    fn new(pages: usize) -> Result<Region, sysabi::Error> {
        let base = sys::map(pages * PAGE)?.cast::<u64>();
        Ok(Region { base, pages })
    }

    fn word(&self, page: usize, w: usize) -> *mut u64 {
        debug_assert!(page < self.pages && w < WORDS);
        // SAFETY: inside the mapping (checked by the callers' bounds).
        unsafe { self.base.add(page * WORDS + w) }
    }

    fn read(&self, page: usize, w: usize) -> u64 {
        // SAFETY: a word of our own live mapping.
        unsafe { self.word(page, w).read_volatile() }
    }

    fn write(&self, page: usize, w: usize, v: u64) {
        // SAFETY: a word of our own live mapping.
        unsafe { self.word(page, w).write_volatile(v) }
    }

    /// Fills page `page` with `seed`'s pattern.
    fn fill(&self, page: usize, seed: u64) {
        for w in 0..WORDS {
            self.write(page, w, pattern(seed, page, w));
        }
    }

    /// Words of page `page` that differ from `seed`'s pattern.
    fn check(&self, page: usize, seed: u64) -> usize {
        (0..WORDS).filter(|&w| self.read(page, w) != pattern(seed, page, w)).count()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: nothing refers to the mapping any more.
        let _ = unsafe { sys::unmap(self.base.cast(), self.pages * PAGE) };
    }
}

fn pattern(seed: u64, page: usize, w: usize) -> u64 {
    let x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((page as u64) << 20) ^ w as u64;
    x ^ (x >> 29)
}

/// What one run of the workload measured (counter deltas over the query phase).
#[derive(Default)]
struct Run {
    faults: u64,
    pool_swap_ins: u64,
    swap_ins: u64,
    swap_outs: u64,
    graft_choices: u64,
    graft_aborts: u64,
    ms: u64,
    bad_words: usize,
}

fn delta(a: &VmStats, b: &VmStats, ms: u64, bad_words: usize) -> Run {
    Run {
        faults: b.faults - a.faults,
        pool_swap_ins: b.marked_swap_ins - a.marked_swap_ins,
        swap_ins: b.swap_ins - a.swap_ins,
        swap_outs: b.swap_outs - a.swap_outs,
        graft_choices: b.graft_choices - a.graft_choices,
        graft_aborts: b.graft_aborts - a.graft_aborts,
        ms,
        bad_words,
    }
}

/// Loads the table, warms the pool, then scans the table `scans` times, visiting pool pages
/// after each table page (a join against a cached index: the pool is revisited, the table is
/// read once per scan). Every page read is checked against what was written.
fn workload(pool_pages: usize, table_pages: usize, scans: usize) -> Result<Run, sysabi::Error> {
    let pool = Region::new(pool_pages)?;
    let table = Region::new(table_pages)?;
    vm::mark(pool.base.cast(), pool_pages * PAGE, true)?;
    for p in 0..table_pages {
        table.fill(p, 1);
    }
    for p in 0..pool_pages {
        pool.fill(p, 2);
        pool.write(p, WORDS - 1, 0);
    }
    let before = vm::stats()?;
    let start = sys::clock();
    let mut bad = 0;
    let mut cursor = 0;
    // Each pool page carries a visit count in its last word (the pool is written, like a
    // buffer pool whose pages are updated).
    let mut visits: Vec<u64> = alloc::vec![0; pool_pages];
    for _ in 0..scans {
        for p in 0..table_pages {
            bad += table.check(p, 1).min(1);
            for _ in 0..POOL_VISITS {
                let q = cursor % pool_pages;
                cursor += 1;
                if pool.read(q, 0) != pattern(2, q, 0) || pool.read(q, WORDS - 1) != visits[q] {
                    bad += 1;
                }
                visits[q] += 1;
                pool.write(q, WORDS - 1, visits[q]);
            }
        }
    }
    let ms = (sys::clock() - start) / 1_000_000;
    let after = vm::stats()?;
    Ok(delta(&before, &after, ms, bad))
}

fn print_run(label: &str, r: &Run) {
    println!(
        "dbsim: {label:<8} faults={} pool_swap_ins={} swap_ins={} swap_outs={} graft_choices={} graft_aborts={} time={} ms{}",
        r.faults,
        r.pool_swap_ins,
        r.swap_ins,
        r.swap_outs,
        r.graft_choices,
        r.graft_aborts,
        r.ms,
        if r.bad_words == 0 { "" } else { " DATA CORRUPTED" }
    );
}

/// Swap slots in use in the system but not by this process (whose heap and stack pages may
/// hold some), and this process's resident pages: what must come back once the workload's
/// memory is unmapped (no other process pages meanwhile).
fn baseline() -> (u64, u64) {
    vm::stats().map_or((u64::MAX, u64::MAX), |s| (s.system_swap_slots - s.swap_slots, s.resident))
}

fn demo() -> i32 {
    if let Err(e) = vm::set_limit(LIMIT) {
        eprintln!("dbsim: vm_limit({LIMIT}): {e}");
        return 1;
    }
    let (slots0, _) = baseline();
    println!(
        "dbsim: pool {POOL_PAGES} pages (marked), table {TABLE_PAGES} pages, resident limit {LIMIT} pages, {SCANS} scans, {POOL_VISITS} pool visits per table page; swap disk (vdb) throttled by QEMU to 1000 requests/s (run.sh)"
    );
    let default = match workload(POOL_PAGES, TABLE_PAGES, SCANS) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbsim: default run: {e}");
            return 1;
        }
    };
    print_run("default", &default);
    let loaded = match graft::load_file(GRAFT) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dbsim: loading {GRAFT}: {e:?}");
            return 1;
        }
    };
    if let Err(e) = graft::attach(loaded.id, "vm.pick_victim", 0) {
        eprintln!("dbsim: graft_attach: {e}");
        return 1;
    }
    let grafted = match workload(POOL_PAGES, TABLE_PAGES, SCANS) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbsim: grafted run: {e}");
            return 1;
        }
    };
    print_run("grafted", &grafted);
    let points: Vec<String> = graft::points().unwrap_or_default();
    if let Ok(s) = graft::stats(loaded.id) {
        println!("dbsim: {}", StatsLine { stats: &s, points: &points });
    }
    let _ = graft::detach(loaded.id);
    let (slots, _) = baseline();
    let leaked = slots.wrapping_sub(slots0);
    let percent = grafted.pool_swap_ins * 100 / default.pool_swap_ins.max(1);
    let met = default.pool_swap_ins > 0 && grafted.pool_swap_ins * 100 <= default.pool_swap_ins * TARGET_PERCENT;
    println!(
        "dbsim: pool swap-ins with the graft: {} of the default's {} ({percent}%, target <= {TARGET_PERCENT}%); pages written to swap {} vs {}; time {} ms vs {} ms",
        grafted.pool_swap_ins, default.pool_swap_ins, grafted.swap_outs, default.swap_outs, grafted.ms, default.ms
    );
    let intact = default.bad_words == 0 && grafted.bad_words == 0;
    let ok = met && intact && leaked == 0 && grafted.graft_choices > 0;
    if !intact {
        eprintln!("dbsim: FAILED: data came back wrong");
    }
    if leaked != 0 {
        eprintln!("dbsim: FAILED: {leaked} swap slots still held after unmapping everything");
    }
    if !met {
        eprintln!("dbsim: FAILED: target missed");
    }
    println!("dbsim: demo {}", if ok { "ok" } else { "FAILED" });
    i32::from(!ok)
}

/// Writes and reads back patterns over five times the limit.
fn verify() -> i32 {
    const LIMIT: u64 = 32;
    const PAGES: usize = 160;
    if let Err(e) = vm::set_limit(LIMIT) {
        eprintln!("dbsim: vm_limit: {e}");
        return 1;
    }
    let (slots0, _) = baseline();
    let before = vm::stats().unwrap_or_default();
    let mut bad = 0;
    {
        let r = match Region::new(PAGES) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dbsim: map: {e}");
                return 1;
            }
        };
        for round in 0..2u64 {
            for p in 0..PAGES {
                r.fill(p, 10 + round);
            }
            for p in 0..PAGES {
                bad += r.check(p, 10 + round);
            }
        }
    }
    let after = vm::stats().unwrap_or_default();
    let (slots1, _) = baseline();
    println!(
        "dbsim: verify {PAGES} pages under a limit of {LIMIT}: {} faults, {} swap-ins, {} swap-outs, {bad} bad words, swap slots {slots0} -> {slots1}",
        after.faults - before.faults,
        after.swap_ins - before.swap_ins,
        after.swap_outs - before.swap_outs
    );
    let ok = bad == 0 && after.swap_ins > before.swap_ins && after.swap_outs > before.swap_outs && slots1 == slots0;
    println!("dbsim: verify {}", if ok { "ok" } else { "FAILED" });
    i32::from(!ok)
}

/// Runs the workload under each hostile graft: aborts contained, data intact, nothing left.
fn hostile(paths: &[&str]) -> i32 {
    if vm::set_limit(LIMIT).is_err() {
        return 1;
    }
    let points: Vec<String> = graft::points().unwrap_or_default();
    let mut failed = 0;
    for path in paths {
        let loaded = match graft::load_file(path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dbsim: loading {path}: {e:?}");
                failed += 1;
                continue;
            }
        };
        if let Err(e) = graft::attach(loaded.id, "vm.pick_victim", 0) {
            eprintln!("dbsim: attaching {path}: {e}");
            failed += 1;
            continue;
        }
        let (slots0, resident0) = baseline();
        let run = workload(POOL_PAGES / 2, TABLE_PAGES / 2, 1);
        let (slots1, resident1) = baseline();
        let stats = graft::stats(loaded.id).unwrap_or_default();
        println!("dbsim: {path}: {}", StatsLine { stats: &stats, points: &points });
        let _ = graft::detach(loaded.id);
        let ok = match &run {
            Ok(r) => {
                print_run("hostile", r);
                r.bad_words == 0 && stats.calls > 0 && stats.commits == 0 && slots1 == slots0 && resident1 <= resident0 + 4
            }
            Err(e) => {
                eprintln!("dbsim: workload: {e}");
                false
            }
        };
        println!(
            "dbsim: {path}: contained, swap slots {slots0} -> {slots1}, resident {resident0} -> {resident1}: {}",
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    i32::from(failed != 0)
}

/// For the kernel's tests: maps and marks `pages` pages, writes them, sleeps `ms` while the
/// kernel looks at their state, then checks them; exits 0 if they came back intact.
fn hold(pages: usize, ms: u64, read_only: bool) -> i32 {
    let Ok(r) = Region::new(pages) else { return 2 };
    if vm::mark(r.base.cast(), pages * PAGE, true).is_err() {
        return 2;
    }
    if read_only {
        // Clean pages: the kernel may drop them under memory pressure and zero-fill them again.
        let sum: u64 = (0..pages).map(|p| r.read(p, 0)).sum();
        let _ = sys::sleep(ms);
        return i32::from(sum != 0);
    }
    for p in 0..pages {
        r.fill(p, 7);
    }
    let _ = sys::sleep(ms);
    let bad: usize = (0..pages).map(|p| r.check(p, 7)).sum();
    i32::from(bad != 0)
}

/// For the kernel's benchmark: faults on clean pages under a small limit (each fault evicts a
/// page, chosen by the clock or, with `graft`, by keep_buffer_cache.gb; no disk I/O).
fn faultbench(graft: bool) -> i32 {
    const PAGES: usize = 256;
    if vm::set_limit(32).is_err() {
        return 2;
    }
    if graft {
        let Ok(loaded) = graft::load_file(GRAFT) else { return 2 };
        if graft::attach(loaded.id, "vm.pick_victim", 0).is_err() {
            return 2;
        }
    }
    let Ok(r) = Region::new(PAGES) else { return 2 };
    let _ = vm::mark(r.base.cast(), PAGES / 2 * PAGE, true);
    let mut sum = 0u64;
    for _ in 0..4 {
        for p in 0..PAGES {
            sum = sum.wrapping_add(r.read(p, 0));
        }
    }
    i32::from(sum != 0)
}

fn main(args: &[&str]) -> i32 {
    // Without arguments (as init runs it): everything, the demo last.
    match args.get(1).copied().unwrap_or("test") {
        "demo" => demo(),
        "verify" => verify(),
        "faultbench" => faultbench(args.get(2) == Some(&"graft")),
        "hold" => hold(
            args.get(2).and_then(|a| ulib::args::parse_i32(a)).unwrap_or(16).max(1) as usize,
            args.get(3).and_then(|a| ulib::args::parse_i32(a)).unwrap_or(1000).max(0) as u64,
            args.get(4) == Some(&"read"),
        ),
        "hostile" => hostile(&args[2..]),
        "test" => {
            let v = verify();
            let h = hostile(&[
                "grafts/hostile/vm_bad_index.gb",
                "grafts/hostile/vm_endless_loop.gb",
                "grafts/hostile/vm_meddle_then_fail.gb",
            ]);
            let d = demo();
            i32::from(v != 0 || h != 0 || d != 0)
        }
        other => {
            eprintln!("dbsim: unknown mode {other:?} (demo, verify, hostile GRAFT..., test)");
            2
        }
    }
}
ulib::entry!(main);
