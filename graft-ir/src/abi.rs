//! The graft ABI: every graft point and every kernel callable, declared once.
//!
//! The kernel reads this table to dispatch graft points and to register callables (one
//! implementation per row, found by [`Callable::id`]); graftc reads it to type-check graft
//! sources; the verifier reads it to check a module's entry signature and imports.
//!
//! Conventions shared by every point:
//! - value parameters are the entry function's parameters, in order; the entry function
//!   returns `i32`;
//! - region `r0` is always the graft's data region; the point's buffers are `r1, r2, ...`
//!   in the order of [`GraftPoint::regions`], each with a length known at call time;
//! - all multi-byte fields of a buffer are little-endian;
//! - whatever the graft returns is checked by the point's validator (described in
//!   [`GraftPoint::result`]); a rejected result aborts `InvalidResult` and the kernel uses
//!   its default policy's answer.

use crate::types::{HandleKind, Type};

/// Access rights of a passed-in region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rights {
    /// The graft may load but not store.
    ReadOnly,
    /// The graft may load and store.
    ReadWrite,
}

impl Rights {
    /// Whether stores are allowed.
    pub const fn writable(self) -> bool {
        matches!(self, Rights::ReadWrite)
    }
}

/// A named value parameter of a graft point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Param {
    /// The parameter's name (for docs and graftc).
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
}

/// A buffer a graft point passes in as region `r1, r2, ...`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegionSpec {
    /// The buffer's name (for docs and graftc).
    pub name: &'static str,
    /// What the graft may do with it.
    pub rights: Rights,
    /// Size in bytes of one record, or 1 for a plain byte buffer.
    pub record_size: u32,
    /// The meaning of its bytes.
    pub layout: &'static str,
}

/// A graft point: a kernel policy decision a process may replace with a graft.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GraftPoint {
    /// Its row in [`GRAFT_POINTS`] (the kernel indexes its slot tables by it).
    pub index: usize,
    /// The point's name, as written in a module (`graft vm.pick_victim`).
    pub name: &'static str,
    /// Value parameters of the entry function.
    pub params: &'static [Param],
    /// Return type of the entry function.
    pub ret: Type,
    /// Passed-in regions `r1, r2, ...`.
    pub regions: &'static [RegionSpec],
    /// Names of the callables a graft at this point may import.
    pub callables: &'static [&'static str],
    /// What the result means and how the kernel validates it.
    pub result: &'static str,
    /// One line on what the point decides.
    pub doc: &'static str,
}

impl GraftPoint {
    /// The entry function's signature.
    pub fn signature(&self) -> crate::types::Signature {
        crate::types::Signature {
            params: self.params.iter().map(|p| p.ty).collect(),
            ret: Some(self.ret),
        }
    }

    /// The spec of region `r` (`r1` is `regions[0]`); `None` for `r0` and unknown regions.
    pub fn region(&self, r: crate::entity::Region) -> Option<&'static RegionSpec> {
        let i = r.index().checked_sub(1)?;
        self.regions.get(i)
    }

    /// Whether a graft at this point may import `callable`.
    pub fn allows(&self, callable: &str) -> bool {
        self.callables.contains(&callable)
    }

    /// The point's validator (the rule in [`GraftPoint::result`]): whether the kernel may use
    /// `result`. One definition for the kernel and for `graftc run`'s model of the point.
    pub fn accepts(&self, result: i64, facts: &ResultFacts<'_>) -> bool {
        match self.name {
            "vm.pick_victim" | "sched.pick_next" => (0..facts.candidates).contains(&result),
            "fs.compute_ra" => {
                let capacity = (facts.out.len() / 8) as i64;
                (0..=capacity).contains(&result)
                    && facts.out.chunks_exact(8).take(result as usize).all(|b| {
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(b);
                        (0..facts.file_blocks).contains(&i64::from_le_bytes(raw))
                    })
            }
            // The filters: 0 or a negative error.
            _ => result <= 0,
        }
    }
}

