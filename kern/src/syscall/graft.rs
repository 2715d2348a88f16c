//! Graft system calls: the graft points, load (decode, verify, compile), attach, detach,
//! statistics, list.
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use graft_ir::abi;
use sysabi::{Error, GraftStats, Sys};

use super::uaccess::{self, copy_to_user};
use super::{arg_u32, me, read_user, read_user_str, write_out};
use crate::graft::runtime::{self, AttachError, GraftId, LoadError};
use crate::task::{self, ProcessId};

const MAX_POINT_NAME: u64 = 256;
/// Longest load log the kernel prints (the verifier caps its errors, so real logs are shorter).
const MAX_LOG: usize = 64 * 1024;

/// Text printed into memory allocated fallibly and cut at `cap` bytes.
struct BoundedText {
    bytes: Vec<u8>,
    cap: usize,
}

impl fmt::Write for BoundedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.cap - self.bytes.len());
        self.bytes.try_reserve(n).map_err(|_| fmt::Error)?;
        self.bytes.extend_from_slice(&s.as_bytes()[..n]);
        if n < s.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::GraftPoints => {
            let mut out = Vec::new();
            for p in abi::GRAFT_POINTS {
                out.try_reserve(p.name.len() + 1).map_err(|_| Error::NoMemory)?;
                out.extend_from_slice(p.name.as_bytes());
                out.push(0);
            }
            write_out(a[0], a[1], &out)
        }
        Sys::GraftLoad => load(a),
        Sys::GraftAttach => {
            let pid = me()?;
            let id = GraftId(arg_u32(a[0])?);
            let target = match a[3] {
                0 => pid,
                t => ProcessId::from_arg(t).ok_or(Error::InvalidArgument)?,
            };
            let point_name = read_user_str(a[1], a[2], MAX_POINT_NAME)?;
            let point = abi::graft_point(&point_name).ok_or(Error::NoSuchPoint)?;
            let g = runtime::graft(id).filter(|g| g.owner == pid).ok_or(Error::NoSuchGraft)?;
            if g.point.name != point.name {
                return Err(Error::WrongPoint);
            }
            // Only for itself or a running child: an exited child holds no slot.
            match task::child_state(pid, target) {
                _ if target == pid => {}
                task::ChildState::Running => {}
                task::ChildState::Exited => return Err(Error::NoSuchProcess),
                task::ChildState::NotAChild => return Err(Error::PermissionDenied),
            }
            runtime::attach_for(pid, id, target).map(|()| 0).map_err(attach_error)
        }
        Sys::GraftDetach => runtime::detach(me()?, GraftId(arg_u32(a[0])?)).map(|()| 0).map_err(attach_error),
        Sys::GraftStats => {
            let pid = me()?;
            let g = runtime::graft(GraftId(arg_u32(a[0])?)).filter(|g| g.owner == pid).ok_or(Error::NoSuchGraft)?;
            // Read straight from the counters: nothing to allocate.
            let commits = g.stats.commits.load(Ordering::Relaxed);
            let mut out = GraftStats {
                id: g.id.0,
                attached: u32::from(g.is_attached()),
                point: g.point.index as u32,
                commits,
                fuel_used: g.stats.fuel_used.load(Ordering::Relaxed),
                ..GraftStats::default()
            };
            for (slot, n) in out.aborts.iter_mut().zip(&g.stats.aborts) {
                *slot = n.load(Ordering::Relaxed);
            }
            out.calls = commits + out.aborts.iter().sum::<u64>();
            let size = core::mem::size_of::<GraftStats>();
            if a[2] < size as u64 {
                return Err(Error::BufferTooSmall);
            }
            // SAFETY: GraftStats is plain old data (repr(C), integers only, no padding holes left uninitialised: `_pad` is a field).
            let bytes = unsafe { core::slice::from_raw_parts(&out as *const GraftStats as *const u8, size) };
            copy_to_user(a[1], bytes)?;
            Ok(size as u64)
        }
        Sys::GraftInfo => {
            let pid = me()?;
            let g = runtime::graft(GraftId(arg_u32(a[0])?)).filter(|g| g.owner == pid).ok_or(Error::NoSuchGraft)?;
            let text = describe(&g)?;
            write_out(a[1], a[2], text.as_bytes())
        }
        Sys::GraftList => {
            let pid = me()?;
            let ids = runtime::try_grafts_of(pid).ok_or(Error::NoMemory)?;
            let n = ids.len().min(usize::try_from(a[1]).unwrap_or(usize::MAX));
            let mut out = Vec::new();
            out.try_reserve_exact(n * 4).map_err(|_| Error::NoMemory)?;
            for id in &ids[..n] {
                out.extend_from_slice(&id.0.to_le_bytes());
            }
            copy_to_user(a[0], &out)?;
            Ok(n as u64)
        }
        _ => Err(Error::NoSys),
    }
}

