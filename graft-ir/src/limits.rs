//! Size and resource limits the verifier enforces and the runtime relies on.
//!
//! They bound the kernel's work per graft: decoding and verifying are linear in the blob,
//! and every per-call structure (frames, value slots) has a fixed maximum.

/// Largest accepted binary blob, in bytes.
pub const MAX_BLOB_SIZE: usize = 1 << 20;
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
/// Most fuel a graft may request per call.
pub const MAX_FUEL: u64 = 1 << 32;
/// Deepest nesting of internal-function frames; the entry function is depth 1.
pub const MAX_CALL_DEPTH: u32 = 64;
/// Largest static offset of a load or store (keeps `imm` in the range every region check
/// and the JIT's address arithmetic handle without overflow concerns).
pub const MAX_IMM_OFFSET: u32 = 1 << 24;
