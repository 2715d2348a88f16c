//! System calls: decoding the registers, checking every argument, and answering with a value or
//! a named error (see `sysabi` and `docs/syscalls.md`).
pub mod uaccess;

use alloc::string::String;
use alloc::vec::Vec;

use graft_ir::abi;
use sysabi::{Error, GraftStats, Sys};

use crate::arch::syscall::SyscallFrame;
use crate::fs::ramdisk;
use crate::graft::runtime::{self, AttachError, GraftId, LoadError};
use crate::graft::state::ProcessId;
use crate::task::{self, Blocked, Wake};
use uaccess::{copy_to_user, read_str, read_u32, read_vec};

const MAX_PATH: u64 = 256;
const MAX_ARGS: u64 = 4096;
const MAX_IO: u64 = 64 * 1024;

pub fn dispatch(frame: &mut SyscallFrame) {
    let result = match Sys::from_number(frame.rax) {
        Some(sys) => call(sys, [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9]),
        None => Err(Error::NoSys),
    };
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => (-e.code()) as u64,
    };
    // sysret to a non-canonical address would fault in ring 0. User memory ends below the
    // canonical boundary, so this cannot happen; if it ever did, the process goes, not the kernel.
    if frame.rip >= sysabi::USER_END {
        log::warn!("system call returning to non-canonical {:#x}; process killed", frame.rip);
        task::exit_process(128 + 11);
    }
}

fn me() -> Result<ProcessId, Error> {
    task::current_pid().ok_or(Error::NoSuchProcess)
}

fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Exit => task::exit_process(a[0] as i32),
        Sys::ThreadExit => task::exit_thread(a[0] as i32),
        Sys::Spawn => {
            let path = read_str(a[0], a[1], MAX_PATH)?;
            let args = read_str(a[2], a[3], MAX_ARGS)?;
            let mut argv: Vec<&str> = alloc::vec![path.as_str()];
            argv.extend(args.split('\0').filter(|s| !s.is_empty()));
            task::spawn(&path, &argv, Some(me()?)).map(|p| u64::from(p.0))
        }
        Sys::Wait => task::wait(me()?, ProcessId(a[0] as u32)).map(|c| c as u32 as u64),
        Sys::Yield => {
            task::yield_now();
            Ok(0)
        }
        Sys::Sleep => {
            task::sleep_ms(a[0].min(24 * 3600 * 1000));
            Ok(0)
        }
        Sys::GetPid => me().map(|p| u64::from(p.0)),
        Sys::GetTid => task::current().map(|(t, _)| u64::from(t.0)).ok_or(Error::NoSuchProcess),
        Sys::Write => {
            if a[0] != 1 && a[0] != 2 {
                return Err(Error::InvalidArgument);
            }
            let bytes = read_vec(a[1], a[2].min(MAX_IO), MAX_IO)?;
            crate::kprint!("{}", String::from_utf8_lossy(&bytes));
            Ok(bytes.len() as u64)
        }
        Sys::Read => {
            if a[0] != 0 {
                return Err(Error::InvalidArgument);
            }
            let mut buf = alloc::vec![0u8; a[2].min(MAX_IO) as usize];
            if buf.is_empty() {
                return Ok(0);
            }
            // Check the buffer is there and writable before blocking: a bad pointer must not
            // wait for input first. Copying the bytes back unchanged changes nothing.
            uaccess::copy_from_user(&mut buf, a[1])?;
            copy_to_user(a[1], &buf)?;
            let n = task::console_read(&mut buf);
            copy_to_user(a[1], &buf[..n])?;
            Ok(n as u64)
        }
        Sys::Clock => Ok(crate::time::uptime_ns()),
        Sys::Map => {
            if a[1] != 0 {
                return Err(Error::InvalidArgument);
            }
            task::map_memory(a[0])
        }
        Sys::Unmap => task::unmap_memory(a[0], a[1]).map(|()| 0),
        Sys::ThreadSpawn => task::spawn_thread(a[0], a[1], a[2]).map(|t| u64::from(t.0)),
        Sys::FutexWait => {
            let value = read_u32(a[0])?;
            if value != a[1] as u32 {
                return Err(Error::WouldBlock);
            }
            let until_ns = (a[2] > 0).then(|| crate::time::uptime_ns() + a[2].min(1 << 40) * 1_000_000);
            match task::block(Blocked::Futex { addr: a[0], until_ns }) {
                Wake::Event => Ok(0),
                Wake::TimedOut => Err(Error::TimedOut),
            }
        }
        Sys::FutexWake => {
            uaccess::check_range(a[0], 4)?;
            Ok(task::futex_wake(me()?, a[0], a[1]))
        }
        Sys::FileList => {
            let mut out = Vec::new();
            for name in ramdisk::names() {
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
            write_out(a[0], a[1], &out)
        }
        Sys::FileRead => {
            let path = read_str(a[0], a[1], MAX_PATH)?;
            let data = ramdisk::file(&path).ok_or(Error::NotFound)?;
            let offset = a[2].min(data.len() as u64) as usize;
            let n = (data.len() - offset).min(a[4].min(MAX_IO) as usize);
            copy_to_user(a[3], &data[offset..offset + n])?;
            Ok(n as u64)
        }
        Sys::GraftPoints => {
            let mut out = Vec::new();
            for p in abi::GRAFT_POINTS {
                out.extend_from_slice(p.name.as_bytes());
                out.push(0);
            }
            write_out(a[0], a[1], &out)
        }
        Sys::GraftLoad => graft_load(a),
        Sys::GraftAttach => {
            let pid = me()?;
            let point_name = read_str(a[1], a[2], MAX_PATH)?;
            let point = abi::graft_point(&point_name).ok_or(Error::NoSuchPoint)?;
            let id = GraftId(a[0] as u32);
            let g = runtime::graft(id).filter(|g| g.owner == pid).ok_or(Error::NoSuchGraft)?;
            if g.point.name != point.name {
                return Err(Error::WrongPoint);
            }
            let target = match a[3] {
                0 => pid,
                t => ProcessId(t as u32),
            };
            if target != pid && !task::is_child(pid, target) {
                return Err(Error::PermissionDenied);
            }
            runtime::attach_for(pid, id, target).map(|()| 0).map_err(attach_error)
        }
        Sys::GraftDetach => runtime::detach(me()?, GraftId(a[0] as u32)).map(|()| 0).map_err(attach_error),
        Sys::GraftStats => {
            let pid = me()?;
            let g = runtime::graft(GraftId(a[0] as u32)).filter(|g| g.owner == pid).ok_or(Error::NoSuchGraft)?;
            let s = g.stats();
            let mut out = GraftStats {
                id: g.id.0,
                attached: u32::from(g.is_attached()),
                point: abi::GRAFT_POINTS.iter().position(|p| p.name == g.point.name).unwrap_or(0) as u32,
                calls: s.calls,
                commits: s.commits,
                fuel_used: s.fuel_used,
                ..GraftStats::default()
            };
            for (reason, n) in s.aborts {
                if let Some(slot) = out.aborts.get_mut(reason.code() as usize) {
                    *slot += n;
                }
            }
            let size = core::mem::size_of::<GraftStats>();
            if (a[2] as usize) < size {
                return Err(Error::BufferTooSmall);
            }
            // SAFETY: GraftStats is plain old data (repr(C), integers only, no padding holes left uninitialised: `_pad` is a field).
            let bytes = unsafe { core::slice::from_raw_parts(&out as *const GraftStats as *const u8, size) };
            copy_to_user(a[1], bytes)?;
            Ok(size as u64)
        }
        Sys::GraftList => {
            let pid = me()?;
            let ids = runtime::grafts_of(pid);
            let n = ids.len().min(a[1] as usize);
            let mut out = Vec::with_capacity(n * 4);
            for id in &ids[..n] {
                out.extend_from_slice(&id.0.to_le_bytes());
            }
            copy_to_user(a[0], &out)?;
            Ok(n as u64)
        }
    }
}