/// Most bytes a graft's description may take (the IR of the largest blob the kernel accepts
/// prints in far less).
const MAX_INFO: usize = 512 * 1024;

/// A `fmt::Write` into memory reserved up front: never grows, so a description cannot make the
/// kernel allocate past what it reserved; a longer one is `NoMemory`.
struct Bounded(alloc::string::String);

impl core::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.0.len() + s.len() > self.0.capacity() {
            return Err(core::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// A loaded graft as text: point, state, code, limits, statistics, then its IR.
fn describe(g: &runtime::Graft) -> Result<alloc::string::String, Error> {
    use core::fmt::Write;
    let mut out = Bounded(alloc::string::String::new());
    out.0.try_reserve_exact(MAX_INFO).map_err(|_| Error::NoMemory)?;
    let l = g.limits();
    let s = g.stats();
    let module = g.verified().module();
    let r = (|| -> core::fmt::Result {
        writeln!(out, "graft {} {} {}", g.id.0, g.point.name, if g.is_attached() { "attached" } else { "detached" })?;
        writeln!(out, "code {} bytes, data region {} bytes, {} functions, {} instructions", g.code_size(), module.resources.data_size, module.functions.len(), module.inst_count())?;
        writeln!(out, "limits: fuel {} per call, wall clock {} ms, graft memory {} bytes, detached after {} aborts", l.fuel, l.wall_ns / 1_000_000, l.memory, l.max_aborts)?;
        write!(out, "statistics: calls {} commits {} fuel {}", s.calls, s.commits, s.fuel_used)?;
        for (reason, n) in &s.aborts {
            write!(out, " {reason:?}={n}")?;
        }
        writeln!(out)?;
        writeln!(out)?;
        write!(out, "{module}")
    })();
    r.map_err(|_| Error::NoMemory)?;
    Ok(out.0)
}

fn attach_error(e: AttachError) -> Error {
    match e {
        AttachError::NoSuchGraft(_) | AttachError::NotOwner(_) => Error::NoSuchGraft,
        AttachError::SlotTaken { .. } => Error::SlotTaken,
        AttachError::NotAttached => Error::NotAttached,
        AttachError::NoMemory => Error::NoMemory,
    }
}

fn load(a: [u64; 6]) -> Result<u64, Error> {
    let pid = me()?;
    // Copy at most the kernel's limit; a larger blob is refused by `load` with its size.
    let len = a[1].min(runtime::MAX_KERNEL_BLOB as u64 + 1);
    let blob = read_user(a[0], len, runtime::MAX_KERNEL_BLOB as u64 + 1)?;
    match runtime::load(pid, &blob) {
        Ok(id) => Ok(u64::from(id.0)),
        Err(e) => {
            let err = match &e {
                LoadError::Decode(_) | LoadError::TooLarge(_) => Error::BadBlob,
                LoadError::Verify(_) => Error::Rejected,
                LoadError::Unimplemented(_) => Error::Unsupported,
                LoadError::TooMany => Error::TooMany,
                LoadError::Compile(_) | LoadError::Memory(_) => Error::NoMemory,
            };
            // The log is a courtesy: a log buffer that cannot be written, or no memory to
            // print it in, never hides the load's own error.
            if a[3] > 0 && uaccess::check_range(a[2], a[3]).is_ok() {
                let mut log = BoundedText { bytes: Vec::new(), cap: usize::try_from(a[3]).unwrap_or(usize::MAX).min(MAX_LOG) };
                let _ = write!(log, "{e}");
                let _ = copy_to_user(a[2], &log.bytes);
            }
            Err(err)
        }
    }
}
