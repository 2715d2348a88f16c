//! The binary format: `GRIR` magic, a little-endian `u16` format version, then the module in
//! postcard.
//!
//! Decoding takes bytes from an untrusted process, so it never panics and its memory use is
//! bounded by the input: blobs over [`MAX_BLOB_SIZE`] are refused before parsing, the module
//! types are not recursive (so nesting depth is fixed), and every sequence is decoded through
//! `bounded`: a declared count larger than the bytes left (each element takes at least one) or
//! than the verifier's limit for that sequence is refused before anything is allocated, and at
//! most 16 elements are reserved ahead of decoding them (a sequence then grows, fallibly, as its
//! elements are read from bytes that exist). Memory is then a fixed multiple of the blob
//! ([`crate::limits::MAX_DECODE_EXPANSION`]), whatever its counts claim: the in-memory size of
//! the densest element over its smallest encoding (an 80-byte instruction from 3 bytes), times
//! at most two for a vector's growth; `tests/limits.rs` measures it for honest and lying blobs. Decoding checks only the encoding; everything
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
            // Postcard keeps no message for the module types' own refusals: say what they are.
            DecodeError::Malformed { error: postcard::Error::SerdeDeCustom } => write!(
                f,
                "malformed module body: a declared count exceeds the bytes left in the blob or the \
                 verifier's limit for that sequence, or an enum tag is unknown"
            ),
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

/// Bounded sequences: every `Vec` of the module types is decoded through one of these
/// (`#[serde(deserialize_with)]`), which refuses a declared count larger than the bytes left
/// in the blob (every element takes at least one byte) or than the verifier's limit for that
/// sequence, before anything is allocated; and then reserves at most [`TRUSTED_COUNT`]
/// elements ahead of decoding them.
pub(crate) mod bounded {
    use alloc::vec::Vec;
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

    use crate::limits::*;

    struct Bounded<T> {
        max: usize,
        what: &'static str,
        _t: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "at most {} {}, each in at least one byte of the blob", self.max, self.what)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The decoder's flavor reports the bytes left, and postcard hints the declared
            // count only when it is no more than that.
            let Some(len) = seq.size_hint() else {
                return Err(A::Error::custom("a declared count exceeds the bytes left in the blob"));
            };
            if len > self.max {
                return Err(A::Error::invalid_length(len, &self));
            }
            let mut v = Vec::new();
            v.try_reserve_exact(len.min(super::TRUSTED_COUNT)).map_err(|_| A::Error::custom("out of memory"))?;
            while let Some(x) = seq.next_element()? {
                if v.len() == v.capacity() {
                    v.try_reserve(1).map_err(|_| A::Error::custom("out of memory"))?;
                }
                v.push(x);
            }
            Ok(v)
        }
    }

    fn bounded<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, max: usize, what: &'static str) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Bounded { max, what, _t: PhantomData })
    }

    /// The data section: at most the largest data region.
    pub(crate) fn data<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_DATA_SIZE as usize, "bytes of data")
    }
    /// Imports.
    pub(crate) fn imports<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_IMPORTS, "imports")
    }
    /// Functions.
    pub(crate) fn functions<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_FUNCTIONS, "functions")
    }
    /// Blocks of a function.
    pub(crate) fn blocks<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_BLOCKS, "blocks")
    }
    /// Instructions of a block.
    pub(crate) fn insts<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_BLOCK_INSTS, "instructions")
    }
    /// Parameters and arguments of a function, block or call.
    pub(crate) fn params<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        bounded(d, MAX_PARAMS, "parameters or arguments")
    }
}

/// A slice flavor that reports the bytes left to size hints (postcard then hints a declared
/// count only when the bytes could hold it: see [`bounded`]). Reading is unchanged.
struct Untrusting<'de>(Slice<'de>);

impl<'de> Flavor<'de> for Untrusting<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        self.0.pop()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.size_hint().unwrap_or(0))
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
