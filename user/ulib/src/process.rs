//! Processes: spawning ramdisk programs and waiting for them.

use crate::{args, sys};
use alloc::format;
use sysabi::Error;

/// Starts the ramdisk program at `path` with `args` (not including the path: the kernel makes
/// the path the program's first argument); its pid.
pub fn spawn(path: &str, args: &[&str]) -> Result<u64, Error> {
    let encoded = args::encode(args)?;
    sys::spawn_raw(path, &encoded)
}

/// Like [`spawn`], but a bare name that is not in the ramdisk's root is also looked up under
/// `bin/`, so that the shell and init do not depend on where the ramdisk keeps programs.
pub fn spawn_program(name: &str, args: &[&str]) -> Result<u64, Error> {
    match spawn(name, args) {
        Err(Error::NotFound) if !name.contains('/') => spawn(&format!("bin/{name}"), args),
        r => r,
    }
}

/// Runs a program to its end: spawn, then wait; its exit code.
pub fn run(name: &str, args: &[&str]) -> Result<i32, Error> {
    let pid = spawn_program(name, args)?;
    sys::wait(pid)
}
