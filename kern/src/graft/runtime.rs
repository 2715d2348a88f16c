//! Loaded grafts, the slots of graft points, and dispatch.
//!
//! A graft is loaded from a blob (decoded, verified, prepared for execution), then attached to
//! its graft point for its installer: the point's slot for that process now holds the graft
//! instead of the default. Dispatch of a point is: look up the slot (the indirection); no graft
//! means the default answers. Otherwise begin a transaction, give the call its fuel, run the
//! graft, validate its result and commit; on any abort (trap, fuel, limit, lock time-out, invalid
//! result) undo the transaction, count the abort by reason, and let the default answer. A graft
//! that keeps aborting is detached.
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use graft_ir::abi::{self, GraftPoint};
#[cfg(not(target_os = "none"))]
use graft_ir::abi::Callable;
use graft_ir::interp::DataValue;
#[cfg(not(target_os = "none"))]
use graft_ir::interp;
#[cfg(not(target_os = "none"))]
use graft_ir::interp::Host;
use graft_ir::{AbortReason, DecodeError, Verified, VerifyErrors};
use spin::{Mutex, Once};

use crate::sync::ReadMostly;

use super::callables::{self, Registry};
#[cfg(not(target_os = "none"))]
use super::callables::CallCtx;
use super::state::{self, ProcessId};
use super::txn::{TxnError, TxnLog};

/// A loaded graft's number, as user space names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GraftId(pub u32);

impl fmt::Display for GraftId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "graft {}", self.0)
    }
}

/// Limits applied to every call of a graft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel of one call: the module's request, capped by the kernel.
    pub fuel: u64,
    /// Bytes of `mem.alloc` memory the installer's grafts may hold.
    pub memory: u64,
    /// Aborts after which the graft is detached.
    pub max_aborts: u32,
    /// Wall-clock time one call may take (the watchdog), in nanoseconds.
    pub wall_ns: u64,
}

/// Fuel one call may have: graft-ir's limit, which the verifier enforces (a module asking for
/// more is refused at load, never silently clamped).
pub const MAX_FUEL_PER_CALL: u64 = graft_ir::limits::MAX_FUEL;
pub const DEFAULT_MAX_ABORTS: u32 = 5;
/// Wall-clock limit of one call (checked by the timer-driven watchdog, so with a tick's slack).
pub const DEFAULT_WALL_NS: u64 = 100_000_000;

/// Per-graft statistics.
#[derive(Default)]
pub struct Stats {
    /// Calls that committed (every other call aborted: calls are commits plus aborts).
    pub commits: AtomicU64,
    /// Aborts by `AbortReason::code()` (index 0 unused).
    pub aborts: [AtomicU64; 16],
    /// Fuel spent by all calls (committed or not): the graft's work in IR instructions.
    pub fuel_used: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub commits: u64,
    pub aborts: Vec<(AbortReason, u64)>,
    pub fuel_used: u64,
}

impl StatsSnapshot {
    pub fn total_aborts(&self) -> u64 {
        self.aborts.iter().map(|(_, n)| n).sum()
    }
    pub fn aborts_of(&self, reason: AbortReason) -> u64 {
        self.aborts.iter().filter(|(r, _)| r.code() == reason.code()).map(|(_, n)| n).sum()
    }
}

/// What a call of a graft uses and changes, behind one lock (one call of a graft at a time).
struct CallState {
    /// The data region `r0` (persists across calls; private to the graft), with the context
    /// prepared for the machine code in the kernel.
    #[cfg(target_os = "none")]
    inst: super::jit::Instance,
    #[cfg(not(target_os = "none"))]
    data: Vec<u8>,
    limits: Limits,
}

pub struct Graft {
    pub id: GraftId,
    pub owner: ProcessId,
    pub point: &'static GraftPoint,
    verified: Verified,
    /// Its machine code and data (in the kernel; host builds run the reference interpreter).
    state: Mutex<CallState>,
    pub stats: Stats,
    attached: AtomicBool,
    /// The process whose slot holds the graft while attached.
    target: AtomicU32,
    abort_count: AtomicU32,
    /// The kernel memory charged to the owner for this graft, given back when it goes.
    _charge: state::Charge,
}

