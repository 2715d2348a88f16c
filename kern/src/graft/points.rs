//! Graft points, each declared once: its entry in the ABI table, the kernel's default policy,
//! and the validator of a graft's answer (after VINO's GRAFTABLE / DEFAULT_GRAFT). Kernel code
//! calls the typed function as it would call the default; the slot lookup, the transaction and
//! the fallback to the default on any abort happen inside `runtime::dispatch`.
use alloc::vec::Vec;

use graft_ir::HandleKind;
use graft_ir::abi::{self, GraftPoint, ResultFacts};
use graft_ir::interp::DataValue;

use super::runtime::{self, Outcome};
use super::state::ProcessId;
use super::txn::TxnLog;

/// The ABI table's row `index` (one of `abi::point::*`: a constant index into a static table).
fn point(index: usize) -> &'static GraftPoint {
    &abi::GRAFT_POINTS[index]
}

/// A runnable thread, as `sched.pick_next` sees it (24-byte record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCandidate {
    pub tid: u32,
    /// bit1: woke from a wait since it last ran; bit2: was preempted.
    pub flags: u32,
    pub runtime_ns: u64,
    pub wakeups: u32,
}

pub const WOKE_FROM_WAIT: u32 = 1 << 1;
pub const PREEMPTED: u32 = 1 << 2;

/// Whether group `group` has a `sched.pick_next` graft: the scheduler gathers the candidates'
/// records only then (the common case of no graft stays free of allocation).
pub fn sched_grafted(group: ProcessId) -> bool {
    runtime::attached(point(abi::point::SCHED_PICK_NEXT), group).is_some()
}

/// `sched.pick_next`: which of group `group`'s runnable threads (oldest first) runs in the
/// group's turn. Default: the one that waited longest. Valid: an index into `threads`.
pub fn sched_pick_next(group: ProcessId, txn: &mut TxnLog, threads: &[ThreadCandidate]) -> (usize, Outcome) {
    let n = threads.len();
    if n <= 1 {
        return (0, Outcome::Default);
    }
    let mut records = Vec::with_capacity(n * 24);
    for t in threads {
        records.extend_from_slice(&t.tid.to_le_bytes());
        records.extend_from_slice(&t.flags.to_le_bytes());
        records.extend_from_slice(&t.runtime_ns.to_le_bytes());
        records.extend_from_slice(&t.wakeups.to_le_bytes());
        records.extend_from_slice(&0u32.to_le_bytes());
    }
    let p = point(abi::point::SCHED_PICK_NEXT);
    let facts = ResultFacts { candidates: n as i64, ..ResultFacts::default() };
    let (idx, outcome) = runtime::dispatch(
        p,
        group,
        txn,
        &[DataValue::I32(n as i32)],
        &mut [&mut records[..]],
        |v, _| p.accepts(i64::from(v), &facts),
        |_| 0,
    );
    (idx as usize, outcome)
}

/// A resident page, as `vm.pick_victim` sees it (16-byte record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VictimCandidate {
    pub vaddr: u64,
    /// bit0 referenced, bit1 dirty, bit2 file-backed.
    pub flags: u32,
    /// Ticks since last referenced.
    pub age: u32,
}

/// The default eviction choice: the oldest unreferenced page, else the oldest page.
pub fn default_victim(cands: &[VictimCandidate]) -> usize {
    let oldest = |want_unreferenced: bool| {
        cands
            .iter()
            .enumerate()
            .filter(|(_, c)| !want_unreferenced || c.flags & 1 == 0)
            .max_by_key(|(_, c)| c.age)
            .map(|(i, _)| i)
    };
    oldest(true).or_else(|| oldest(false)).unwrap_or(0)
}

