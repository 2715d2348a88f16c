//! Graft points, each declared once: its row in the ABI table (signature, record layout,
//! validator), the kernel's record type for each of its buffers (checked against the row when
//! the kernel compiles), the kernel's default policy, and the typed function kernel code calls
//! as it would call the default (after VINO's GRAFTABLE / DEFAULT_GRAFT). The slot lookup, the
//! transaction and the fallback to the default on any abort happen inside `runtime::dispatch`.
//!
//! Adding a point: the row in `graft_ir::abi::POINTS`, a record type here declared with
//! `record!` (one per buffer of records) plus its default, the typed function, and the call
//! site. `every_point_has_its_kernel_pieces` fails until each is there.
use alloc::vec::Vec;

use graft_ir::HandleKind;
use graft_ir::abi::{self, Field, FieldType, GraftPoint, ResultFacts};
use graft_ir::interp::DataValue;

use super::runtime::{self, Outcome};
use super::state::ProcessId;
use super::txn::TxnLog;

/// The ABI table's row `index` (one of `abi::point::*`: a constant index into a static table).
fn point(index: usize) -> &'static GraftPoint {
    &abi::GRAFT_POINTS[index]
}

/// A Rust type that can be a record field: its ABI field type.
pub trait FieldRepr: Copy {
    const TY: FieldType;
    fn to_bits(self) -> u64;
    fn from_bits(bits: u64) -> Self;
}

macro_rules! field_repr {
    ($($t:ty => $ft:expr),*) => {$(
        impl FieldRepr for $t {
            const TY: FieldType = $ft;
            #[inline(always)]
            fn to_bits(self) -> u64 { self as u64 }
            #[inline(always)]
            fn from_bits(bits: u64) -> Self { bits as $t }
        }
    )*};
}
field_repr!(u32 => FieldType::U32, u64 => FieldType::U64, i64 => FieldType::I64);

/// A record of a graft point's buffer, as the kernel holds it. Implemented only through
/// `record!`, which checks at compile time that the type's fields are the row's (names, types,
/// order); encoding and decoding then follow the row's offsets.
pub trait Record: Copy + Default {
    /// The row in `abi::POINTS` and the buffer (`0` for `r1`).
    const POINT: usize;
    const REGION: usize;
    /// The row's fields, and the size of one record.
    const FIELDS: &'static [Field] = abi::POINTS[Self::POINT].regions[Self::REGION].fields;
    const SIZE: usize = abi::POINTS[Self::POINT].regions[Self::REGION].record_size as usize;
    /// The bits of field `i` of the row (padding reads 0).
    fn get(&self, i: usize) -> u64;
    /// Sets field `i` of the row from its bits (padding is ignored).
    fn set(&mut self, i: usize, bits: u64);
}

/// Declares that a struct is the record of a point's buffer: `"row field" => struct field:
/// type` for every field of the row, in the row's order (`_` for padding).
macro_rules! record {
    ($ty:ident: $point:expr, $region:expr, { $($name:literal => $field:tt : $fty:ty),* $(,)? }) => {
        impl Record for $ty {
            const POINT: usize = $point;
            const REGION: usize = $region;
            #[inline(always)]
            #[allow(unused_assignments)]
            fn get(&self, i: usize) -> u64 {
                let mut k = 0;
                $(
                    if i == k { return record!(@get self, $field, $fty); }
                    k += 1;
                )*
                0
            }
            #[inline(always)]
            #[allow(unused_assignments, unused_variables)]
            fn set(&mut self, i: usize, bits: u64) {
                let mut k = 0;
                $(
                    if i == k { record!(@set self, $field, $fty, bits); return; }
                    k += 1;
                )*
            }
        }
        const _: () = assert!(
            abi::record_matches($point, $region, &[$(($name, <$fty as FieldRepr>::TY)),*]),
            concat!(stringify!($ty), " does not match its graft point's record layout in graft_ir::abi")
        );
        impl $ty {
            /// Where the type stands in the ABI table (for the completeness test).
            pub const RECORD: RecordType = RecordType { name: stringify!($ty), point: $point, region: $region };
        }
    };
    (@get $s:ident, _, $fty:ty) => { 0 };
    (@get $s:ident, $f:ident, $fty:ty) => {{ let v: $fty = $s.$f; FieldRepr::to_bits(v) }};
    (@set $s:ident, _, $fty:ty, $bits:ident) => { () };
    (@set $s:ident, $f:ident, $fty:ty, $bits:ident) => { $s.$f = <$fty as FieldRepr>::from_bits($bits) };
}