impl Graft {
    pub fn stats(&self) -> StatsSnapshot {
        let aborts: Vec<(AbortReason, u64)> = AbortReason::ALL
            .iter()
            .filter_map(|r| {
                let n = self.stats.aborts[r.code() as usize].load(Ordering::Relaxed);
                (n > 0).then_some((*r, n))
            })
            .collect();
        let commits = self.stats.commits.load(Ordering::Relaxed);
        StatsSnapshot {
            // Every call ends in a commit or an abort.
            calls: commits + aborts.iter().map(|(_, n)| n).sum::<u64>(),
            commits,
            aborts,
            fuel_used: self.stats.fuel_used.load(Ordering::Relaxed),
        }
    }

    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// The verified module the graft was loaded from.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    pub fn limits(&self) -> Limits {
        self.state.lock().limits
    }

    /// Changes the graft's limits.
    pub fn set_limits(&self, limits: Limits) {
        let mut st = self.state.lock();
        st.limits = limits;
        #[cfg(target_os = "none")]
        st.inst.set_limits(limits.memory, limits.wall_ns);
    }

    /// Bytes of machine code the graft was compiled to (0 when interpreted).
    pub fn code_size(&self) -> usize {
        #[cfg(target_os = "none")]
        {
            self.state.lock().inst.code_size()
        }
        #[cfg(not(target_os = "none"))]
        {
            0
        }
    }
}

#[derive(Debug)]
pub enum LoadError {
    Decode(DecodeError),
    Verify(VerifyErrors),
    /// The graft imports a callable the kernel does not implement yet.
    Unimplemented(&'static str),
    /// The process has loaded as many grafts as it may.
    TooMany,
    /// The verified module could not be compiled (or placed in memory).
    Compile(alloc::string::String),
    /// The blob is larger than `MAX_KERNEL_BLOB`.
    TooLarge(usize),
    /// The process's kernel-memory budget, or the kernel's free memory, refused the load.
    Memory(state::ChargeError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LoadError::Decode(e) => write!(f, "bad graft blob: {e}"),
            LoadError::Verify(e) => write!(f, "graft rejected by the verifier:\n{e}"),
            LoadError::Unimplemented(n) => write!(f, "the kernel does not implement callable `{n}` yet"),
            LoadError::TooMany => write!(f, "too many grafts loaded by this process"),
            LoadError::Compile(e) => write!(f, "{e}"),
            LoadError::TooLarge(n) => write!(f, "graft blob of {n} bytes; the kernel takes at most {MAX_KERNEL_BLOB}"),
            LoadError::Memory(e) => write!(f, "graft not loaded: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    NoSuchGraft(GraftId),
    /// Only the installer may attach its graft.
    NotOwner(GraftId),
    /// Another graft of the process already holds the point's slot.
    SlotTaken { point: &'static str, by: GraftId },
    NotAttached,
    /// No memory for the slot.
    NoMemory,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            AttachError::NoSuchGraft(g) => write!(f, "no {g}"),
            AttachError::NotOwner(g) => write!(f, "{g} belongs to another process"),
            AttachError::SlotTaken { point, by } => write!(f, "{point} already has {by} attached"),
            AttachError::NotAttached => write!(f, "no graft is attached there"),
            AttachError::NoMemory => write!(f, "no kernel memory for the slot"),
        }
    }
}

pub const MAX_GRAFTS_PER_PROCESS: usize = 32;
/// Largest blob the kernel accepts: graft-ir's limit, which `graftc build` enforces too.
pub const MAX_KERNEL_BLOB: usize = graft_ir::limits::MAX_BLOB_SIZE;

struct Tables {
    grafts: BTreeMap<GraftId, Arc<Graft>>,
    next_id: u32,
}

static TABLES: Mutex<Tables> = Mutex::new(Tables { grafts: BTreeMap::new(), next_id: 1 });

/// Most value parameters a graft point has (the JIT's trampoline passes this many).
const ENTRY_ARGS: usize = 3;
#[cfg(target_os = "none")]
const _: () = assert!(ENTRY_ARGS == graft_jit::ENTRY_ARGS);

/// Most graft points the slot tables have room for.
const MAX_POINTS: usize = 8;
const _: () = assert!(abi::GRAFT_POINTS.len() <= MAX_POINTS);

/// The slots of one graft point: (process, attached graft) for each process whose slot holds a
/// graft (a handful at most: scanned, not searched), and how many there are, which lets the
/// common case of a point nobody grafted skip the lock. Dispatch holds the read side for the
/// whole call, so the graft it runs stays in place without a reference count.
struct PointSlots {
    count: AtomicU32,
    slots: ReadMostly<Vec<(ProcessId, Arc<Graft>)>>,
}

static SLOTS: [PointSlots; MAX_POINTS] =
    [const { PointSlots { count: AtomicU32::new(0), slots: ReadMostly::new(Vec::new()) } }; MAX_POINTS];

/// Changes the slots of `point` (taken inside `with_tables`: the lock order is tables, then
/// slots).
fn with_slots<R>(point: &GraftPoint, f: impl FnOnce(&mut Vec<(ProcessId, Arc<Graft>)>) -> R) -> Option<R> {
    let ps = SLOTS.get(point.index)?;
    let mut slots = ps.slots.write();
    let r = f(&mut slots);
    ps.count.store(slots.len() as u32, Ordering::Relaxed);
    Some(r)
}
static REGISTRY: Once<Registry> = Once::new();

fn with_tables<R>(f: impl FnOnce(&mut Tables) -> R) -> R {
    crate::sync::without_interrupts(|| f(&mut TABLES.lock()))
}

/// The callables, registered on first use (signatures checked against the ABI table).
pub fn registry() -> &'static Registry {
    REGISTRY.call_once(|| match callables::kernel_registry() {
        Ok(r) => {
            for c in r.missing() {
                log::debug!("callable {} is not implemented yet; grafts importing it are refused", c.name);
            }
            r
        }
        // A mismatch between the table and the kernel is a build defect, found at the first boot.
        Err(e) => panic!("callable registry: {e}"),
    })
}

/// Kernel memory a loaded graft holds besides its module, data and code (its `Graft`, the
/// table entry, the instance's context, the statistics), charged with it.
pub const GRAFT_OVERHEAD: u64 = 4096;
/// Heap bytes verification and compilation may use at their peak, per IR instruction and per
/// block of the module, and at least (measured by `load_peak_memory_is_charged` in the kernel's
/// tests: the charge is an upper bound of the peak): charged to the loading process for the
/// duration of the load.
pub const COMPILE_BYTES_PER_INST: u64 = 2048;
pub const COMPILE_BYTES_PER_BLOCK: u64 = 16 * 1024;
pub const COMPILE_BYTES_MIN: u64 = 512 * 1024;

/// What a load charges before it decodes: the decoded module (kept as the graft's verified
/// module) and the graft's fixed overhead.
pub fn decode_charge(blob_len: usize) -> u64 {
    (blob_len as u64).saturating_mul(graft_ir::limits::MAX_DECODE_EXPANSION as u64) + GRAFT_OVERHEAD
}

/// What a load charges while verification and compilation run, for a module of `insts`
/// instructions in `blocks` blocks.
pub fn compile_charge(insts: usize, blocks: usize) -> u64 {
    (insts as u64 * COMPILE_BYTES_PER_INST + blocks as u64 * COMPILE_BYTES_PER_BLOCK).max(COMPILE_BYTES_MIN)
}

/// The data region, zero-filled past the module's initial bytes, allocated fallibly.
fn data_region(module: &graft_ir::Module) -> Option<Vec<u8>> {
    let size = module.resources.data_size as usize;
    let mut d = Vec::new();
    d.try_reserve_exact(size).ok()?;
    d.resize(size, 0);
    let n = module.data.len().min(size);
    d[..n].copy_from_slice(&module.data[..n]);
    Some(d)
}

/// Runs `f`, whose memory was charged before it started: fault injection leaves it alone
/// (Cranelift and the verifier cannot report a failed allocation; the charge made sure the
/// kernel has room for them).
fn admitted<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_os = "none")]
    {
        crate::memory::admitted(f)
    }
    #[cfg(not(target_os = "none"))]
    {
        f()
    }
}