fn write_out(addr: u64, cap: u64, bytes: &[u8]) -> Result<u64, Error> {
    if (bytes.len() as u64) > cap {
        return Err(Error::BufferTooSmall);
    }
    copy_to_user(addr, bytes)?;
    Ok(bytes.len() as u64)
}

fn attach_error(e: AttachError) -> Error {
    match e {
        AttachError::NoSuchGraft(_) | AttachError::NotOwner(_) => Error::NoSuchGraft,
        AttachError::SlotTaken { .. } => Error::SlotTaken,
        AttachError::NotAttached => Error::NotAttached,
    }
}

fn graft_load(a: [u64; 6]) -> Result<u64, Error> {
    let pid = me()?;
    // Copy at most the kernel's limit; a larger blob is refused by `load` with its size.
    let len = a[1].min(runtime::MAX_KERNEL_BLOB as u64 + 1);
    let blob = read_vec(a[0], len, runtime::MAX_KERNEL_BLOB as u64 + 1)?;
    match runtime::load(pid, &blob) {
        Ok(id) => Ok(u64::from(id.0)),
        Err(e) => {
            let (err, log) = match &e {
                LoadError::Decode(_) | LoadError::TooLarge(_) => (Error::BadBlob, alloc::format!("{e}")),
                LoadError::Verify(_) => (Error::Rejected, alloc::format!("{e}")),
                LoadError::Unimplemented(_) => (Error::Unsupported, alloc::format!("{e}")),
                LoadError::TooMany => (Error::TooMany, alloc::format!("{e}")),
                LoadError::Compile(_) => (Error::NoMemory, alloc::format!("{e}")),
            };
            if a[3] > 0 {
                uaccess::check_range(a[2], a[3])?;
                let n = log.len().min(a[3] as usize);
                copy_to_user(a[2], &log.as_bytes()[..n])?;
            }
            Err(err)
        }
    }
}