/// A record type's place in the ABI table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordType {
    pub name: &'static str,
    pub point: usize,
    pub region: usize,
}

/// Every record type of the kernel (a point's buffer of records without one fails the
/// completeness test).
pub const RECORD_TYPES: &[RecordType] = &[VictimCandidate::RECORD, ReadAheadBlock::RECORD, ThreadCandidate::RECORD];

/// Writes `records` into `out` per the row's layout (`out` holds `records.len() * R::SIZE`
/// bytes; bytes of records that do not fit are not written). The row is a constant, so this
/// compiles to the stores a hand-written encoder would make.
#[inline(always)]
pub fn encode<R: Record>(records: &[R], out: &mut [u8]) {
    for (r, chunk) in records.iter().zip(out.chunks_exact_mut(R::SIZE)) {
        for (i, f) in R::FIELDS.iter().enumerate() {
            let (o, w) = (f.offset as usize, f.ty.size() as usize);
            if let Some(dst) = chunk.get_mut(o..o + w) {
                dst.copy_from_slice(&r.get(i).to_le_bytes()[..w]);
            }
        }
    }
}

/// Reads record `index` of `bytes` per the row's layout (`None` past the end).
#[inline(always)]
pub fn decode<R: Record>(bytes: &[u8], index: usize) -> Option<R> {
    let chunk = bytes.chunks_exact(R::SIZE).nth(index)?;
    let mut r = R::default();
    for (i, f) in R::FIELDS.iter().enumerate() {
        let (o, w) = (f.offset as usize, f.ty.size() as usize);
        let mut raw = [0u8; 8];
        raw[..w].copy_from_slice(chunk.get(o..o + w)?);
        r.set(i, u64::from_le_bytes(raw));
    }
    Some(r)
}

/// Bytes of records encoded on the stack; more candidates than fit take a heap buffer.
const STACK_RECORD_BYTES: usize = 16 * 24;

/// Runs `f` on `records` encoded per the row (on the stack when they fit).
#[inline(always)]
fn with_encoded<R: Record, T>(records: &[R], f: impl FnOnce(&mut [u8]) -> T) -> T {
    let len = records.len() * R::SIZE;
    if len <= STACK_RECORD_BYTES {
        let mut stack = [0u8; STACK_RECORD_BYTES];
        let buf = &mut stack[..len];
        encode(records, buf);
        f(buf)
    } else {
        let mut heap = alloc::vec![0u8; len];
        encode(records, &mut heap);
        f(&mut heap)
    }
}

/// A runnable thread, as `sched.pick_next` sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCandidate {
    pub tid: u32,
    /// bit1: woke from a wait since it last ran; bit2: was preempted.
    pub flags: u32,
    pub runtime_ns: u64,
    pub wakeups: u32,
}

record!(ThreadCandidate: abi::point::SCHED_PICK_NEXT, 0, {
    "tid" => tid: u32,
    "flags" => flags: u32,
    "runtime" => runtime_ns: u64,
    "wakeups" => wakeups: u32,
    "pad" => _: u32,
});

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
    let p = point(abi::point::SCHED_PICK_NEXT);
    let facts = ResultFacts { candidates: n as i64, ..ResultFacts::default() };
    let (idx, outcome) = with_encoded(threads, |records| {
        runtime::dispatch(
            p,
            group,
            txn,
            &[DataValue::I32(n as i32)],
            &mut [records],
            |v, _| p.accepts(i64::from(v), &facts),
            |_| 0,
        )
    });
    (idx as usize, outcome)
}