/// Decodes, verifies and prepares a graft for `owner`, charging everything it allocates to
/// `owner` first (`state::charge`): the decoded module and the graft's overhead before
/// decoding (`decode_charge`), verification and compilation's peak while they run
/// (`compile_charge`), the data region and the code for as long as the graft stays loaded.
pub fn load(owner: ProcessId, blob: &[u8]) -> Result<GraftId, LoadError> {
    if blob.len() > MAX_KERNEL_BLOB {
        return Err(LoadError::TooLarge(blob.len()));
    }
    if with_tables(|t| t.grafts.values().filter(|g| g.owner == owner).count()) >= MAX_GRAFTS_PER_PROCESS {
        return Err(LoadError::TooMany);
    }
    let mut charge = state::charge(owner, decode_charge(blob.len())).map_err(LoadError::Memory)?;
    let module = admitted(|| graft_ir::decode(blob)).map_err(LoadError::Decode)?;
    let blocks = module.functions.iter().map(|f| f.blocks.len()).sum();
    let working = state::charge(owner, compile_charge(module.inst_count(), blocks)).map_err(LoadError::Memory)?;
    let verified = admitted(|| graft_ir::verify(module)).map_err(LoadError::Verify)?;
    let reg = admitted(registry);
    if let Some(c) = verified.callables().iter().find(|c| !reg.implemented(c)) {
        return Err(LoadError::Unimplemented(c.name));
    }
    let res = verified.module().resources;
    let limits = Limits {
        fuel: res.fuel,
        memory: state::DEFAULT_MEMORY_LIMIT,
        max_aborts: DEFAULT_MAX_ABORTS,
        wall_ns: DEFAULT_WALL_NS,
    };
    charge.resize(charge.bytes() + u64::from(res.data_size)).map_err(LoadError::Memory)?;
    let data = data_region(verified.module()).ok_or(LoadError::Memory(state::ChargeError::NoMemory))?;
    let point = verified.point();
    #[cfg(target_os = "none")]
    let jit = admitted(|| super::jit::JitCode::compile(&verified).map_err(|e| LoadError::Compile(alloc::format!("{e}"))))?;
    drop(working);
    #[cfg(target_os = "none")]
    charge
        .resize(charge.bytes() + (jit.code_size() as u64).div_ceil(4096) * 4096)
        .map_err(LoadError::Memory)?;
    #[cfg(target_os = "none")]
    let mut inst = admitted(|| jit.instance(data, owner, limits.memory, registry()))
        .ok_or_else(|| LoadError::Compile("the data region does not match the compiled code".into()))?;
    #[cfg(target_os = "none")]
    inst.set_limits(limits.memory, limits.wall_ns);
    let state = CallState {
        #[cfg(target_os = "none")]
        inst,
        #[cfg(not(target_os = "none"))]
        data,
        limits,
    };
    // The graft and its table entry are small and covered by `GRAFT_OVERHEAD`.
    admitted(|| {
        with_tables(|t| {
            if t.grafts.values().filter(|g| g.owner == owner).count() >= MAX_GRAFTS_PER_PROCESS {
                return Err(LoadError::TooMany);
            }
            let id = GraftId(t.next_id);
            t.next_id += 1;
            let graft = Graft {
                id,
                owner,
                point,
                verified,
                state: Mutex::new(state),
                stats: Stats::default(),
                attached: AtomicBool::new(false),
                target: AtomicU32::new(0),
                abort_count: AtomicU32::new(0),
                _charge: charge,
            };
            t.grafts.insert(id, Arc::new(graft));
            Ok(id)
        })
    })
}

