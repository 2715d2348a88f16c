//! `spin [THREADS] [MS]`: THREADS threads (default 3) that keep the CPU busy for MS
//! milliseconds (default 2000), then report how many rounds each did. A multi-threaded process
//! to attach a scheduling graft to from the shell (`bg spin`, then `load FILE sched.pick_next PID`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use ulib::args::parse_u64;
use ulib::{println, sys, thread};

fn main(args: &[&str]) -> i32 {
    let threads = args.get(1).and_then(|s| parse_u64(s)).unwrap_or(3).clamp(1, 32);
    let ms = args.get(2).and_then(|s| parse_u64(s)).unwrap_or(2000).min(600_000);
    let deadline = sys::clock() + ms * 1_000_000;
    let mut handles = Vec::new();
    for _ in 0..threads {
        match thread::spawn(move || {
            let mut rounds: i32 = 0;
            while sys::clock() < deadline {
                for _ in 0..1000 {
                    core::hint::spin_loop();
                }
                rounds = rounds.wrapping_add(1);
            }
            rounds
        }) {
            Ok(h) => handles.push(h),
            Err(e) => {
                println!("spin: cannot start a thread: {e}");
                return 1;
            }
        }
    }
    let rounds: Vec<i32> = handles.into_iter().map(|h| h.join()).collect();
    println!("spin: pid {} ran {threads} threads for {ms} ms; rounds per thread: {rounds:?}", sys::getpid());
    0
}
ulib::entry!(main);
