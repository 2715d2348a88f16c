//! Process and thread system calls: exit, spawn, wait, threads, sleep, yield, ids, the clock,
//! futexes.
use alloc::vec::Vec;

use sysabi::{Error, Sys};

use super::uaccess::{self, read_u32};
use super::{arg_u32, me, read_user_str};
use crate::task::{self, ProcessId, Wake};

const MAX_PATH: u64 = 256;
const MAX_ARGS: u64 = 4096;
/// Longest sleep or futex time-out, in milliseconds (a day).
const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Exit => task::exit_process(a[0] as i32),
        Sys::ThreadExit => task::exit_thread(a[0] as i32),
        Sys::Spawn => {
            let path = read_user_str(a[0], a[1], MAX_PATH)?;
            let args = read_user_str(a[2], a[3], MAX_ARGS)?;
            let mut argv: Vec<&str> = Vec::new();
            argv.try_reserve(1 + args.len() / 2).map_err(|_| Error::NoMemory)?;
            argv.push(path.as_str());
            argv.extend(args.split('\0').filter(|s| !s.is_empty()));
            // A bare name is looked up in bin/ (like a one-entry PATH): the name is made here,
            // fallibly, so that `task::spawn` finds the program at once.
            let mut resolved = alloc::string::String::new();
            let image_path = if path.contains('/') || crate::fs::ramdisk::file(&path).is_some() {
                path.as_str()
            } else {
                resolved.try_reserve_exact(4 + path.len()).map_err(|_| Error::NoMemory)?;
                resolved.push_str("bin/");
                resolved.push_str(&path);
                resolved.as_str()
            };
            let parent = me()?;
            // Not yet fallible inside task::spawn: the process and thread tables' inserts, the
            // thread's kernel stack record and transaction log, the ELF loader's bookkeeping.
            crate::memory::not_yet_fallible(|| task::spawn(image_path, &argv, Some(parent))).map(|p| u64::from(p.0))
        }
        Sys::Wait => {
            let child = ProcessId::from_arg(a[0]).ok_or(Error::InvalidArgument)?;
            task::wait(me()?, child).map(|c| c as u32 as u64)
        }
        Sys::Yield => {
            task::yield_now();
            Ok(0)
        }
        Sys::Sleep => {
            task::sleep_ms(a[0].min(MAX_WAIT_MS));
            Ok(0)
        }
        Sys::GetPid => me().map(|p| u64::from(p.0)),
        Sys::GetTid => task::current().map(|(t, _)| u64::from(t.0)).ok_or(Error::NoSuchProcess),
        Sys::Clock => Ok(crate::time::uptime_ns()),
        // Not yet fallible inside: the thread table's insert, the thread's transaction log.
        Sys::ThreadSpawn => {
            crate::memory::not_yet_fallible(|| task::spawn_thread(a[0], a[1], a[2])).map(|t| u64::from(t.0))
        }
        Sys::FutexWait => {
            let expected = arg_u32(a[1])?;
            if read_u32(a[0])? != expected {
                return Err(Error::WouldBlock);
            }
            let until_ns = (a[2] > 0).then(|| crate::time::uptime_ns() + a[2].min(MAX_WAIT_MS) * 1_000_000);
            match task::futex_wait(a[0], until_ns) {
                Wake::Event => Ok(0),
                Wake::TimedOut => Err(Error::TimedOut),
            }
        }
        Sys::FutexWake => {
            uaccess::check_range(a[0], 4)?;
            let pid = me()?;
            // Not yet fallible inside: the list of threads to wake.
            Ok(crate::memory::not_yet_fallible(|| task::futex_wake(pid, a[0], a[1])))
        }
        _ => Err(Error::NoSys),
    }
}