/// Loaded grafts, and slots holding one (for `kstat`: both return to their baseline when the
/// processes that made them end).
pub fn table_sizes() -> (usize, usize) {
    let grafts = with_tables(|t| t.grafts.len());
    let slots = SLOTS.iter().map(|ps| ps.count.load(Ordering::Relaxed) as usize).sum();
    (grafts, slots)
}

pub fn graft(id: GraftId) -> Option<Arc<Graft>> {
    with_tables(|t| t.grafts.get(&id).cloned())
}

/// Puts graft `id` into its point's slot for its installer `owner`.
pub fn attach(owner: ProcessId, id: GraftId) -> Result<(), AttachError> {
    attach_for(owner, id, owner)
}

/// Puts graft `id` of `owner` into its point's slot for process `target` (the caller checks
/// that `owner` may act on `target`). The graft keeps its installer's rights and charges.
pub fn attach_for(owner: ProcessId, id: GraftId, target: ProcessId) -> Result<(), AttachError> {
    with_tables(|t| {
        let g = t.grafts.get(&id).cloned().ok_or(AttachError::NoSuchGraft(id))?;
        if g.owner != owner {
            return Err(AttachError::NotOwner(id));
        }
        if g.is_attached() {
            return Err(AttachError::SlotTaken { point: g.point.name, by: id });
        }
        let point = g.point;
        with_slots(point, |slots| {
            if let Some((_, other)) = slots.iter().find(|(p, _)| *p == target) {
                return Err(AttachError::SlotTaken { point: point.name, by: other.id });
            }
            slots.try_reserve(1).map_err(|_| AttachError::NoMemory)?;
            g.attached.store(true, Ordering::Relaxed);
            g.target.store(target.0, Ordering::Relaxed);
            slots.push((target, g));
            Ok(())
        })
        .unwrap_or(Err(AttachError::NoSuchGraft(id)))
    })
}

/// Ids of the grafts `owner` has loaded.
pub fn grafts_of(owner: ProcessId) -> Vec<GraftId> {
    with_tables(|t| t.grafts.values().filter(|g| g.owner == owner).map(|g| g.id).collect())
}

/// `grafts_of` for system calls: `None` if there is no memory for the list.
pub fn try_grafts_of(owner: ProcessId) -> Option<Vec<GraftId>> {
    let mut ids = Vec::new();
    ids.try_reserve_exact(MAX_GRAFTS_PER_PROCESS).ok()?;
    with_tables(|t| {
        for g in t.grafts.values().filter(|g| g.owner == owner).take(MAX_GRAFTS_PER_PROCESS) {
            ids.push(g.id);
        }
    });
    Some(ids)
}