/// What a point's validator needs besides the result.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResultFacts<'a> {
    /// `vm.pick_victim`, `sched.pick_next`: how many candidates were offered (`n`).
    pub candidates: i64,
    /// `fs.compute_ra`: the output region `r1` as the graft left it.
    pub out: &'a [u8],
    /// `fs.compute_ra`: the file's size in blocks.
    pub file_blocks: i64,
}

/// A kernel function a graft may call through an import.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Callable {
    /// Stable number (its index in [`CALLABLES`]); the JIT's import table and the kernel's
    /// registry are indexed by it. Never renumber, only add.
    pub id: u16,
    /// The callable's name, as imported (`fs.file_size`).
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [Type],
    /// Return type, if any.
    pub ret: Option<Type>,
    /// Fixed fuel cost of one call, charged before the call.
    pub cost: u64,
    /// Whether grafts may import it at all (a privileged callable is kernel-only).
    pub importable: bool,
    /// One line on what it does and how it fails.
    pub doc: &'static str,
}

impl Callable {
    /// The signature as IR.
    pub fn signature(&self) -> crate::types::Signature {
        crate::types::Signature { params: self.params.to_vec(), ret: self.ret }
    }
}

/// `CallableFailed` payloads shared by callables.
pub mod errors {
    /// A handle argument does not name a live object owned by the graft's installer.
    pub const BAD_HANDLE: u32 = 1;
    /// An integer argument is out of its documented range.
    pub const BAD_ARGUMENT: u32 = 2;
    /// The lock is not held by this transaction (release) or already held (acquire).
    pub const LOCK_STATE: u32 = 3;
}

const FILE: Type = Type::Handle(HandleKind::File);
const LOCK: Type = Type::Handle(HandleKind::Lock);

/// Every kernel callable; `CALLABLES[i].id == i`.
pub static CALLABLES: &[Callable] = &[
    Callable { id: 0, name: "fs.file_size", params: &[FILE], ret: Some(Type::I64), cost: 8,
        importable: true, doc: "Size of the file in bytes." },
    Callable { id: 1, name: "fs.block_size", params: &[FILE], ret: Some(Type::I32), cost: 4,
        importable: true, doc: "Block size of the file's file system in bytes (a power of two)." },
    Callable { id: 2, name: "fs.block_cached", params: &[FILE, Type::I64], ret: Some(Type::I8), cost: 16,
        importable: true, doc: "1 if the file's block (by block number) is in the buffer cache, else 0; a block past the end fails BAD_ARGUMENT." },
    Callable { id: 3, name: "lock.get", params: &[Type::I32], ret: Some(LOCK), cost: 8,
        importable: true, doc: "The installer's lock number n (0 <= n < 16), created on first use." },
    Callable { id: 4, name: "lock.acquire", params: &[LOCK], ret: Some(Type::I32), cost: 32,
        importable: true, doc: "Acquire the lock for the rest of the transaction (two-phase); returns 0; a contested lock may abort LockTimeout or Deadlock." },
    Callable { id: 5, name: "lock.release", params: &[LOCK], ret: Some(Type::I32), cost: 16,
        importable: true, doc: "Release a lock this call holds (the kernel defers the real release to the end of the transaction, two-phase); returns 0; a lock not held fails LOCK_STATE." },
    Callable { id: 6, name: "mem.alloc", params: &[Type::I32], ret: Some(Type::I32), cost: 32,
        importable: true, doc: "Allocate n bytes of kernel memory charged to the installer; returns an allocation number; over the limit aborts ResourceLimit; freed on abort." },
    Callable { id: 7, name: "mem.free", params: &[Type::I32], ret: Some(Type::I32), cost: 16,
        importable: true, doc: "Free an allocation made by mem.alloc (deferred to commit); returns 0." },
    Callable { id: 8, name: "kern.counter_get", params: &[Type::I32], ret: Some(Type::I64), cost: 4,
        importable: true, doc: "Read the installer's counter n (0 <= n < 16)." },
    Callable { id: 9, name: "kern.counter_add", params: &[Type::I32, Type::I64], ret: Some(Type::I64), cost: 8,
        importable: true, doc: "Add to the installer's counter n and return the new value; undone if the call aborts." },
    Callable { id: 10, name: "debug.trace", params: &[Type::I64], ret: None, cost: 4,
        importable: true, doc: "Append a value to the graft's trace log (rate-limited, never fails)." },
    Callable { id: 11, name: "time.now", params: &[], ret: Some(Type::I64), cost: 4,
        importable: true, doc: "Monotonic time since boot in nanoseconds." },
    Callable { id: 12, name: "vm.page_referenced", params: &[Type::I64], ret: Some(Type::I8), cost: 16,
        importable: true, doc: "Test and clear the hardware referenced bit of the installer's page at this virtual address; 0 for an unmapped address." },
    Callable { id: 13, name: "kern.halt", params: &[], ret: Some(Type::I32), cost: 0,
        importable: false, doc: "Halt the machine. Kernel-only: no graft may import it." },
];

