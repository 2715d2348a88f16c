//! `sysfuzz [CALLS] [SEED]`: random system calls from four threads (fixed seed by default), with
//! random numbers and pointers that are null, random, kernel, non-canonical, unmapped, inside a
//! scratch buffer, or straddling its end into the unmapped guard page, and lengths from 0 to
//! `u64::MAX`. The kernel must answer every call (a value or a named error) and survive;
//! `robust fuzz` checks its counters return to their baseline after this program exits.
//!
//! Calls that would legitimately end or stall the run are left out or made harmless: `exit`,
//! `thread_exit`, `thread_spawn` (a random entry would fault and end the process) and `spawn`
//! are not made; `read` and `write` never name the console (descriptors 0-2: reading it
//! blocks for input, writing it prints noise); `sleep` is at most 2 ms and `futex_wait` times
//! out after 1 ms; `unmap` only gives back what the fuzzer mapped (or is refused), since
//! unmapping its own stack or heap would end it; `open` only reads and the calls that change
//! the file system (`unlink`, `mkdir`, `rmdir`, `rename`) are not made, so the disk image the
//! other tests check is left alone; `fail_alloc` (test control) and `vm_limit`'s limit (0:
//! unchanged) are not fuzzed.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use sysabi::{Error, Sys};
use ulib::robust::syscall6;
use ulib::{args, println, sys, thread};

const THREADS: u64 = 4;
const SCRATCH: usize = 64 * 1024;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

static ERRORS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
static OKS: AtomicU64 = AtomicU64::new(0);

struct Fuzzer {
    rng: Rng,
    scratch: u64,
    mapped: Vec<(u64, u64)>,
}

impl Fuzzer {
    fn pointer(&mut self) -> u64 {
        let r = self.rng.next();
        match self.rng.below(9) {
            0 => 0,
            1 => r,
            2 => 0xffff_8000_0000_0000 | r,
            3 => 0x0000_8000_0000_0000 + r % 0xffff_0000_0000_0000,
            4 => r % sysabi::USER_START,
            5 => 0x0000_1000_0000_0000 + (r % (1 << 36)) * 8,
            6 => self.scratch + r % SCRATCH as u64,
            7 => self.scratch + SCRATCH as u64 - r % 64,
            _ => sysabi::USER_END - 1 - r % 4096,
        }
    }

    fn length(&mut self) -> u64 {
        let r = self.rng.next();
        match self.rng.below(8) {
            0 => 0,
            1 => r % 64,
            2 => 4096,
            3 => r,
            4 => u64::MAX,
            5 => 1 << 40,
            6 => SCRATCH as u64,
            _ => r % 100_000,
        }
    }

    fn number(&mut self) -> u64 {
        let r = self.rng.next();
        match self.rng.below(6) {
            0 => r % 8,
            1 => r,
            2 => u64::from(u32::MAX) + 1 + r % 16,
            3 => (1 << 32) | (r % 8),
            4 => u64::MAX - r % 4,
            _ => r % 64,
        }
    }

    fn arg(&mut self) -> u64 {
        match self.rng.below(3) {
            0 => self.pointer(),
            1 => self.length(),
            _ => self.number(),
        }
    }