/// Empties the slot graft `id` holds; the graft stays loaded (its statistics remain readable).
pub fn detach(owner: ProcessId, id: GraftId) -> Result<(), AttachError> {
    with_tables(|t| {
        let g = t.grafts.get(&id).cloned().ok_or(AttachError::NoSuchGraft(id))?;
        if g.owner != owner {
            return Err(AttachError::NotOwner(id));
        }
        let target = ProcessId(g.target.load(Ordering::Relaxed));
        with_slots(g.point, |slots| match slots.iter().position(|(p, s)| *p == target && s.id == id) {
            Some(i) => {
                slots.swap_remove(i);
                g.attached.store(false, Ordering::Relaxed);
                Ok(())
            }
            None => Err(AttachError::NotAttached),
        })
        .unwrap_or(Err(AttachError::NotAttached))
    })
}

/// Empties every slot held for process `target` (it exited): the grafts stay loaded, detached.
pub fn detach_all_for(target: ProcessId) {
    with_tables(|_| {
        for point in abi::GRAFT_POINTS {
            with_slots(point, |slots| {
                slots.retain(|(p, g)| {
                    let keep = *p != target;
                    if !keep {
                        g.attached.store(false, Ordering::Relaxed);
                    }
                    keep
                })
            });
        }
    })
}

