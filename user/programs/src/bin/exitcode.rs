//! `exitcode N`: exits with code N (default 0). The tests use it to check that exit codes
//! travel through `exit`, `spawn` and `wait`. `exitcode panic` panics instead, to check that a
//! panic ends the process with code 101.
#![no_std]
#![no_main]

use ulib::args::parse_i32;

fn main(args: &[&str]) -> i32 {
    match args.get(1) {
        None => 0,
        Some(&"panic") => panic!("asked to panic"),
        Some(s) => parse_i32(s).unwrap_or_else(|| {
            ulib::eprintln!("exitcode: not a number: {s}");
            2
        }),
    }
}
ulib::entry!(main);
