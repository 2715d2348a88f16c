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
//! - a buffer's records are described field by field ([`RegionSpec::fields`]: name, offset,
//!   type), and the kernel's record types, `graftc run`'s model and `docs/graft-points.md` are
//!   derived from (and checked against) those rows;
//! - whatever the graft returns is checked by the point's [`Validator`]; a rejected result
//!   aborts `InvalidResult` and the kernel uses its default policy's answer.

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

/// The type of one field of a buffer's records (little-endian, at its offset).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldType {
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 64-bit.
    I64,
}

impl FieldType {
    /// Width in bytes.
    pub const fn size(self) -> u32 {
        match self {
            FieldType::U32 => 4,
            FieldType::U64 | FieldType::I64 => 8,
        }
    }

    /// The name the docs and `graftc points` use.
    pub const fn name(self) -> &'static str {
        match self {
            FieldType::U32 => "u32",
            FieldType::U64 => "u64",
            FieldType::I64 => "i64",
        }
    }

    /// The IR type a graft loads the field as.
    pub const fn ir(self) -> Type {
        match self {
            FieldType::U32 => Type::I32,
            FieldType::U64 | FieldType::I64 => Type::I64,
        }
    }

    /// Whether `value` is representable in the field (unsigned fields take 0..2^w, signed
    /// fields their signed range; `u64` also takes a negative i128 down to `i64::MIN` as
    /// its two's complement, as a graft would see it).
    pub fn fits(self, value: i128) -> bool {
        match self {
            FieldType::U32 => (0..=i128::from(u32::MAX)).contains(&value),
            FieldType::U64 => (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&value),
            FieldType::I64 => (i128::from(i64::MIN)..=i128::from(i64::MAX)).contains(&value),
        }
    }
}

/// One field of a buffer's records.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Field {
    /// Its name (docs, `graftc run --buf NAME=records:FIELD=VALUE`, the kernel's record type).
    pub name: &'static str,
    /// Byte offset inside the record.
    pub offset: u32,
    /// Its type.
    pub ty: FieldType,
    /// What it means.
    pub doc: &'static str,
}

/// How many elements a passed-in buffer holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Extent {
    /// As many as the value parameter at this index (of [`GraftPoint::params`]) says.
    Param(usize),
    /// As many as fit: the buffer's length divided by the record size.
    Capacity,
}

/// A buffer a graft point passes in as region `r1, r2, ...`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegionSpec {
    /// The buffer's name (for docs and graftc).
    pub name: &'static str,
    /// What the graft may do with it.
    pub rights: Rights,
    /// Size in bytes of one record, or 1 for a plain byte buffer; the fields tile it exactly
    /// (checked when the crate compiles).
    pub record_size: u32,
    /// The fields of one record, by offset; empty for a plain byte buffer.
    pub fields: &'static [Field],
    /// How many records (or bytes, for a byte buffer) it holds.
    pub extent: Extent,
    /// What the buffer is.
    pub doc: &'static str,
}

impl RegionSpec {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the buffer is records (as opposed to plain bytes).
    pub const fn has_records(&self) -> bool {
        !self.fields.is_empty()
    }
}

/// How the kernel checks a graft's answer at a point (the point's validator). A rejected
/// answer aborts the call `InvalidResult` and the default policy answers instead.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Validator {
    /// An index into the candidates: `0 <= result < params[of]` (the count the point passed).
    Index {
        /// The value parameter (by position) that counts the candidates.
        of: usize,
    },
    /// A count of block numbers the graft wrote to region `r{out}` (one `i64` per record):
    /// `0 <= result <= capacity`, and each of the first `result` blocks lies inside the file
    /// given by the value parameter `file`.
    BlockList {
        /// The output region (`1` for `r1`).
        out: usize,
        /// The value parameter (by position) holding the file's handle.
        file: usize,
    },
    /// `0` for success or a negative error code.
    ZeroOrNegative,
}

impl Validator {
    /// Whether the kernel may use `result`, given what the point knows (`facts`).
    #[inline]
    pub fn accepts(&self, result: i64, facts: &ResultFacts<'_>) -> bool {
        match *self {
            Validator::Index { .. } => (0..facts.candidates).contains(&result),
            Validator::BlockList { .. } => {
                let capacity = (facts.out.len() / 8) as i64;
                (0..=capacity).contains(&result)
                    && facts.out.as_chunks::<8>().0.iter().take(result as usize).all(|b| {
                        (0..facts.file_blocks).contains(&i64::from_le_bytes(*b))
                    })
            }
            Validator::ZeroOrNegative => result <= 0,
        }
    }