/// Unloads every graft `owner` loaded, one at a time and without allocating (for the end of a
/// process, which must not fail). Returns how many.
pub fn unload_all(owner: ProcessId) -> usize {
    let mut n = 0;
    while let Some(id) = with_tables(|t| t.grafts.values().find(|g| g.owner == owner).map(|g| g.id)) {
        if unload(owner, id).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// Unloads graft `id` (detaching it first).
pub fn unload(owner: ProcessId, id: GraftId) -> Result<(), AttachError> {
    let _ = detach(owner, id);
    with_tables(|t| match t.grafts.get(&id) {
        Some(g) if g.owner == owner => {
            t.grafts.remove(&id);
            Ok(())
        }
        Some(_) => Err(AttachError::NotOwner(id)),
        None => Err(AttachError::NoSuchGraft(id)),
    })
}

/// The graft in `point`'s slot for `owner`, if any.
#[inline]
pub fn attached(point: &GraftPoint, owner: ProcessId) -> Option<Arc<Graft>> {
    let ps = SLOTS.get(point.index)?;
    if ps.count.load(Ordering::Relaxed) == 0 {
        return None;
    }
    find_slot(ps, owner)
}

#[inline(never)]
fn find_slot(ps: &PointSlots, owner: ProcessId) -> Option<Arc<Graft>> {
    ps.slots.read().iter().find(|(p, _)| *p == owner).map(|(_, g)| g.clone())
}

/// What one dispatch did (for tests and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No graft attached: the default answered.
    Default,
    Committed,
    Aborted(AbortReason),
}

impl Outcome {
    /// 0 committed, 1 default, else the packed abort reason (never 0 or 1).
    #[inline(always)]
    fn to_u64(self) -> u64 {
        match self {
            Outcome::Committed => 0,
            Outcome::Default => 1,
            Outcome::Aborted(r) => r.to_u64(),
        }
    }

    #[inline(always)]
    fn from_u64(packed: u64) -> Outcome {
        match packed {
            0 => Outcome::Committed,
            1 => Outcome::Default,
            p => Outcome::Aborted(AbortReason::from_u64(p).unwrap_or(AbortReason::HostContract)),
        }
    }
}

/// Connects the interpreter's import calls to the kernel's callables.
#[cfg(not(target_os = "none"))]
struct KernelHost<'a, 'b> {
    ctx: CallCtx<'a>,
    registry: &'b Registry,
    args: Vec<u64>,
}

#[cfg(not(target_os = "none"))]
impl Host for KernelHost<'_, '_> {
    fn call(&mut self, c: &'static Callable, args: &[DataValue]) -> Result<Option<DataValue>, AbortReason> {
        self.args.clear();
        self.args.extend(args.iter().map(|a| a.to_bits()));
        let bits = self.registry.call(c, &mut self.ctx, &self.args)?;
        Ok(c.ret.map(|t| DataValue::from_bits(t, bits)))
    }
}

/// Statements compiled only into the benchmark build (the phase stamps of `phases`).
#[cfg(all(target_os = "none", feature = "bench-paths"))]
macro_rules! phase {
    ($($t:tt)*) => { $($t)* };
}
#[cfg(not(all(target_os = "none", feature = "bench-paths")))]
macro_rules! phase {
    ($($t:tt)*) => {};
}

/// Where a graft call's guest instructions go, per graft point, on the kernel's real paths
/// (benchmark builds only): VINO's rows. Indir: finding the process's slot; Begin: starting
/// the transaction; Graft: the graft's code; Check: validating its answer; Commit; Abort (the
/// undo and the bookkeeping of an abort).
#[cfg(all(target_os = "none", feature = "bench-paths"))]
pub mod phases {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    pub const INDIR: usize = 0;
    pub const BEGIN: usize = 1;
    pub const GRAFT: usize = 2;
    pub const CHECK: usize = 3;
    pub const COMMIT: usize = 4;
    pub const ABORT: usize = 5;
    pub const CALLS: usize = 6;
    pub const ABORTS: usize = 7;
    const N: usize = 8;

    static ACC: [[AtomicU64; N]; super::MAX_POINTS] = [const { [const { AtomicU64::new(0) }; N] }; super::MAX_POINTS];
    /// The stamp at the start of the dispatch in progress, and its indirection's cost (one
    /// CPU): counted when the call commits.
    pub static T0: AtomicU64 = AtomicU64::new(0);
    pub static INDIR_COST: AtomicU64 = AtomicU64::new(0);

    /// A committed call's phases.
    pub fn committed(point: usize, begin: u64, graft: u64, check: u64, commit: u64) {
        add(point, INDIR, INDIR_COST.load(Relaxed));
        add(point, BEGIN, begin);
        add(point, GRAFT, graft);
        add(point, CHECK, check);
        add(point, COMMIT, commit);
        add(point, CALLS, 1);
    }

    #[inline(always)]
    pub fn stamp() -> u64 {
        crate::time::rdtsc()
    }

    #[inline(always)]
    pub fn add(point: usize, what: usize, v: u64) {
        if let Some(row) = ACC.get(point) {
            row[what].fetch_add(v, Relaxed);
        }
    }

    /// The sums for `point` (see the indices above), and clears them.
    pub fn take(point: usize) -> [u64; N] {
        let mut out = [0; N];
        if let Some(row) = ACC.get(point) {
            for (o, a) in out.iter_mut().zip(row) {
                *o = a.swap(0, Relaxed);
            }
        }
        out
    }
}

/// Runs `point` for `owner`: the attached graft inside a transaction, or `default`.
///
/// `args` are the point's value parameters, `buffers` its regions `r1..`; `validate` checks the
/// graft's result (with the buffers as the graft left them). Returns the answer and what happened.
#[inline]
pub fn dispatch(
    point: &GraftPoint,
    owner: ProcessId,
    txn: &mut TxnLog,
    args: &[DataValue],
    buffers: &mut [&mut [u8]],
    validate: impl FnOnce(i32, &[&mut [u8]]) -> bool,
    default: impl FnOnce(&mut [&mut [u8]]) -> i32,
) -> (i32, Outcome) {
    phase!(phases::T0.store(phases::stamp(), Ordering::Relaxed););
    // The indirection: a point nobody grafted costs one load.
    let Some(ps) = SLOTS.get(point.index).filter(|ps| ps.count.load(Ordering::Relaxed) != 0) else {
        return (default(buffers), Outcome::Default);
    };
    // The arguments' bits (at the call site their types are known, so this folds away).
    let mut bits = [0u64; ENTRY_ARGS];
    for (b, a) in bits.iter_mut().zip(args) {
        *b = a.to_bits();
    }
    // The typed wrappers in `points` pass exactly the point's parameters. (A slot past them
    // would read 0: never memory outside the call.)
    debug_assert_eq!(args.len(), point.params.len(), "{}: wrong argument count", point.name);
    let (answer, outcome) = call_slot(ps, owner, txn, &bits, buffers, validate, default);
    (answer, Outcome::from_u64(outcome))
}

/// The graft in `ps` for `owner`, if any, run inside a transaction; else `default`. Returns
/// the answer and the outcome packed by `Outcome::to_u64` (two registers, not memory).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn call_slot(
    ps: &PointSlots,
    owner: ProcessId,
    txn: &mut TxnLog,
    args: &[u64; ENTRY_ARGS],
    buffers: &mut [&mut [u8]],
    validate: impl FnOnce(i32, &[&mut [u8]]) -> bool,
    default: impl FnOnce(&mut [&mut [u8]]) -> i32,
) -> (i32, u64) {
    let slots = ps.slots.read();
    let Some((_, graft)) = slots.iter().find(|(p, _)| *p == owner) else {
        drop(slots);
        return (default(buffers), Outcome::Default.to_u64());
    };
    phase!(phases::INDIR_COST.store(phases::stamp().wrapping_sub(phases::T0.load(Ordering::Relaxed)), Ordering::Relaxed););
    match run_in_transaction(graft, txn, args, buffers, validate) {
        Ok(v) => (v, Outcome::Committed.to_u64()),
        Err(reason) => {
            // Counting the abort may detach the graft: leave the slots first.
            let graft = graft.clone();
            drop(slots);
            aborted(&graft, reason);
            (default(buffers), Outcome::Aborted(reason).to_u64())
        }
    }
}

