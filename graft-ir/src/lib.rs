//! The graft IR: the typed program format in which processes ship grafts to the kernel.
//!
//! This crate owns the IR types ([`Module`] and below), its binary and text formats, the graft
//! ABI ([`abi`]: graft points and kernel callables; [`callables`]: the one implementation of each callable), the [`verify`]er that decides what the
//! kernel accepts, and the reference interpreter that defines what a graft means (including
//! every abort). It does not compile anything: `graft-jit` lowers a [`Verified`] module to
//! machine code. It is `no_std` + `alloc` and builds for the kernel and the host alike.
//!
//! ```
//! use graft_ir::{interp::{initial_data, DataValue}, mock::MockHost};
//!
//! let text = "graft vm.pick_victim
//! resources data_size=8 fuel=100
//!
//! function fn0(i32) -> i32 {
//! b0(v0: i32):
//!     v1 = load.i32 r1[v0 + 12]
//!     return v1
//! }";
//! let module = graft_ir::parse(text)?;                  // or graft_ir::decode(&blob)?
//! let blob = graft_ir::encode(&module)?;                // what graftc ships to the kernel
//! let verified = graft_ir::verify(graft_ir::decode(&blob)?)?; // Err prints a verifier log
//! let mut data = initial_data(verified.module());
//! let mut cands = [0u8; 16];
//! cands[12] = 7;
//! let mut regions: Vec<&mut [u8]> = vec![&mut data, &mut cands];
//! let r = graft_ir::interpret(&verified, &[DataValue::I32(0)], &mut regions, 100, &mut MockHost::default());
//! assert_eq!(r, Ok(DataValue::I32(7)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
extern crate alloc;

pub mod abi;
pub mod abort;
pub mod binary;
pub mod builder;
pub mod callables;
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
