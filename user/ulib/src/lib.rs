//! The runtime library of user programs: everything between a program's `main` and the
//! system-call interface of `sysabi`.
//!
//! It owns the process entry point (`_start`, which decodes the arguments the kernel put on the
//! initial stack), typed wrappers of every system call ([`sys`]), the heap (grown with `map`),
//! console output macros and line input ([`console`], [`line`]), threads and futex-based locks
//! ([`thread`], [`sync`]), the graft calls with readable statistics ([`graft`]), the boot
//! ramdisk ([`fs`]) and the disk's file system ([`file`]: open files, directories, `stat`,
//! `sync`). It is not a libc: no signals, no current directory (paths start at `/`).
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use ulib::println;
//!
//! fn main(args: &[&str]) -> i32 {
//!     println!("hello from {}", ulib::sys::getpid());
//!     args.len() as i32
//! }
//! ulib::entry!(main);
//! ```
//!
//! The pure parts (argument encoding, line editing, statistics) also build on the host, so
//! `cargo test --target x86_64-unknown-linux-gnu -p ulib` tests them.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod args;
pub mod console;
pub mod file;
pub mod fs;
pub mod graft;
pub mod line;
pub mod measure;
pub mod process;
pub mod robust;
pub mod sync;
pub mod sys;
pub mod testing;
pub mod thread;
pub mod vm;

#[cfg(all(target_os = "none", not(test)))]
mod rt;

pub use sysabi::{Error, GraftStats};

/// Declares the program's `main(args: &[&str]) -> i32`; its result is the exit code.
/// `args[0]` is the program's path.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub fn __ulib_user_main(args: &[&str]) -> i32 {
            let main: fn(&[&str]) -> i32 = $main;
            main(args)
        }
    };
}
