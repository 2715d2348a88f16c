//! `schedtest [REQUESTS] [HOGS] [BLOB]`: the group-scheduling demo.
//!
//! A client (the main thread) and a server thread of this process ping-pong requests through
//! shared memory and futexes, while HOGS threads of the same process spin. The request
//! round-trip latency (median, p90) is measured first under the kernel's default choice
//! within the group, then with the group-scheduling graft attached to `sched.pick_next`
//! (it runs the partner of the thread that ran last, else the thread that has run least, so
//! the client and server run back to back ahead of the hogs). Exits 0 if the graft was
//! attached and got calls that committed.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sysabi::Error;
use ulib::args::parse_u64;
use ulib::graft::{self, StatsLine};
use ulib::measure::{ratio, summarize, Summary};
use ulib::{eprintln, fs, println, sys, thread};

/// Where the ramdisk may keep the graft (the first that exists is used).
const BLOBS: &[&str] = &["grafts/group_sched.gb", "grafts/group_schedule.gb"];

/// The data layout of `sample-grafts/group_schedule.graft` (its globals in declaration order,
/// each aligned to its element size): `pairs: [u32; 16]` at 0, `npairs: i32` at 64,
/// `last_tid: u32` at 68. The graft ships with the placeholder pair (7, 9); the process
/// writes its own (client, server) tids there before loading.
const PAIRS_OFFSET: usize = 0;
const NPAIRS_OFFSET: usize = 64;
const DATA_LEN: usize = 72;

/// Requests sent before measuring, to warm caches and page in the code.
const WARMUP: u64 = 5;

/// The request channel between client and server: each side sleeps on its own word.
static REQUEST: AtomicU32 = AtomicU32::new(0);
static REPLY: AtomicU32 = AtomicU32::new(0);
/// Set to end the server and the hogs.
static STOP: AtomicU32 = AtomicU32::new(0);
/// Work done by the hogs (so that the run shows they were not starved either).
static HOG_SPINS: AtomicU64 = AtomicU64::new(0);

/// Sleeps while `word` holds `seen`; a failing futex degrades to yielding.
fn wait_change(word: &AtomicU32, seen: u32) {
    match sys::futex_wait(word, seen, 1000) {
        Ok(()) | Err(Error::WouldBlock) | Err(Error::TimedOut) => {}
        Err(_) => sys::yield_now(),
    }
}

fn server() -> i32 {
    let mut seen = 0;
    loop {
        let req = REQUEST.load(Ordering::Acquire);
        if STOP.load(Ordering::Acquire) != 0 {
            return 0;
        }
        if req == seen {
            wait_change(&REQUEST, seen);
            continue;
        }
        seen = req;
        REPLY.store(req, Ordering::Release);
        let _ = sys::futex_wake(&REPLY, 1);
    }
}

fn hog() -> i32 {
    while STOP.load(Ordering::Relaxed) == 0 {
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        HOG_SPINS.fetch_add(1, Ordering::Relaxed);
    }
    0
}

/// Sends `n` requests; their round-trip times in ns.
fn measure(n: u64, next: &mut u32) -> Vec<u64> {
    let mut samples = Vec::new();
    for i in 0..n + WARMUP {
        *next = next.wrapping_add(1).max(1);
        let req = *next;
        let t0 = sys::clock();
        REQUEST.store(req, Ordering::Release);
        let _ = sys::futex_wake(&REQUEST, 1);
        loop {
            let r = REPLY.load(Ordering::Acquire);
            if r == req {
                break;
            }
            wait_change(&REPLY, r);
        }
        if i >= WARMUP {
            samples.push(sys::clock().saturating_sub(t0));
        }
    }
    samples
}

fn show(label: &str, s: &Summary) {
    println!(
        "schedtest: {label:8} n={} median={} us p90={} us min={} us max={} us",
        s.count,
        s.median / 1000,
        s.p90 / 1000,
        s.min / 1000,
        s.max / 1000
    );
}