    /// The rule in words, for the docs and `graftc points`.
    pub fn describe(&self, point: &GraftPoint) -> alloc::string::String {
        let param = |i: usize| point.params.get(i).map_or("?", |p| p.name);
        match *self {
            Validator::Index { of } => alloc::format!("valid if 0 <= result < {}", param(of)),
            Validator::BlockList { out, file } => alloc::format!(
                "valid if 0 <= result <= capacity of r{out} (its length / 8) and each of the first \
                 `result` block numbers in r{out} lies inside `{}` (0 <= block < the file's size in blocks)",
                param(file)
            ),
            Validator::ZeroOrNegative => "valid if result <= 0".into(),
        }
    }
}

/// The kernel path on which a point is reached: what a process does to make the kernel
/// consult its graft (demos and tests drive a point through it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reach {
    /// The scheduler, at the start of the process group's turn (run several threads).
    Scheduler,
    /// Page replacement, when the process is over its resident-set limit (touch memory).
    PageReplacement,
    /// The read path of a file (read a file).
    FileRead,
    /// The write path of a file (write a file).
    FileWrite,
}

impl Reach {
    /// In words, for the docs.
    pub const fn describe(self) -> &'static str {
        match self {
            Reach::Scheduler => "the scheduler, at the start of the process group's turn",
            Reach::PageReplacement => "page replacement, when the process is over its resident-set limit",
            Reach::FileRead => "the read path of a file",
            Reach::FileWrite => "the write path of a file",
        }
    }
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
    /// How the kernel checks the result.
    pub validator: Validator,
    /// Where the kernel reaches the point.
    pub reached_from: Reach,
    /// What the result means.
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

    /// The point's validator: whether the kernel may use `result`. One definition for the
    /// kernel and for `graftc run`'s model of the point.
    #[inline]
    pub fn accepts(&self, result: i64, facts: &ResultFacts<'_>) -> bool {
        self.validator.accepts(result, facts)
    }
}

/// What a point's validator needs besides the result (see [`Validator`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResultFacts<'a> {
    /// [`Validator::Index`]: the value of the counting parameter.
    pub candidates: i64,
    /// [`Validator::BlockList`]: the output region as the graft left it.
    pub out: &'a [u8],
    /// [`Validator::BlockList`]: the file's size in blocks.
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

/// Every kernel callable; `CALLABLES[i].id == i`. Each has exactly one implementation, in
/// `callables::IMPLEMENTATIONS` (checked when the crate compiles).
pub static CALLABLES: &[Callable] = CALLABLE_TABLE;

/// The same table as a `const`, so that registrations and import stubs can be checked
/// against it at compile time.
pub const CALLABLE_TABLE: &[Callable] = &[
    Callable { id: 0, name: "fs.file_size", params: &[FILE], ret: Some(Type::I64), cost: 8,
        importable: true, doc: "Size of the file in bytes." },
    Callable { id: 1, name: "fs.block_size", params: &[FILE], ret: Some(Type::I32), cost: 4,
        importable: true, doc: "Block size of the file's file system in bytes (a power of two)." },
    Callable { id: 2, name: "fs.block_cached", params: &[FILE, Type::I64], ret: Some(Type::I8), cost: 16,
        importable: true, doc: "1 if the file's block (by block number) is in the buffer cache or being read into it, else 0; a block past the end fails BAD_ARGUMENT." },
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
        importable: true, doc: "Test and clear the referenced bit (the hardware's and the clock's) of the installer's resident page at this virtual address; 0 for an address that is not one; a cleared bit is set again if the call aborts." },
    Callable { id: 13, name: "kern.halt", params: &[], ret: Some(Type::I32), cost: 0,
        importable: false, doc: "Halt the machine. Kernel-only: no graft may import it." },
    Callable { id: 14, name: "fs.prefetch", params: &[FILE, Type::I64], ret: Some(Type::I32), cost: 32,
        importable: true, doc: "Read the file's block (by block number) into the buffer cache without waiting; issuing the read cannot be undone, so it happens when the transaction commits (an aborted call reads nothing); returns 0; a block past the end fails BAD_ARGUMENT." },
    Callable { id: 15, name: "vm.page_set_active", params: &[Type::I64, Type::I32], ret: Some(Type::I8), cost: 16,
        importable: true, doc: "Move the installer's resident page at this virtual address to the clock's active set (1: referenced, the clock passes it by once) or its inactive set (0: offered first for eviction); returns 1 if it was active, 0 if inactive, -1 (and changes nothing) if the address is not that of a resident page of the installer; undone if the call aborts; an activity other than 0 or 1 fails BAD_ARGUMENT." },
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