/// Counts an abort, and detaches a graft that keeps aborting.
#[cold]
fn aborted(graft: &Graft, reason: AbortReason) {
    graft.stats.aborts[reason.code() as usize % 16].fetch_add(1, Ordering::Relaxed);
    let n = graft.abort_count.fetch_add(1, Ordering::Relaxed) + 1;
    log::debug!("{} ({}) aborted: {reason}", graft.id, graft.point.name);
    if n >= graft.limits().max_aborts && detach(graft.owner, graft.id).is_ok() {
        log::warn!("{} detached from {} after {n} aborts (last: {reason})", graft.id, graft.point.name);
    }
}

/// Runs the graft's entry: its machine code in the kernel, the reference interpreter on the
/// host (where the runtime's logic is tested). Returns the result and the fuel spent.
#[inline(always)]
#[cfg_attr(target_os = "none", allow(unused_variables))]
fn execute(
    graft: &Graft,
    st: &mut CallState,
    txn: &mut TxnLog,
    args: &[u64; ENTRY_ARGS],
    buffers: &mut [&mut [u8]],
) -> (Result<i32, AbortReason>, u64) {
    let mut fuel = st.limits.fuel;
    #[cfg(target_os = "none")]
    let r = super::jit::call(&mut st.inst, txn, args, buffers, &mut fuel);
    #[cfg(not(target_os = "none"))]
    let r = {
        // The arguments as typed values, from the point's signature.
        let params = graft.point.params;
        let args: Vec<DataValue> = params.iter().zip(args).map(|(p, &b)| DataValue::from_bits(p.ty, b)).collect();
        let ctx = CallCtx { owner: graft.owner, txn, memory_limit: st.limits.memory };
        // The data region then the point's buffers, without allocating on the call path.
        const MAX_BUFFERS: usize = 4;
        if buffers.len() > MAX_BUFFERS {
            return (Err(AbortReason::HostContract), 0);
        }
        let count = 1 + buffers.len();
        let mut regions: [&mut [u8]; 1 + MAX_BUFFERS] = Default::default();
        regions[0] = &mut st.data[..];
        for (slot, b) in regions[1..].iter_mut().zip(buffers.iter_mut()) {
            *slot = &mut **b;
        }
        let mut host = KernelHost { ctx, registry: registry(), args: Vec::new() };
        match interp::run(&graft.verified, graft_ir::Module::ENTRY, &args, &mut regions[..count], &mut fuel, &mut host) {
            Ok(Some(DataValue::I32(v))) => Ok(v),
            Ok(_) => Err(AbortReason::HostContract),
            Err(e) => Err(e),
        }
    };
    (r, st.limits.fuel - fuel)
}

#[inline(always)]
fn run_in_transaction(
    graft: &Graft,
    txn: &mut TxnLog,
    args: &[u64; ENTRY_ARGS],
    buffers: &mut [&mut [u8]],
    validate: impl FnOnce(i32, &[&mut [u8]]) -> bool,
) -> Result<i32, AbortReason> {
    phase!(let t1 = phases::stamp(););
    if txn.begin().is_err() {
        return Err(AbortReason::ResourceLimit);
    }
    phase!(let t2 = phases::stamp(););
    let locks = &callables::LOCKS;
    let outcome = {
        // One call of a graft at a time; only another CPU running the same graft could hold it.
        let mut st = match graft.state.try_lock() {
            Some(st) => st,
            None => graft.state.lock(),
        };
        let (r, spent) = execute(graft, &mut st, txn, args, buffers);
        graft.stats.fuel_used.fetch_add(spent, Ordering::Relaxed);
        r
    };
    phase!(let t3 = phases::stamp(););
    let outcome = outcome.and_then(|v| if validate(v, buffers) { Ok(v) } else { Err(AbortReason::InvalidResult) });
    phase!(let t4 = phases::stamp(););
    match outcome {
        Ok(v) => match txn.commit(locks) {
            Ok(()) => {
                graft.stats.commits.fetch_add(1, Ordering::Relaxed);
                phase!(phases::committed(graft.point.index, t2 - t1, t3 - t2, t4 - t3, phases::stamp() - t4););
                Ok(v)
            }
            // A waiter timed out on a lock this thread holds: the commit aborted instead.
            Err(TxnError::Doomed) => Err(AbortReason::LockTimeout),
            Err(_) => Err(AbortReason::HostContract),
        },
        Err(reason) => {
            if let Err(e) = txn.abort(locks) {
                log::error!("abort of {} failed: {e}", graft.id);
            }
            phase!(phases::add(graft.point.index, phases::ABORT, phases::stamp() - t4); phases::add(graft.point.index, phases::ABORTS, 1););
            Err(reason)
        }
    }
}

