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
use graft_ir::interp::{self, DataValue};
#[cfg(not(target_os = "none"))]
use graft_ir::interp::Host;
use graft_ir::{AbortReason, DecodeError, Verified, VerifyErrors};
use spin::{Mutex, Once};

use super::callables::{self, CallCtx, Registry};
use super::state::{self, ProcessId};
use super::txn::TxnLog;

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

impl Limits {
    /// The watchdog limit in time-stamp-counter ticks (computed once, not per call).
    fn wall_tsc(&self) -> u64 {
        #[cfg(target_os = "none")]
        {
            crate::time::ns_to_tsc(self.wall_ns)
        }
        #[cfg(not(target_os = "none"))]
        {
            self.wall_ns
        }
    }
}

/// Fuel the kernel grants one call at most, whatever the module asks for.
pub const MAX_FUEL_PER_CALL: u64 = 1_000_000;
pub const DEFAULT_MAX_ABORTS: u32 = 5;
/// Wall-clock limit of one call (checked by the timer-driven watchdog, so with a tick's slack).
pub const DEFAULT_WALL_NS: u64 = 100_000_000;

/// Per-graft statistics.
#[derive(Default)]
pub struct Stats {
    pub calls: AtomicU64,
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

pub struct Graft {
    pub id: GraftId,
    pub owner: ProcessId,
    pub point: &'static GraftPoint,
    verified: Verified,
    /// The graft's data region `r0`: persists across calls; private to the graft.
    data: Mutex<Vec<u8>>,
    /// Its machine code (in the kernel; host builds run the reference interpreter).
    #[cfg(target_os = "none")]
    jit: super::jit::JitCode,
    /// The limits, and the watchdog limit in TSC ticks derived from them.
    limits: Mutex<(Limits, u64)>,
    pub stats: Stats,
    attached: AtomicBool,
    /// The process whose slot holds the graft while attached.
    target: AtomicU32,
    abort_count: AtomicU32,
}

impl Graft {
    pub fn stats(&self) -> StatsSnapshot {
        let aborts = AbortReason::ALL
            .iter()
            .filter_map(|r| {
                let n = self.stats.aborts[r.code() as usize].load(Ordering::Relaxed);
                (n > 0).then_some((*r, n))
            })
            .collect();
        StatsSnapshot {
            calls: self.stats.calls.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
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
        self.limits.lock().0
    }

    /// Changes the graft's limits.
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock() = (limits, limits.wall_tsc());
    }

    /// Bytes of machine code the graft was compiled to (0 when interpreted).
    pub fn code_size(&self) -> usize {
        #[cfg(target_os = "none")]
        {
            self.jit.code_size()
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
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            AttachError::NoSuchGraft(g) => write!(f, "no {g}"),
            AttachError::NotOwner(g) => write!(f, "{g} belongs to another process"),
            AttachError::SlotTaken { point, by } => write!(f, "{point} already has {by} attached"),
            AttachError::NotAttached => write!(f, "no graft is attached there"),
        }
    }
}

pub const MAX_GRAFTS_PER_PROCESS: usize = 32;
/// Largest blob the kernel accepts. Decoding expands a blob (up to ~56x for the densest
/// instruction streams), so the kernel takes far less than the format's own limit; real grafts
/// are a few KiB.
pub const MAX_KERNEL_BLOB: usize = 16 * 1024;

struct Tables {
    grafts: BTreeMap<GraftId, Arc<Graft>>,
    /// (point index in the ABI table, installer) -> attached graft.
    slots: BTreeMap<(usize, ProcessId), Arc<Graft>>,
    next_id: u32,
}

static TABLES: Mutex<Tables> = Mutex::new(Tables { grafts: BTreeMap::new(), slots: BTreeMap::new(), next_id: 1 });
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

fn point_index(p: &GraftPoint) -> usize {
    // Points come from the ABI table: their index follows from the address (the hot path);
    // a copy made elsewhere is found by name.
    let base = abi::GRAFT_POINTS.as_ptr() as usize;
    let offset = (p as *const GraftPoint as usize).wrapping_sub(base);
    let size = core::mem::size_of::<GraftPoint>();
    if offset % size == 0 && offset / size < abi::GRAFT_POINTS.len() {
        return offset / size;
    }
    abi::GRAFT_POINTS.iter().position(|q| q.name == p.name).unwrap_or(usize::MAX)
}

/// Grafts attached to each point (by index in the ABI table), for every process: lets the
/// common case of a point nobody grafted skip the slot table and its lock.
static ATTACHED_AT: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];

fn attached_at(index: usize) -> Option<&'static AtomicU32> {
    ATTACHED_AT.get(index)
}