static VM_CALLABLES: [&str; 11] = with::<9, 2, 11>(["vm.page_referenced", "vm.page_set_active"]);
static FS_CALLABLES: [&str; 13] =
    with::<9, 4, 13>(["fs.file_size", "fs.block_size", "fs.block_cached", "fs.prefetch"]);
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
    fields: &[],
    extent: Extent::Param(2),
    doc: "the file data of [offset, offset+len), transformed in place; its length is len",
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

/// Every graft point (a `const`, so that the kernel's record types can be checked against it
/// at compile time; [`GRAFT_POINTS`] is the same table).
pub const POINTS: &[GraftPoint] = &[
    GraftPoint {
        index: point::VM_PICK_VICTIM,
        name: "vm.pick_victim",
        params: &[Param { name: "n", ty: Type::I32 }],
        ret: Type::I32,
        regions: &[RegionSpec {
            name: "cands",
            rights: Rights::ReadOnly,
            record_size: 16,
            fields: &[
                Field { name: "vaddr", offset: 0, ty: FieldType::U64, doc: "the page's virtual address" },
                Field { name: "flags", offset: 8, ty: FieldType::U32,
                    doc: "bit0 referenced since the clock's front hand passed, bit1 dirty (evicting costs a write to swap), bit2 inside a range the process marked with vm_mark (e.g. its buffer pool)" },
                Field { name: "age", offset: 12, ty: FieldType::U32, doc: "clock steps since the page was last seen referenced" },
            ],
            extent: Extent::Param(0),
            doc: "the candidate pages the kernel's clock proposes, one record each: inactive pages, then the clock's own choice, then unreferenced pages after it",
        }],
        callables: &VM_CALLABLES,
        validator: Validator::Index { of: 0 },
        reached_from: Reach::PageReplacement,
        result: "the index of the page to evict",
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
            fields: &[Field { name: "block", offset: 0, ty: FieldType::I64, doc: "a block number of the file to read ahead" }],
            extent: Extent::Capacity,
            doc: "room for capacity = len(r1) / 8 block numbers, written by the graft",
        }],
        callables: &FS_CALLABLES,
        validator: Validator::BlockList { out: 1, file: 0 },
        reached_from: Reach::FileRead,
        result: "the count of block numbers written to r1",
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
            fields: &[
                Field { name: "tid", offset: 0, ty: FieldType::U32, doc: "the thread's id" },
                Field { name: "flags", offset: 4, ty: FieldType::U32,
                    doc: "bit0 interactive, bit1 woke from a wait since it last ran, bit2 was preempted" },
                Field { name: "runtime", offset: 8, ty: FieldType::U64, doc: "nanoseconds run so far" },
                Field { name: "wakeups", offset: 16, ty: FieldType::U32, doc: "times it woke from a wait" },
                Field { name: "pad", offset: 20, ty: FieldType::U32, doc: "always 0" },
            ],
            extent: Extent::Param(0),
            doc: "the group's runnable threads, oldest first, one record each",
        }],
        callables: &SCHED_CALLABLES,
        validator: Validator::Index { of: 0 },
        reached_from: Reach::Scheduler,
        result: "the index of the thread to run in the group's turn",
        doc: "Choose which runnable thread of the process group runs in the group's turn.",
    },
    GraftPoint {
        index: point::FS_READ_FILTER,
        name: "fs.read_filter",
        params: FILTER_PARAMS,
        ret: Type::I32,
        regions: FILTER_REGIONS,
        callables: &FS_CALLABLES,
        validator: Validator::ZeroOrNegative,
        reached_from: Reach::FileRead,
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
        validator: Validator::ZeroOrNegative,
        reached_from: Reach::FileWrite,
        result: "0 on success, or a negative error code passed to the writer as EIO",
        doc: "Transform file data written by the process, before it reaches the file system.",
    },
];

/// Every graft point.
pub static GRAFT_POINTS: &[GraftPoint] = POINTS;