    /// One random call, made harmless where it would end or stall the run.
    fn call(&mut self) {
        let count = Sys::ALL.len() as u64;
        let n = if self.rng.below(50) == 0 { count + self.rng.below(1 << 20) } else { self.rng.below(count) };
        let mut a = [0u64; 6];
        for x in &mut a {
            *x = self.arg();
        }
        let Some(sys) = Sys::from_number(n) else {
            self.record(n, a);
            return;
        };
        match sys {
            Sys::Exit | Sys::ThreadExit | Sys::ThreadSpawn | Sys::Spawn | Sys::FailAlloc => return,
            Sys::Unlink | Sys::Mkdir | Sys::Rmdir | Sys::Rename => return,
            Sys::Read | Sys::Write => a[0] = 3 + a[0] % 64,
            Sys::Sleep => a[0] %= 3,
            Sys::FutexWait => a[2] = 1,
            Sys::Open => a[2] = sysabi::open::READ,
            Sys::VmLimit => a[0] = 0,
            Sys::Map => {
                a[0] %= 1 << 24;
            }
            Sys::Unmap => {
                if !self.mapped.is_empty() && self.rng.below(2) == 0 {
                    let i = self.rng.below(self.mapped.len() as u64) as usize;
                    let (addr, len) = self.mapped.swap_remove(i);
                    a[0] = addr;
                    a[1] = len;
                } else {
                    // Outside the map area: refused.
                    a[0] = self.rng.below(1 << 40) & !0xfff;
                    if a[0] >= 0x0000_2000_0000_0000 {
                        a[0] = 0x1000;
                    }
                }
            }
            _ => {}
        }
        let r = self.record(n, a);
        if sys == Sys::Map && r >= 0 {
            if self.mapped.len() > 64 {
                let (addr, len) = self.mapped.swap_remove(0);
                // SAFETY: a mapping this fuzzer made and never handed to anyone.
                let _ = unsafe { sys::unmap(addr as *mut u8, len as usize) };
            }
            self.mapped.push((r as u64, a[0]));
        }
    }

    fn record(&mut self, n: u64, a: [u64; 6]) -> i64 {
        // SAFETY: the kernel may write into the scratch buffer, which nothing else reads, or
        // refuse the pointer; every other pointer is one the kernel must refuse.
        let r = unsafe { syscall6(n, a) };
        if r >= 0 {
            OKS.fetch_add(1, Ordering::Relaxed);
        } else {
            let code = (-r) as usize;
            ERRORS[code.min(63)].fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

fn run(seed: u64, calls: u64, scratch: u64) -> i32 {
    let mut f = Fuzzer { rng: Rng(seed | 1), scratch, mapped: Vec::new() };
    for _ in 0..calls {
        f.call();
    }
    for (addr, len) in f.mapped.drain(..) {
        // SAFETY: mappings this fuzzer made.
        let _ = unsafe { sys::unmap(addr as *mut u8, len as usize) };
    }
    0
}

fn main(argv: &[&str]) -> i32 {
    let calls = argv.get(1).and_then(|s| args::parse_u64(s)).unwrap_or(100_000);
    let seed = argv.get(2).and_then(|s| args::parse_u64(s)).unwrap_or(0x5eed_2026);
    let t0 = sys::clock();
    let per = calls / THREADS;
    let mut handles = Vec::new();
    for t in 0..THREADS {
        // Each thread has its own scratch buffer (followed by the unmapped guard page `map`
        // leaves after every mapping).
        let scratch = match sys::map(SCRATCH) {
            Ok(p) => p as u64,
            Err(e) => {
                println!("sysfuzz: no scratch memory: {e:?}");
                return 2;
            }
        };
        let n = if t == 0 { calls - per * (THREADS - 1) } else { per };
        let s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(t);
        match thread::spawn(move || run(s, n, scratch)) {
            Ok(h) => handles.push(h),
            Err(e) => {
                println!("sysfuzz: thread: {e:?}");
                return 2;
            }
        }
    }
    let mut failed = 0;
    for h in handles {
        failed += h.join();
    }
    let ms = (sys::clock() - t0) / 1_000_000;
    println!("sysfuzz: {calls} calls from {THREADS} threads, seed {seed:#x}, {ms} ms; {} answered with a value", OKS.load(Ordering::Relaxed));
    let mut line = alloc::string::String::new();
    for (code, n) in ERRORS.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let name = Error::from_code(code as i64).map_or("unknown", |e| e.name());
            line.push_str(&alloc::format!(" {name}={n}"));
        }
    }
    println!("sysfuzz: errors:{line}");
    let unknown = ERRORS[0].load(Ordering::Relaxed) + ERRORS[63].load(Ordering::Relaxed);
    if unknown > 0 || failed > 0 {
        println!("sysfuzz: {unknown} answers were not named errors");
        return 1;
    }
    0
}
ulib::entry!(main);
