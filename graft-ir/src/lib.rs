//! The graft IR: the typed program format in which processes ship grafts to the kernel.
//!
//! This crate owns the IR types ([`Module`] and below), its binary and text formats, the graft
//! ABI ([`abi`]: graft points and kernel callables), the [`verify`]er that decides what the
//! kernel accepts, and the reference interpreter that defines what a graft means (including
//! every abort). It does not compile anything: `graft-jit` lowers a [`Verified`] module to
//! machine code. It is `no_std` + `alloc` and builds for the kernel and the host alike.
//!
//! ```ignore
//! let module = graft_ir::decode(blob)?;              // or graft_ir::parse(text)?
//! let verified = graft_ir::verify(module)?;          // errors print as a verifier log
//! let r = graft_ir::interpret(&verified, &args, &mut regions, fuel, &mut host);
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
extern crate alloc;

pub mod abi;
pub mod abort;
pub mod binary;
pub mod builder;
pub mod entity;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod mock;
pub mod opcode;
pub mod text;
pub mod types;
pub mod verifier;

pub use abort::AbortReason;
pub use entity::{Block, FuncRef, ImportRef, Region, Value};
pub use ir::{BlockCall, BlockData, BlockParam, Function, Import, Inst, InstData, Module, Resources};
pub use opcode::{Format, IntCC, Opcode};
pub use types::{HandleKind, Signature, Type};
pub use binary::{decode, encode, DecodeError, EncodeError};
pub use text::{parse, ParseError};
pub use verifier::{verify, Verified, VerifyError, VerifyErrors};
pub use interp::{interpret, DataValue, Host};