/// The most expensive modules the limits allow a load to verify and compile, for the benchmark
/// (`./run.sh bench` prints the worst load) and the charge calibration test: each shape grown
/// until its blob reaches `MAX_KERNEL_BLOB`.
#[cfg(any(test, feature = "ktest", feature = "bench"))]
pub mod worst_case {
    use alloc::vec::Vec;

    use graft_ir::builder::ModuleBuilder;
    use graft_ir::{IntCC, Module, Signature, Type};

    use super::MAX_KERNEL_BLOB;

    /// Makes a module of a shape with about `n` units of it.
    pub type Shape = fn(usize) -> Module;

    /// The shapes, by name.
    pub const SHAPES: [(&str, Shape); 4] = [
        ("straight-line arithmetic, many live values", straight),
        ("chain of blocks", chain),
        ("branch diamonds", diamonds),
        ("many small functions", functions),
    ];

    fn functions(n: usize) -> Module {
        let mut mb = builder();
        let entry = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
        let others: Vec<_> = (0..n).map(|_| mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)))).collect();
        {
            let mut fb = mb.function(entry);
            let p = fb.params()[0];
            let r = others.first().and_then(|&f| fb.call(f, &[p])).unwrap_or(p);
            fb.ret(Some(r));
        }
        for &f in &others {
            let mut fb = mb.function(f);
            let p = fb.params()[0];
            let r = fb.iadd(p, p);
            fb.ret(Some(r));
        }
        mb.finish()
    }

    fn builder() -> ModuleBuilder {
        ModuleBuilder::new("sched.pick_next", 8, 1000)
    }

    fn straight(n: usize) -> Module {
        let mut mb = builder();
        let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
        let mut fb = mb.function(f);
        let mut vals = fb.params();
        for i in 0..n {
            let a = vals[vals.len() - 1];
            let b = vals[i / 2];
            let v = fb.iadd(a, b);
            vals.push(v);
        }
        let last = vals[vals.len() - 1];
        fb.ret(Some(last));
        mb.finish()
    }

    fn chain(n: usize) -> Module {
        let mut mb = builder();
        let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
        let mut fb = mb.function(f);
        let mut v = fb.params()[0];
        for _ in 0..n {
            let next = fb.create_block();
            let p = fb.append_block_param(next, Type::I32);
            fb.jump(next, &[v]);
            fb.switch_to_block(next);
            v = p;
        }
        fb.ret(Some(v));
        mb.finish()
    }

    fn diamonds(n: usize) -> Module {
        let mut mb = builder();
        let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
        let mut fb = mb.function(f);
        let mut v = fb.params()[0];
        for _ in 0..n {
            let left = fb.create_block();
            let right = fb.create_block();
            let join = fb.create_block();
            let p = fb.append_block_param(join, Type::I32);
            let zero = fb.iconst(Type::I32, 0);
            let c = fb.icmp(IntCC::Slt, v, zero);
            fb.brif(c, left, &[], right, &[]);
            fb.switch_to_block(left);
            let a = fb.iadd(v, v);
            fb.jump(join, &[a]);
            fb.switch_to_block(right);
            let b = fb.isub(v, zero);
            fb.jump(join, &[b]);
            fb.switch_to_block(join);
            v = p;
        }
        fb.ret(Some(v));
        mb.finish()
    }

    /// The largest module of `shape` whose blob the kernel takes, and that blob.
    pub fn largest(shape: Shape) -> Option<(Module, Vec<u8>)> {
        let fits = |n: usize| graft_ir::encode(&shape(n)).ok().filter(|b| b.len() <= MAX_KERNEL_BLOB);
        let (mut lo, mut hi) = (1usize, 2usize);
        fits(lo)?;
        while fits(hi).is_some() {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid).is_some() { lo = mid } else { hi = mid }
        }
        let blob = fits(lo)?;
        Some((shape(lo), blob))
    }
}