/// Decodes, verifies and prepares a graft for `owner`.
pub fn load(owner: ProcessId, blob: &[u8]) -> Result<GraftId, LoadError> {
    if blob.len() > MAX_KERNEL_BLOB {
        return Err(LoadError::TooLarge(blob.len()));
    }
    if with_tables(|t| t.grafts.values().filter(|g| g.owner == owner).count()) >= MAX_GRAFTS_PER_PROCESS {
        return Err(LoadError::TooMany);
    }
    let module = graft_ir::decode(blob).map_err(LoadError::Decode)?;
    let verified = graft_ir::verify(module).map_err(LoadError::Verify)?;
    let reg = registry();
    if let Some(c) = verified.callables().iter().find(|c| !reg.implemented(c)) {
        return Err(LoadError::Unimplemented(c.name));
    }
    let res = verified.module().resources;
    let limits = Limits {
        fuel: res.fuel.min(MAX_FUEL_PER_CALL),
        memory: state::DEFAULT_MEMORY_LIMIT,
        max_aborts: DEFAULT_MAX_ABORTS,
        wall_ns: DEFAULT_WALL_NS,
    };
    let data = interp::initial_data(verified.module());
    let point = verified.point();
    #[cfg(target_os = "none")]
    let jit = super::jit::JitCode::compile(&verified).map_err(|e| LoadError::Compile(alloc::format!("{e}")))?;
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
            data: Mutex::new(data),
            #[cfg(target_os = "none")]
            jit,
            limits: Mutex::new((limits, limits.wall_tsc())),
            stats: Stats::default(),
            attached: AtomicBool::new(false),
            target: AtomicU32::new(0),
            abort_count: AtomicU32::new(0),
        };
        t.grafts.insert(id, Arc::new(graft));
        Ok(id)
    })
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
        let key = (point_index(g.point), target);
        if let Some(other) = t.slots.get(&key) {
            return Err(AttachError::SlotTaken { point: g.point.name, by: other.id });
        }
        g.attached.store(true, Ordering::Relaxed);
        g.target.store(target.0, Ordering::Relaxed);
        t.slots.insert(key, g);
        if let Some(n) = attached_at(key.0) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// Ids of the grafts `owner` has loaded.
pub fn grafts_of(owner: ProcessId) -> Vec<GraftId> {
    with_tables(|t| t.grafts.values().filter(|g| g.owner == owner).map(|g| g.id).collect())
}

