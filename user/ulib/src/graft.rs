//! Grafts from user space: load a blob (with the verifier's log on rejection), attach,
//! detach, list, and statistics with abort reasons by name.

use crate::{args, fs, sys};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use graft_ir::AbortReason;
use sysabi::{Error, GraftStats, ABORT_SLOTS};

/// Room for the verifier's log.
pub const LOG_CAPACITY: usize = 32 * 1024;

/// Why a load failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The verifier rejected the graft; its log.
    Rejected { log: String },
    /// Any other error of `graft_load`.
    Sys(Error),
}

impl LoadError {
    /// The system-call error (`Rejected` for a rejection).
    pub fn error(&self) -> Error {
        match self {
            LoadError::Rejected { .. } => Error::Rejected,
            LoadError::Sys(e) => *e,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LoadError::Rejected { log } => write!(f, "Rejected by the verifier:\n{log}"),
            LoadError::Sys(e) => write!(f, "{e}"),
        }
    }
}

/// The text of a log buffer the kernel filled: `graft_load` does not return the log's length,
/// so the buffer starts zeroed and the log ends at the first NUL byte (a log is text).
pub fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    if end == buf.len() { format!("{text}\n[log truncated at {end} bytes]") } else { text }
}

/// Loads a graft blob; its id.
pub fn load(blob: &[u8]) -> Result<u32, LoadError> {
    let mut log = vec![0u8; LOG_CAPACITY];
    match sys::graft_load(blob, &mut log) {
        Ok(id) => Ok(id),
        Err(Error::Rejected) => Err(LoadError::Rejected { log: log_text(&log) }),
        Err(e) => Err(LoadError::Sys(e)),
    }
}

/// The graft point a blob was written for, read from the blob itself (`None` if it does not
/// decode: the kernel will then answer `BadBlob`).
pub fn blob_point(blob: &[u8]) -> Option<String> {
    graft_ir::decode(blob).ok().map(|m| m.point)
}

/// What `load_file` did.
pub struct Loaded {
    pub id: u32,
    /// The point the blob was written for, if it decodes.
    pub point: Option<String>,
}

/// Reads a blob from the ramdisk and loads it.
pub fn load_file(path: &str) -> Result<Loaded, LoadError> {
    let blob = fs::read_file(path).map_err(LoadError::Sys)?;
    let id = load(&blob)?;
    Ok(Loaded { id, point: blob_point(&blob) })
}

/// Attaches graft `id` to `point` for process `pid` (0: the caller).
pub fn attach(id: u32, point: &str, pid: u64) -> Result<(), Error> {
    sys::graft_attach(id, point, pid)
}

/// Detaches graft `id`.
pub fn detach(id: u32) -> Result<(), Error> {
    sys::graft_detach(id)
}

/// The statistics of graft `id`.
pub fn stats(id: u32) -> Result<GraftStats, Error> {
    sys::graft_stats(id)
}

/// The ids of the caller's loaded grafts.
pub fn list() -> Result<Vec<u32>, Error> {
    // `graft_list` answers a count; whether it is the total or only what fitted, a count
    // that fills the buffer may hide more, so ask again with more room.
    let mut cap = 64;
    loop {
        let mut ids = vec![0u32; cap];
        let n = sys::graft_list(&mut ids)?;
        if n < cap || cap >= 1 << 16 {
            ids.truncate(n.min(cap));
            return Ok(ids);
        }
        cap *= 4;
    }
}

/// The graft points' names, in the kernel's table order (the index `GraftStats::point` uses).
pub fn points() -> Result<Vec<String>, Error> {
    let bytes = fs::grow_until_fits(sys::graft_points)?;
    Ok(args::split_nul_list(&bytes).into_iter().map(ToString::to_string).collect())
}

/// Graft `id` described as text, as `bpftool prog dump` does: point, state, code size, limits,
/// statistics, then the IR in the text format.
pub fn info(id: u32) -> Result<String, Error> {
    let bytes = fs::grow_until_fits(|out| sys::graft_info(id, out))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The name of abort reason `code` (an index of `GraftStats::aborts`).
pub fn abort_name(code: usize) -> &'static str {
    u32::try_from(code)
        .ok()
        .and_then(|c| AbortReason::from_code(c, 0))
        .map_or("Unknown", AbortReason::name)
}

/// The abort code of a reason name (`"OutOfFuel"` -> 4).
pub fn abort_code(name: &str) -> Option<usize> {
    AbortReason::ALL.iter().find(|r| r.name() == name).map(|r| r.code() as usize)
}

/// Total aborts of any reason.
pub fn total_aborts(s: &GraftStats) -> u64 {
    s.aborts.iter().sum()
}

/// The aborts of `s` by reason: `(name, count)` for every reason that happened.
pub fn aborts_by_reason(s: &GraftStats) -> Vec<(&'static str, u64)> {
    (1..ABORT_SLOTS).filter(|&i| s.aborts[i] > 0).map(|i| (abort_name(i), s.aborts[i])).collect()
}

/// Formats a graft's statistics on one line, naming its point from `points`.
pub struct StatsLine<'a> {
    pub stats: &'a GraftStats,
    pub points: &'a [String],
}

impl fmt::Display for StatsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = self.stats;
        let point = self.points.get(s.point as usize).map_or("?", String::as_str);
        write!(
            f,
            "graft {} {} {} calls={} commits={} aborts={}",
            s.id,
            point,
            if s.attached != 0 { "attached" } else { "detached" },
            s.calls,
            s.commits,
            total_aborts(s),
        )?;
        let reasons = aborts_by_reason(s);
        if !reasons.is_empty() {
            f.write_str(" (")?;
            for (i, (name, n)) in reasons.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}: {n}")?;
            }
            f.write_str(")")?;
        }
        write!(f, " fuel={}", s.fuel_used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_names_follow_the_ir_codes() {
        assert_eq!(abort_name(1), "OutOfBounds");
        assert_eq!(abort_name(4), "OutOfFuel");
        assert_eq!(abort_name(15), "HostContract");
        assert_eq!(abort_name(0), "Unknown");
        assert_eq!(abort_name(99), "Unknown");
        assert_eq!(abort_code("InvalidResult"), Some(11));
        assert_eq!(abort_code("Nope"), None);
    }

    #[test]
    fn stats_line_names_point_and_reasons() {
        let mut s = GraftStats { id: 3, attached: 1, point: 1, calls: 10, commits: 7, fuel_used: 99, ..Default::default() };
        s.aborts[4] = 2;
        s.aborts[11] = 1;
        let points = ["vm.pick_victim".to_string(), "sched.pick_next".to_string()];
        let line = format!("{}", StatsLine { stats: &s, points: &points });
        assert_eq!(
            line,
            "graft 3 sched.pick_next attached calls=10 commits=7 aborts=3 (OutOfFuel: 2, InvalidResult: 1) fuel=99"
        );
    }

    #[test]
    fn log_text_stops_at_nul_and_flags_truncation() {
        assert_eq!(log_text(b"bad\0\0\0"), "bad");
        assert!(log_text(b"full").contains("truncated"));
    }
}
