//! `memtouch PAGES`: maps PAGES pages (default 16), writes a pattern that differs on every page,
//! reads it back, and exits 0 if every byte came back, 1 if not, 2 if `map` failed. Memory from
//! `map` is backed on first touch, so each page's first write is a page fault the kernel
//! resolves: the kernel's tests use this program to drive that path.
#![no_std]
#![no_main]

use ulib::args::parse_i32;

const PAGE: usize = 4096;

fn main(args: &[&str]) -> i32 {
    let pages = args.get(1).and_then(|s| parse_i32(s)).unwrap_or(16).max(1) as usize;
    let base = match ulib::sys::map(pages * PAGE) {
        Ok(p) => p,
        Err(e) => {
            ulib::eprintln!("memtouch: map of {pages} pages failed: {e:?}");
            return 2;
        }
    };
    // SAFETY: `map` returned `pages * PAGE` bytes of fresh, writable memory owned by this program.
    let mem = unsafe { core::slice::from_raw_parts_mut(base, pages * PAGE) };
    for (i, b) in mem.iter_mut().enumerate() {
        *b = pattern(i);
    }
    let bad = mem.iter().enumerate().filter(|(i, b)| **b != pattern(*i)).count();
    if bad != 0 {
        ulib::eprintln!("memtouch: {bad} bytes of {pages} pages came back wrong");
        return 1;
    }
    0
}

fn pattern(i: usize) -> u8 {
    (i / PAGE * 31 + i % 251) as u8
}
ulib::entry!(main);
