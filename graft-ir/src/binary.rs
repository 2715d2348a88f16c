//! The binary format: `GRIR` magic, a little-endian `u16` format version, then the module in
//! postcard.
//!
//! Decoding takes bytes from an untrusted process, so it never panics and its memory use is
//! bounded by the input: blobs over [`MAX_BLOB_SIZE`] are refused before parsing, the module
//! types are not recursive (so nesting depth is fixed), and a count read from the blob reserves
//! memory only up to 16 elements (`Untrusting`): beyond that a sequence grows as its elements
//! are actually decoded from bytes that exist, so a declared count larger than the bytes left
//! fails when they run out, having allocated only for what was there. Memory is then a fixed
//! multiple of the blob, whatever its counts claim: the in-memory size of the densest element
//! over its smallest encoding (an 80-byte instruction from 3 bytes), times at most two for a
//! vector's growth; `tests/limits.rs` measures it for honest and lying blobs. Decoding checks only the encoding; everything
//! else is the verifier's job.

use alloc::vec::Vec;
use core::fmt;

use postcard::de_flavors::{Flavor, Slice};
use serde::Deserialize;

use crate::ir::Module;
use crate::limits::MAX_BLOB_SIZE;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"GRIR";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Magic plus version.
pub const HEADER_LEN: usize = 6;

/// Why a blob could not be decoded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// The blob is larger than [`MAX_BLOB_SIZE`].
    TooLarge {
        /// The blob's length.
        len: usize,
    },
    /// The blob is shorter than the header.
    Truncated {
        /// The blob's length.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A format version this crate does not read.
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The postcard body does not decode as a module.
    Malformed {
        /// Postcard's description of the problem.
        error: postcard::Error,
    },
    /// Bytes left over after the module.
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { len } => {
                write!(f, "blob of {len} bytes exceeds the limit of {MAX_BLOB_SIZE} bytes")
            }
            DecodeError::Truncated { len } => {
                write!(f, "blob of {len} bytes is shorter than the {HEADER_LEN}-byte header")
            }
            DecodeError::BadMagic { found } => {
                write!(f, "bad magic {found:02x?}, expected {MAGIC:02x?} (\"GRIR\")")
            }
            DecodeError::UnsupportedVersion { found } => {
                write!(f, "format version {found} is not supported (this kernel reads {FORMAT_VERSION})")
            }
            DecodeError::Malformed { error } => write!(f, "malformed module body: {error}"),
            DecodeError::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the module")
            }
        }
    }
}

/// Why a module could not be encoded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum EncodeError {
    /// The encoding would exceed [`MAX_BLOB_SIZE`], so no kernel would accept it.
    TooLarge {
        /// The encoded length.
        len: usize,
    },
    /// Postcard failed (only possible if serialization itself fails).
    Serialize {
        /// Postcard's description of the problem.
        error: postcard::Error,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge { len } => {
                write!(f, "encoded module of {len} bytes exceeds the limit of {MAX_BLOB_SIZE} bytes")
            }
            EncodeError::Serialize { error } => write!(f, "cannot serialize module: {error}"),
        }
    }
}

/// Encode a module as a blob.
pub fn encode(module: &Module) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let out = postcard::to_extend(module, out).map_err(|error| EncodeError::Serialize { error })?;
    if out.len() > MAX_BLOB_SIZE {
        return Err(EncodeError::TooLarge { len: out.len() });
    }
    Ok(out)
}

/// Decode a blob. Any byte string gives a module or a [`DecodeError`], never a panic.
pub fn decode(bytes: &[u8]) -> Result<Module, DecodeError> {
    if bytes.len() > MAX_BLOB_SIZE {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let (magic, rest) = match (bytes.get(..4), bytes.get(4..HEADER_LEN), bytes.get(HEADER_LEN..)) {
        (Some(m), Some(v), Some(rest)) => ((m, v), rest),
        _ => return Err(DecodeError::Truncated { len: bytes.len() }),
    };
    let (magic, version) = magic;
    if magic != MAGIC {
        let mut found = [0; 4];
        found.copy_from_slice(magic);
        return Err(DecodeError::BadMagic { found });
    }
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let mut de = postcard::Deserializer::from_flavor(Untrusting(postcard::de_flavors::Slice::new(rest)));
    let module = Module::deserialize(&mut de).map_err(|error| DecodeError::Malformed { error })?;
    let trailing = de.finalize().map_err(|error| DecodeError::Malformed { error })?;
    if !trailing.is_empty() {
        return Err(DecodeError::TrailingBytes { count: trailing.len() });
    }
    Ok(module)
}

/// The largest declared count that reserves memory before its elements are decoded.
const TRUSTED_COUNT: usize = 16;

/// A slice flavor that reports no remaining bytes to size hints, so that postcard gives serde
/// no length to preallocate by: untrusted counts never reserve memory. Reading is unchanged.
struct Untrusting<'de>(Slice<'de>);

impl<'de> Flavor<'de> for Untrusting<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        self.0.pop()
    }

    /// Postcard hints a sequence's declared length only when it is at most this: short
    /// sequences (the common case: block parameters, call arguments, the instructions of
    /// small blocks) are reserved exactly, and no count can reserve more than
    /// [`TRUSTED_COUNT`] elements before they are decoded.
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.size_hint().unwrap_or(0).min(TRUSTED_COUNT))
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        self.0.try_take_n(ct)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        self.0.finalize()
    }
}

impl core::error::Error for DecodeError {}
impl core::error::Error for EncodeError {}
