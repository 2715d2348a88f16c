//! The kernel: architecture support, memory management, the console and (later) tasks, devices,
//! the file system and the graft runtime.
//!
//! Everything that is not hardware (allocators' bookkeeping, parsers, policies) compiles on the
//! host as well, so that it is covered by plain `cargo test`; the hardware parts are built only for
//! `x86_64-unknown-none` and are tested by the in-kernel suite (`ktest`).
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod cmdline;
pub mod elf_check;
pub mod fs;
pub mod graft;
pub mod ktest;
pub mod memory;
pub mod sync;
pub mod task;
pub mod vm;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(all(target_os = "none", feature = "bench"))]
pub mod bench;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod dev;
#[cfg(target_os = "none")]
pub mod init;
#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod syscall;
#[cfg(target_os = "none")]
pub mod time;