const COMMON: [&str; 9] = [
    "debug.trace",
    "time.now",
    "kern.counter_get",
    "kern.counter_add",
    "lock.get",
    "lock.acquire",
    "lock.release",
    "mem.alloc",
    "mem.free",
];

const fn with<const N: usize, const M: usize, const T: usize>(
    extra: [&'static str; M],
) -> [&'static str; T] {
    let mut out = [""; T];
    let mut i = 0;
    while i < N {
        out[i] = COMMON[i];
        i += 1;
    }
    let mut j = 0;
    while j < M {
        out[N + j] = extra[j];
        j += 1;
    }
    out
}

static VM_CALLABLES: [&str; 10] = with::<9, 1, 10>(["vm.page_referenced"]);
static FS_CALLABLES: [&str; 12] =
    with::<9, 3, 12>(["fs.file_size", "fs.block_size", "fs.block_cached"]);
static SCHED_CALLABLES: [&str; 9] = COMMON;

const FILTER_PARAMS: &[Param] = &[
    Param { name: "file", ty: FILE },
    Param { name: "offset", ty: Type::I64 },
    Param { name: "len", ty: Type::I32 },
];
const FILTER_REGIONS: &[RegionSpec] = &[RegionSpec {
    name: "buf",
    rights: Rights::ReadWrite,
    record_size: 1,
    layout: "the file data of [offset, offset+len), transformed in place; its length is len",
}];

/// The rows of [`GRAFT_POINTS`], by name.
pub mod point {
    /// `vm.pick_victim`
    pub const VM_PICK_VICTIM: usize = 0;
    /// `fs.compute_ra`
    pub const FS_COMPUTE_RA: usize = 1;
    /// `sched.pick_next`
    pub const SCHED_PICK_NEXT: usize = 2;
    /// `fs.read_filter`
    pub const FS_READ_FILTER: usize = 3;
    /// `fs.write_filter`
    pub const FS_WRITE_FILTER: usize = 4;
}

/// Every graft point.
pub static GRAFT_POINTS: &[GraftPoint] = &[
    GraftPoint {
        index: point::VM_PICK_VICTIM,
        name: "vm.pick_victim",
        params: &[Param { name: "n", ty: Type::I32 }],
        ret: Type::I32,
        regions: &[RegionSpec {
            name: "cands",
            rights: Rights::ReadOnly,
            record_size: 16,
            layout: "n records of 16 bytes: vaddr: u64 @0, flags: u32 @8 (bit0 referenced, \
                     bit1 dirty, bit2 file-backed / buffer-cache page), age: u32 @12 (ticks since \
                     last reference)",
        }],
        callables: &VM_CALLABLES,
        result: "the index of the page to evict; valid if 0 <= idx < n",
        doc: "Choose which of the process's resident pages to evict.",
    },
    GraftPoint {
        index: point::FS_COMPUTE_RA,
        name: "fs.compute_ra",
        params: &[
            Param { name: "file", ty: FILE },
            Param { name: "offset", ty: Type::I64 },
            Param { name: "len", ty: Type::I64 },
        ],
        ret: Type::I32,
        regions: &[RegionSpec {
            name: "out",
            rights: Rights::ReadWrite,
            record_size: 8,
            layout: "room for capacity = len(r1) / 8 block numbers (i64 @ 8*i) to read ahead",
        }],
        callables: &FS_CALLABLES,
        result: "the count of block numbers written to r1; valid if 0 <= count <= capacity and \
                 every block lies inside the file",
        doc: "After a read of [offset, offset+len) of a file, choose the blocks to read ahead.",
    },
    GraftPoint {
        index: point::SCHED_PICK_NEXT,
        name: "sched.pick_next",
        params: &[Param { name: "n", ty: Type::I32 }],
        ret: Type::I32,
        regions: &[RegionSpec {
            name: "threads",
            rights: Rights::ReadOnly,
            record_size: 24,
            layout: "n records of 24 bytes: tid: u32 @0, flags: u32 @4 (bit0 interactive, bit1 \
                     woke from I/O, bit2 was preempted), runtime: u64 @8 (ns run so far), \
                     wakeups: u32 @16, pad: u32 @20",
        }],
        callables: &SCHED_CALLABLES,
        result: "the index of the thread to run in the group's turn; valid if 0 <= idx < n",
        doc: "Choose which runnable thread of the process group runs in the group's turn.",
    },
    GraftPoint {
        index: point::FS_READ_FILTER,
        name: "fs.read_filter",
        params: FILTER_PARAMS,
        ret: Type::I32,
        regions: FILTER_REGIONS,
        callables: &FS_CALLABLES,
        result: "0 on success, or a negative error code passed to the reader as EIO",
        doc: "Transform file data after it is read, before it reaches the process.",
    },
    GraftPoint {
        index: point::FS_WRITE_FILTER,
        name: "fs.write_filter",
        params: FILTER_PARAMS,
        ret: Type::I32,
        regions: FILTER_REGIONS,
        callables: &FS_CALLABLES,
        result: "0 on success, or a negative error code passed to the writer as EIO",
        doc: "Transform file data written by the process, before it reaches the file system.",
    },
];

// Each point's `index` is its row.
const _: () = {
    let mut i = 0;
    while i < GRAFT_POINTS.len() {
        assert!(GRAFT_POINTS[i].index == i);
        i += 1;
    }
};

/// The graft point named `name`.
pub fn graft_point(name: &str) -> Option<&'static GraftPoint> {
    GRAFT_POINTS.iter().find(|p| p.name == name)
}