/// A resident page, as `vm.pick_victim` sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VictimCandidate {
    pub vaddr: u64,
    /// `VICTIM_REFERENCED | VICTIM_DIRTY | VICTIM_MARKED`.
    pub flags: u32,
    /// Clock steps since the page was last seen referenced.
    pub age: u32,
}

/// Flag bits of a `VictimCandidate`: referenced since the clock's front hand passed; dirty
/// (evicting it costs a write to swap); inside a range the process marked (`vm_mark`, e.g. its
/// buffer pool).
pub const VICTIM_REFERENCED: u32 = 1 << 0;
pub const VICTIM_DIRTY: u32 = 1 << 1;
pub const VICTIM_MARKED: u32 = 1 << 2;

/// Whether process `pid` has a `vm.pick_victim` graft: the fault path releases the task tables
/// and dispatches only then (without one, the clock's choice is made under the lock).
pub fn vm_grafted(pid: ProcessId) -> bool {
    runtime::attached(point(abi::point::VM_PICK_VICTIM), pid).is_some()
}

record!(VictimCandidate: abi::point::VM_PICK_VICTIM, 0, {
    "vaddr" => vaddr: u64,
    "flags" => flags: u32,
    "age" => age: u32,
});

/// A block to read ahead, as `fs.compute_ra`'s graft writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadAheadBlock {
    pub block: i64,
}

record!(ReadAheadBlock: abi::point::FS_COMPUTE_RA, 0, {
    "block" => block: i64,
});

/// The default eviction choice: the oldest unreferenced page, else the oldest page.
pub fn default_victim(cands: &[VictimCandidate]) -> usize {
    let oldest = |want_unreferenced: bool| {
        cands
            .iter()
            .enumerate()
            .filter(|(_, c)| !want_unreferenced || c.flags & VICTIM_REFERENCED == 0)
            .max_by_key(|(_, c)| c.age)
            .map(|(i, _)| i)
    };
    oldest(true).or_else(|| oldest(false)).unwrap_or(0)
}

/// `vm.pick_victim`: which of process `pid`'s resident pages to evict. Valid: an index into
/// `cands` (the graft can only choose among the pages the kernel offers).
pub fn vm_pick_victim(pid: ProcessId, txn: &mut TxnLog, cands: &[VictimCandidate]) -> (usize, Outcome) {
    let n = cands.len();
    let default = default_victim(cands) as i32;
    let p = point(abi::point::VM_PICK_VICTIM);
    // Records are encoded only for a graft (the common case costs the slot lookup alone).
    if runtime::attached(p, pid).is_none() {
        return (default as usize, Outcome::Default);
    }
    let facts = ResultFacts { candidates: n as i64, ..ResultFacts::default() };
    let (idx, outcome) = with_encoded(cands, |records| {
        runtime::dispatch(
            p,
            pid,
            txn,
            &[DataValue::I32(n as i32)],
            &mut [records],
            |v, _| p.accepts(i64::from(v), &facts),
            |_| default,
        )
    });
    (idx as usize, outcome)
}