/// The graft blob with (client, server) written as its only pair; the blob unchanged if it
/// does not have the expected layout (the graft then still favours the threads that have run
/// least, which are the client and server).
fn personalize(blob: Vec<u8>, client: u32, server: u32) -> Vec<u8> {
    let Ok(mut module) = graft_ir::decode(&blob) else { return blob };
    let size = module.resources.data_size as usize;
    if module.point != "sched.pick_next" || size < DATA_LEN {
        eprintln!("schedtest: the graft's data does not have the expected layout; loading it as is");
        return blob;
    }
    if module.data.len() < DATA_LEN {
        module.data.resize(DATA_LEN, 0);
    }
    module.data[PAIRS_OFFSET..PAIRS_OFFSET + 4].copy_from_slice(&client.to_le_bytes());
    module.data[PAIRS_OFFSET + 4..PAIRS_OFFSET + 8].copy_from_slice(&server.to_le_bytes());
    module.data[NPAIRS_OFFSET..NPAIRS_OFFSET + 4].copy_from_slice(&1i32.to_le_bytes());
    graft_ir::encode(&module).unwrap_or(blob)
}

fn main(args: &[&str]) -> i32 {
    let requests = args.get(1).and_then(|s| parse_u64(s)).unwrap_or(50).max(1);
    let hogs = args.get(2).and_then(|s| parse_u64(s)).unwrap_or(3);
    let blob_path = match args.get(3) {
        Some(p) => *p,
        None => {
            let files = fs::list().unwrap_or_default();
            BLOBS.iter().copied().find(|b| files.iter().any(|f| f == b)).unwrap_or(BLOBS[0])
        }
    };
    println!("schedtest: pid {}, {requests} requests, {hogs} hog threads, graft {blob_path}", sys::getpid());

    let server_thread = match thread::spawn(server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("schedtest: cannot start the server thread: {e}");
            return 1;
        }
    };
    let mut hog_threads = Vec::new();
    for _ in 0..hogs {
        match thread::spawn(hog) {
            Ok(t) => hog_threads.push(t),
            Err(e) => eprintln!("schedtest: cannot start a hog thread: {e} (going on with fewer)"),
        }
    }
    let client_tid = sys::gettid() as u32;
    let server_tid = server_thread.tid() as u32;
    println!("schedtest: client tid {client_tid}, server tid {server_tid}");

    let mut next = 0u32;
    let default = summarize(&measure(requests, &mut next));
    show("default", &default);

    let mut ok = false;
    let graft_id = match fs::read_file(blob_path) {
        Err(e) => {
            eprintln!("schedtest: cannot read {blob_path}: {e}");
            None
        }
        Ok(blob) => match graft::load(&personalize(blob, client_tid, server_tid)) {
            Err(e) => {
                eprintln!("schedtest: graft_load: {e}");
                None
            }
            Ok(id) => match graft::attach(id, "sched.pick_next", 0) {
                Err(e) => {
                    eprintln!("schedtest: graft_attach: {e}");
                    None
                }
                Ok(()) => Some(id),
            },
        },
    };

    if let Some(id) = graft_id {
        let grafted = summarize(&measure(requests, &mut next));
        show("grafted", &grafted);
        let (w, f) = ratio(default.median, grafted.median);
        let (pw, pf) = ratio(default.p90, grafted.p90);
        println!("schedtest: default/grafted median ratio {w}.{f:02}, p90 ratio {pw}.{pf:02}");
        match graft::stats(id) {
            Ok(stats) => {
                let points = graft::points().unwrap_or_default();
                println!("schedtest: {}", StatsLine { stats: &stats, points: &points });
                ok = stats.calls > 0 && stats.commits > 0;
                if !ok {
                    eprintln!("schedtest: the graft was attached but got no committed calls");
                }
            }
            Err(e) => eprintln!("schedtest: graft_stats: {e}"),
        }
        if let Err(e) = graft::detach(id) {
            eprintln!("schedtest: graft_detach: {e}");
        }
    }

    STOP.store(1, Ordering::Release);
    REQUEST.fetch_add(1, Ordering::Release);
    let _ = sys::futex_wake(&REQUEST, 1);
    server_thread.join();
    for h in hog_threads {
        h.join();
    }
    println!("schedtest: hogs spun {} rounds", HOG_SPINS.load(Ordering::Relaxed));
    println!("schedtest: {}", if ok { "ok" } else { "FAILED" });
    if ok { 0 } else { 1 }
}
ulib::entry!(main);