/// `a == b`, usable in constants.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `fields` tile a record of `size` bytes exactly: in offset order, each naturally
/// aligned and starting where the previous one ended, the last ending at `size`; and no
/// name twice. A byte buffer (no fields) has records of 1 byte.
pub const fn layout_is_sound(fields: &[Field], size: u32) -> bool {
    if fields.is_empty() {
        return size == 1;
    }
    let mut end = 0;
    let mut i = 0;
    while i < fields.len() {
        let f = fields[i];
        if f.offset != end || !f.offset.is_multiple_of(f.ty.size()) {
            return false;
        }
        end = f.offset + f.ty.size();
        let mut j = 0;
        while j < i {
            if str_eq(fields[j].name, f.name) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    end == size
}

/// Whether a Rust record type's fields (name and type, in order) are exactly region
/// `region` of point `point`'s fields: the kernel's record types assert it at compile time.
pub const fn record_matches(point: usize, region: usize, fields: &[(&str, FieldType)]) -> bool {
    if point >= POINTS.len() || region >= POINTS[point].regions.len() {
        return false;
    }
    let row = POINTS[point].regions[region].fields;
    if row.len() != fields.len() {
        return false;
    }
    let mut i = 0;
    while i < row.len() {
        if !str_eq(row[i].name, fields[i].0) || !matches!((row[i].ty, fields[i].1),
            (FieldType::U32, FieldType::U32) | (FieldType::U64, FieldType::U64) | (FieldType::I64, FieldType::I64))
        {
            return false;
        }
        i += 1;
    }
    true
}

// Every row is sound: its `index` is its row; its record layouts tile their records; the
// validator and the extents name parameters of the right kind and regions that exist.
const _: () = {
    let mut i = 0;
    while i < POINTS.len() {
        let p = &POINTS[i];
        assert!(p.index == i);
        let mut r = 0;
        while r < p.regions.len() {
            let spec = &p.regions[r];
            assert!(layout_is_sound(spec.fields, spec.record_size), "a record layout does not tile its record");
            if let Extent::Param(k) = spec.extent {
                assert!(k < p.params.len() && p.params[k].ty.is_int(), "an extent names a missing or handle parameter");
            }
            r += 1;
        }
        match p.validator {
            Validator::Index { of } => {
                assert!(of < p.params.len() && p.params[of].ty.is_int(), "Index names a missing or handle parameter");
                // The count it bounds the index by is a buffer's count.
                let mut counted = false;
                let mut r = 0;
                while r < p.regions.len() {
                    if let Extent::Param(k) = p.regions[r].extent {
                        counted |= k == of;
                    }
                    r += 1;
                }
                assert!(counted, "Index must name the parameter that counts a buffer's records");
            }
            Validator::BlockList { out, file } => {
                assert!(out >= 1 && out <= p.regions.len(), "BlockList names a missing region");
                let spec = &p.regions[out - 1];
                assert!(spec.rights.writable() && spec.record_size == 8 && spec.fields.len() == 1);
                assert!(matches!(spec.fields[0].ty, FieldType::I64));
                assert!(file < p.params.len() && matches!(p.params[file].ty, Type::Handle(HandleKind::File)));
            }
            Validator::ZeroOrNegative => {}
        }
        i += 1;
    }
};

// Each callable's `id` is its row.
const _: () = {
    let mut i = 0;
    while i < CALLABLE_TABLE.len() {
        assert!(CALLABLE_TABLE[i].id as usize == i);
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
        assert_eq!(pick.validator, Validator::Index { of: 0 });
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

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn unsound_layouts_are_refused() {
        let f = |name, offset, ty| Field { name, offset, ty, doc: "" };
        assert!(layout_is_sound(&[f("a", 0, FieldType::U32), f("b", 4, FieldType::U32)], 8));
        assert!(!layout_is_sound(&[f("a", 0, FieldType::U32), f("b", 4, FieldType::U32)], 12), "a gap at the end");
        assert!(!layout_is_sound(&[f("a", 0, FieldType::U32), f("b", 4, FieldType::U64)], 12), "misaligned");
        assert!(!layout_is_sound(&[f("a", 0, FieldType::U32), f("a", 4, FieldType::U32)], 8), "a name twice");
        assert!(!layout_is_sound(&[f("a", 0, FieldType::U64), f("b", 4, FieldType::U32)], 8), "overlap");
        assert!(layout_is_sound(&[], 1) && !layout_is_sound(&[], 4));
    }

    #[test]
    fn record_types_are_matched_by_name_and_type() {
        use FieldType::*;
        let sched = point::SCHED_PICK_NEXT;
        let ok = [("tid", U32), ("flags", U32), ("runtime", U64), ("wakeups", U32), ("pad", U32)];
        assert!(record_matches(sched, 0, &ok));
        let wrong = [("tid", U32), ("flags", U32), ("runtime", I64), ("wakeups", U32), ("pad", U32)];
        assert!(!record_matches(sched, 0, &wrong));
        assert!(!record_matches(sched, 1, &ok) && !record_matches(99, 0, &ok));
    }
}