/// `fs.compute_ra`: after a read of `[offset, offset + len)` of `file` (a file of `file_blocks`
/// blocks), the blocks to read ahead, written to `out`. Default: `default`, the read path's
/// sequential window (`fs::readahead`). Valid: a count within `out`, every block inside the
/// file.
#[allow(clippy::too_many_arguments)]
pub fn fs_compute_ra(
    pid: ProcessId,
    txn: &mut TxnLog,
    file: u64,
    offset: i64,
    len: i64,
    file_blocks: i64,
    default: &[i64],
    out: &mut [i64],
) -> (usize, Outcome) {
    let p = point(abi::point::FS_COMPUTE_RA);
    let cap = out.len();
    // The default's blocks (the caller's window), as many as fit.
    let fallback = |out: &mut [i64]| {
        let n = default.len().min(out.len());
        out[..n].copy_from_slice(&default[..n]);
        n
    };
    if runtime::attached(p, pid).is_none() {
        return (fallback(out), Outcome::Default);
    }
    let mut buf: Vec<u8> = Vec::new();
    if buf.try_reserve_exact(cap * ReadAheadBlock::SIZE).is_err() {
        return (fallback(out), Outcome::Default);
    }
    buf.resize(cap * ReadAheadBlock::SIZE, 0);
    let (count, outcome) = runtime::dispatch(
        p,
        pid,
        txn,
        &[DataValue::Handle(HandleKind::File, file), DataValue::I64(offset), DataValue::I64(len)],
        &mut [&mut buf[..]],
        |v, bufs| p.accepts(i64::from(v), &ResultFacts { out: &bufs[0][..], file_blocks, ..ResultFacts::default() }),
        |bufs| {
            let n = default.len().min(cap);
            let blocks: Vec<ReadAheadBlock> = default[..n].iter().map(|&block| ReadAheadBlock { block }).collect();
            encode(&blocks, &mut bufs[0][..]);
            n as i32
        },
    );
    let count = count as usize;
    for (i, o) in out.iter_mut().enumerate().take(count) {
        *o = decode::<ReadAheadBlock>(&buf, i).map_or(0, |r| r.block);
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

    /// Every point's buffers of records have a kernel record type (whose layout the compiler
    /// already checked against the row), and every record type has its row.
    #[test]
    fn every_point_has_its_kernel_pieces() {
        for p in abi::GRAFT_POINTS {
            for (r, spec) in p.regions.iter().enumerate() {
                if spec.has_records() {
                    let t = RECORD_TYPES.iter().find(|t| t.point == p.index && t.region == r);
                    assert!(t.is_some(), "{} buffer {} has no kernel record type (declare one with record!)", p.name, spec.name);
                }
            }
        }
        for t in RECORD_TYPES {
            let spec = &abi::GRAFT_POINTS[t.point].regions[t.region];
            assert!(spec.has_records(), "{} describes a byte buffer", t.name);
        }
    }

    /// The generic encoder writes what the row says, byte for byte (the layout the graft reads).
    #[test]
    fn records_encode_per_the_row() {
        let t = ThreadCandidate { tid: 0x0102_0304, flags: 6, runtime_ns: 0x1122_3344_5566_7788, wakeups: 9 };
        let mut buf = [0xffu8; 24];
        encode(&[t], &mut buf);
        let mut want = Vec::new();
        want.extend_from_slice(&t.tid.to_le_bytes());
        want.extend_from_slice(&t.flags.to_le_bytes());
        want.extend_from_slice(&t.runtime_ns.to_le_bytes());
        want.extend_from_slice(&t.wakeups.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(&buf[..], &want[..]);
        assert_eq!(decode::<ThreadCandidate>(&buf, 0), Some(t));
        assert_eq!(decode::<ThreadCandidate>(&buf, 1), None);
        let v = VictimCandidate { vaddr: 0xdead_b000, flags: 5, age: 77 };
        let mut buf = [0u8; 32];
        encode(&[v, v], &mut buf);
        assert_eq!(&buf[16..24], &0xdead_b000u64.to_le_bytes());
        assert_eq!(&buf[24..28], &5u32.to_le_bytes());
        assert_eq!(decode::<VictimCandidate>(&buf, 1), Some(v));
        assert_eq!(ThreadCandidate::SIZE, 24);
        assert_eq!(VictimCandidate::SIZE, 16);
        assert_eq!(ReadAheadBlock::SIZE, 8);
    }

    #[test]
    fn default_victim_prefers_old_unreferenced_pages() {
        let c = |flags, age| VictimCandidate { vaddr: 0, flags, age };
        assert_eq!(default_victim(&[c(1, 90), c(0, 10), c(0, 30), c(1, 5)]), 2);
        assert_eq!(default_victim(&[c(1, 9), c(1, 30)]), 1);
        assert_eq!(default_victim(&[]), 0);
    }
}
