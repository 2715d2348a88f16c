//! Every limit a graft writer can hit, defined once: the verifier and the decoder enforce
//! them, the kernel loads exactly what they allow (it has no limits of its own on these), and
//! `graftc check`/`build` refuse what the kernel would refuse.
//!
//! They bound the kernel's work per graft: decoding and verifying are linear in the blob,
//! and every per-call structure (frames, value slots) has a fixed maximum.

/// Largest accepted binary blob, in bytes: what the kernel's loader takes (`graft_load`).
/// Decoding a blob expands it in memory, so the kernel takes far less than the sizes below
/// would allow on their own; real grafts are a few KiB.
pub const MAX_BLOB_SIZE: usize = 16 * 1024;
/// Most functions in a module.
pub const MAX_FUNCTIONS: usize = 1024;
/// Most blocks in one function.
pub const MAX_BLOCKS: usize = 64 * 1024;
/// Most instructions in one block (terminator included).
pub const MAX_BLOCK_INSTS: usize = 64 * 1024;
/// Most instructions in the whole module.
pub const MAX_INSTS: usize = 256 * 1024;
/// Most parameters of a function, block or call.
pub const MAX_PARAMS: usize = 32;
/// Most imports in a module.
pub const MAX_IMPORTS: usize = 64;
/// Longest function name in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Smallest data region size (so that any access width fits in the region).
pub const MIN_DATA_SIZE: u32 = 8;
/// Largest data region size.
pub const MAX_DATA_SIZE: u32 = 1 << 20;
/// Most fuel a graft may request per call: the verifier refuses more (the kernel grants
/// exactly what a verified module asks for, never silently less).
pub const MAX_FUEL: u64 = 1_000_000;
/// Deepest nesting of internal-function frames; the entry function is depth 1.
pub const MAX_CALL_DEPTH: u32 = 64;
/// Bytes of stack the graft's own frames may use in one call (the kernel's graft stack less
/// what it keeps for the callables the graft calls): frames that would go deeper abort
/// `StackOverflow`, which large frames can reach before `MAX_CALL_DEPTH`. `graftc run` gives
/// the JIT the same budget.
pub const GRAFT_STACK_FRAMES: u64 = 64 * 1024;
/// Largest static offset of a load or store (keeps `imm` in the range every region check
/// and the JIT's address arithmetic handle without overflow concerns).
pub const MAX_IMM_OFFSET: u32 = 1 << 24;
/// Decoding a blob of `n` bytes allocates at most `n * MAX_DECODE_EXPANSION` bytes at its peak,
/// whatever the blob's counts claim (`tests/limits.rs` measures the densest honest and lying
/// blobs against it): what a loader can charge before it decodes.
pub const MAX_DECODE_EXPANSION: usize = 64;