/// The callable named `name`.
pub fn callable(name: &str) -> Option<&'static Callable> {
    CALLABLES.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callable_ids_are_indices_and_names_unique() {
        for (i, c) in CALLABLES.iter().enumerate() {
            assert_eq!(c.id as usize, i, "{}", c.name);
            assert_eq!(callable(c.name).map(|x| x.id), Some(c.id));
        }
    }

    #[test]
    fn validators_follow_the_documented_rules() {
        let pick = graft_point("sched.pick_next").unwrap();
        let facts = ResultFacts { candidates: 3, ..ResultFacts::default() };
        assert!(pick.accepts(0, &facts) && pick.accepts(2, &facts));
        assert!(!pick.accepts(3, &facts) && !pick.accepts(-1, &facts));
        let ra = graft_point("fs.compute_ra").unwrap();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&5i64.to_le_bytes());
        out[8..].copy_from_slice(&12i64.to_le_bytes());
        let facts = ResultFacts { out: &out, file_blocks: 10, ..ResultFacts::default() };
        assert!(ra.accepts(1, &facts));
        assert!(!ra.accepts(2, &facts), "block 12 is past the end of a 10-block file");
        assert!(!ra.accepts(3, &facts), "more blocks than the region holds");
        let filter = graft_point("fs.read_filter").unwrap();
        assert!(filter.accepts(0, &facts) && filter.accepts(-5, &facts) && !filter.accepts(1, &facts));
    }

    #[test]
    fn points_only_allow_importable_callables() {
        for p in GRAFT_POINTS {
            for name in p.callables {
                let c = callable(name).unwrap_or_else(|| panic!("{} allows unknown {name}", p.name));
                assert!(c.importable, "{} allows privileged {name}", p.name);
            }
        }
    }
}