/// Empties the slot graft `id` holds; the graft stays loaded (its statistics remain readable).
pub fn detach(owner: ProcessId, id: GraftId) -> Result<(), AttachError> {
    with_tables(|t| {
        let g = t.grafts.get(&id).cloned().ok_or(AttachError::NoSuchGraft(id))?;
        if g.owner != owner {
            return Err(AttachError::NotOwner(id));
        }
        let key = (point_index(g.point), ProcessId(g.target.load(Ordering::Relaxed)));
        match t.slots.get(&key) {
            Some(s) if s.id == id => {
                t.slots.remove(&key);
                if let Some(n) = attached_at(key.0) {
                    n.fetch_sub(1, Ordering::Relaxed);
                }
                g.attached.store(false, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(AttachError::NotAttached),
        }
    })
}

/// Empties every slot held for process `target` (it exited): the grafts stay loaded, detached.
pub fn detach_all_for(target: ProcessId) {
    with_tables(|t| {
        let keys: Vec<(usize, ProcessId)> = t.slots.keys().filter(|k| k.1 == target).copied().collect();
        for key in keys {
            if let Some(g) = t.slots.remove(&key) {
                g.attached.store(false, Ordering::Relaxed);
                if let Some(n) = attached_at(key.0) {
                    n.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    })
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
pub fn attached(point: &GraftPoint, owner: ProcessId) -> Option<Arc<Graft>> {
    let index = point_index(point);
    if attached_at(index).is_some_and(|n| n.load(Ordering::Relaxed) == 0) {
        return None;
    }
    with_tables(|t| t.slots.get(&(index, owner)).cloned())
}

/// What one dispatch did (for tests and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No graft attached: the default answered.
    Default,
    Committed,
    Aborted(AbortReason),
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

/// Runs `point` for `owner`: the attached graft inside a transaction, or `default`.
///
/// `args` are the point's value parameters, `buffers` its regions `r1..`; `validate` checks the
/// graft's result (with the buffers as the graft left them). Returns the answer and what happened.
pub fn dispatch(
    point: &GraftPoint,
    owner: ProcessId,
    txn: &mut TxnLog,
    args: &[DataValue],
    buffers: &mut [&mut [u8]],
    validate: impl FnOnce(i32, &[&mut [u8]]) -> bool,
    default: impl FnOnce(&mut [&mut [u8]]) -> i32,
) -> (i32, Outcome) {
    let Some(graft) = attached(point, owner) else {
        return (default(buffers), Outcome::Default);
    };
    graft.stats.calls.fetch_add(1, Ordering::Relaxed);
    let result = run_in_transaction(&graft, txn, args, buffers, validate);
    match result {
        Ok(v) => {
            graft.stats.commits.fetch_add(1, Ordering::Relaxed);
            (v, Outcome::Committed)
        }
        Err(reason) => {
            graft.stats.aborts[reason.code() as usize % 16].fetch_add(1, Ordering::Relaxed);
            let n = graft.abort_count.fetch_add(1, Ordering::Relaxed) + 1;
            log::debug!("{} ({}) aborted: {reason}", graft.id, point.name);
            if n >= graft.limits().max_aborts && detach(graft.owner, graft.id).is_ok() {
                log::warn!("{} detached from {} after {n} aborts (last: {reason})", graft.id, point.name);
            }
            (default(buffers), Outcome::Aborted(reason))
        }
    }
}

/// Runs the graft's entry: its machine code in the kernel, the reference interpreter on the
/// host (where the runtime's logic is tested).
fn execute(
    graft: &Graft,
    ctx: CallCtx,
    args: &[DataValue],
    regions: &mut [&mut [u8]],
    fuel: &mut u64,
    wall_tsc: u64,
) -> Result<i32, AbortReason> {
    #[cfg(target_os = "none")]
    {
        super::jit::call(&graft.jit, ctx, registry(), args, regions, fuel, wall_tsc)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = wall_tsc;
        let mut host = KernelHost { ctx, registry: registry(), args: Vec::new() };
        match interp::run(&graft.verified, graft_ir::Module::ENTRY, args, regions, fuel, &mut host) {
            Ok(Some(DataValue::I32(v))) => Ok(v),
            Ok(_) => Err(AbortReason::HostContract),
            Err(e) => Err(e),
        }
    }
}

/// Most buffers a graft point passes in.
const MAX_BUFFERS: usize = 4;

fn abort_now(graft: &Graft, txn: &mut TxnLog, reason: AbortReason) -> Result<i32, AbortReason> {
    if let Err(e) = txn.abort(&callables::LOCKS) {
        log::error!("abort of {} failed: {e}", graft.id);
    }
    Err(reason)
}

fn run_in_transaction(
    graft: &Graft,
    txn: &mut TxnLog,
    args: &[DataValue],
    buffers: &mut [&mut [u8]],
    validate: impl FnOnce(i32, &[&mut [u8]]) -> bool,
) -> Result<i32, AbortReason> {
    if txn.begin().is_err() {
        return Err(AbortReason::ResourceLimit);
    }
    let locks = &callables::LOCKS;
    let outcome = {
        let mut data = graft.data.lock();
        // The data region then the point's buffers, without allocating on the call path.
        if buffers.len() > MAX_BUFFERS {
            return abort_now(graft, txn, AbortReason::HostContract);
        }
        let count = 1 + buffers.len();
        let mut regions: [&mut [u8]; 1 + MAX_BUFFERS] = Default::default();
        regions[0] = &mut data[..];
        for (slot, b) in regions[1..].iter_mut().zip(buffers.iter_mut()) {
            *slot = &mut **b;
        }
        let regions = &mut regions[..count];
        let (limits, wall_tsc) = *graft.limits.lock();
        let ctx = CallCtx { owner: graft.owner, txn: &mut *txn, memory_limit: limits.memory };
        let mut fuel = limits.fuel;
        let r = execute(graft, ctx, args, regions, &mut fuel, wall_tsc);
        graft.stats.fuel_used.fetch_add(limits.fuel - fuel, Ordering::Relaxed);
        r
    };
    let outcome = outcome.and_then(|v| if validate(v, buffers) { Ok(v) } else { Err(AbortReason::InvalidResult) });
    // A waiter timed out on a lock this thread holds: the transaction is doomed.
    let outcome = match outcome {
        Ok(_) if locks.take_doom(txn.owner()) => Err(AbortReason::LockTimeout),
        o => o,
    };
    match outcome {
        Ok(v) => match txn.commit(locks) {
            Ok(()) => Ok(v),
            Err(_) => Err(AbortReason::HostContract),
        },
        Err(reason) => {
            if let Err(e) = txn.abort(locks) {
                log::error!("abort of {} failed: {e}", graft.id);
            }
            Err(reason)
        }
    }
}