/// `vm.pick_victim`: which of process `pid`'s resident pages to evict. Valid: an index into
/// `cands` (the graft can only choose among the pages the kernel offers).
pub fn vm_pick_victim(pid: ProcessId, txn: &mut TxnLog, cands: &[VictimCandidate]) -> (usize, Outcome) {
    let n = cands.len();
    let mut records = Vec::with_capacity(n * 16);
    for c in cands {
        records.extend_from_slice(&c.vaddr.to_le_bytes());
        records.extend_from_slice(&c.flags.to_le_bytes());
        records.extend_from_slice(&c.age.to_le_bytes());
    }
    let default = default_victim(cands) as i32;
    let p = point(abi::point::VM_PICK_VICTIM);
    let facts = ResultFacts { candidates: n as i64, ..ResultFacts::default() };
    let (idx, outcome) = runtime::dispatch(
        p,
        pid,
        txn,
        &[DataValue::I32(n as i32)],
        &mut [&mut records[..]],
        |v, _| p.accepts(i64::from(v), &facts),
        |_| default,
    );
    (idx as usize, outcome)
}

/// `fs.compute_ra`: after a read of `[offset, offset + len)` of `file` (`file_blocks` blocks of
/// `block_size` bytes), the blocks to read ahead, written to `out`. Default: the next blocks in
/// sequence. Valid: a count within `out`, every block inside the file.
#[allow(clippy::too_many_arguments)]
pub fn fs_compute_ra(
    pid: ProcessId,
    txn: &mut TxnLog,
    file: u64,
    offset: i64,
    len: i64,
    block_size: i64,
    file_blocks: i64,
    out: &mut [i64],
) -> (usize, Outcome) {
    let cap = out.len();
    let mut buf = alloc::vec![0u8; cap * 8];
    let next = (offset.saturating_add(len).max(0) + block_size - 1) / block_size.max(1);
    let p = point(abi::point::FS_COMPUTE_RA);
    let (count, outcome) = runtime::dispatch(
        p,
        pid,
        txn,
        &[DataValue::Handle(HandleKind::File, file), DataValue::I64(offset), DataValue::I64(len)],
        &mut [&mut buf[..]],
        |v, bufs| p.accepts(i64::from(v), &ResultFacts { out: &bufs[0][..], file_blocks, ..ResultFacts::default() }),
        |bufs| {
            let mut n = 0;
            for (i, b) in bufs[0].chunks_mut(8).enumerate().take(cap.min(2)) {
                let block = next + i as i64;
                if block >= file_blocks {
                    break;
                }
                b.copy_from_slice(&block.to_le_bytes());
                n += 1;
            }
            n
        },
    );
    let count = count as usize;
    for (o, b) in out.iter_mut().zip(buf.chunks(8)).take(count) {
        *o = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    }
    (count, outcome)
}

/// `fs.read_filter` / `fs.write_filter`: transform `buf` (file data at `offset`) in place.
/// Default: leave it as it is. Valid: 0, or a negative error. On an abort the data is put back
/// as it was before the graft touched it, so a half-transformed buffer never escapes.
pub fn fs_filter(write: bool, pid: ProcessId, txn: &mut TxnLog, file: u64, offset: i64, buf: &mut [u8]) -> (i32, Outcome) {
    let p = point(if write { abi::point::FS_WRITE_FILTER } else { abi::point::FS_READ_FILTER });
    if runtime::attached(p, pid).is_none() {
        return (0, Outcome::Default);
    }
    let original = buf.to_vec();
    let len = buf.len() as i32;
    let (r, outcome) = runtime::dispatch(
        p,
        pid,
        txn,
        &[DataValue::Handle(HandleKind::File, file), DataValue::I64(offset), DataValue::I32(len)],
        &mut [&mut *buf],
        |v, _| p.accepts(i64::from(v), &ResultFacts::default()),
        |_| 0,
    );
    if matches!(outcome, Outcome::Aborted(_)) {
        buf.copy_from_slice(&original);
    }
    (r, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_victim_prefers_old_unreferenced_pages() {
        let c = |flags, age| VictimCandidate { vaddr: 0, flags, age };
        assert_eq!(default_victim(&[c(1, 90), c(0, 10), c(0, 30), c(1, 5)]), 2);
        assert_eq!(default_victim(&[c(1, 9), c(1, 30)]), 1);
        assert_eq!(default_victim(&[]), 0);
    }
}
