//! The graft IR: types, binary and text formats, the graft ABI, the verifier and the reference
//! interpreter.
#![cfg_attr(not(test), no_std)]
extern crate alloc;
