//! Decoding and verifying hostile or oversized input: typed errors, bounded memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use graft_ir::binary::{DecodeError, EncodeError, FORMAT_VERSION, MAGIC};
use graft_ir::builder::ModuleBuilder;
use graft_ir::limits::*;
use graft_ir::verifier::Rule;
use graft_ir::*;

/// Counts live and peak heap bytes of the measuring thread (other tests run in parallel), so
/// the tests can bound what decoding allocates.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Serialises the tests that measure, since the counters are global.
static MEASURE: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread's allocations are counted (a const-initialised `Cell`: reading it
    /// never allocates).
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    MEASURING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            let size = layout.size() as isize;
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak heap growth of this thread while running `f`.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, PEAK.load(Ordering::Relaxed).max(0) as usize)
}

fn header() -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b
}

/// A postcard varint.
fn varint(mut x: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn hostile_sequence_lengths_do_not_preallocate() {
    // point = "", data_size = 8, fuel = 1, then `data` claims u32::MAX bytes and stops.
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1]);
    varint(u64::from(u32::MAX), &mut blob);
    let (r, peak) = peak_during(|| decode(&blob));
    assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{r:?}");
    assert!(peak < 2 << 20, "decoding a 10-byte blob allocated {peak} bytes");

    // Same, with `functions` claiming 2^60 elements, the first of which claims 2^60 blocks,
    // whose first claims 2^60 instructions.
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0]); // point, resources, data, imports
    varint(1 << 60, &mut blob); // functions
    blob.extend_from_slice(&[0, 0, 0]); // name "", params [], ret None
    varint(1 << 60, &mut blob); // blocks
    blob.push(0); // params []
    varint(1 << 60, &mut blob); // insts
    let (r, peak) = peak_during(|| decode(&blob));
    assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{r:?}");
    assert!(peak < 8 << 20, "decoding a nested hostile blob allocated {peak} bytes");

    // A string claiming more bytes than the blob has.
    let mut blob = header();
    varint(1 << 40, &mut blob);
    assert!(matches!(decode(&blob), Err(DecodeError::Malformed { .. })));
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(decode(b"GR"), Err(DecodeError::Truncated { len: 2 }));
    assert_eq!(decode(b"ELF\x7f\x01\x00"), Err(DecodeError::BadMagic { found: *b"ELF\x7f" }));
    assert_eq!(decode(b"GRIR\x09\x00"), Err(DecodeError::UnsupportedVersion { found: 9 }));
    let big = vec![0u8; MAX_BLOB_SIZE + 1];
    assert_eq!(decode(&big), Err(DecodeError::TooLarge { len: MAX_BLOB_SIZE + 1 }));
    let mut m = encode(&ModuleBuilder::new("vm.pick_victim", 8, 1).finish()).unwrap();
    m.push(0);
    assert_eq!(decode(&m), Err(DecodeError::TrailingBytes { count: 1 }));
}

/// The largest blob of cheap instructions the kernel takes decodes within a fixed multiple of
/// its size.
#[test]
fn decoding_memory_is_linear_in_the_blob() {
    let mut mb = ModuleBuilder::new("vm.pick_victim", 8, 1);
    let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    // `abort 1` encodes in 3 bytes: as many as fit in the largest blob.
    let n = (MAX_BLOB_SIZE - 64) / 3;
    for _ in 0..n {
        fb.abort(1);
    }
    let blob = encode(&mb.finish()).unwrap();
    assert!(blob.len() <= MAX_BLOB_SIZE);
    let (r, peak) = peak_during(|| decode(&blob));
    let m = r.unwrap();
    assert_eq!(m.inst_count(), n);
    println!("blob {} bytes, peak decode memory {} bytes", blob.len(), peak);
    assert!(peak <= MAX_DECODE_EXPANSION * blob.len(), "peak {peak} for a blob of {}", blob.len());
    // One byte more than the kernel takes is refused before any parsing, by decode and encode.
    assert!(matches!(decode(&vec![0u8; MAX_BLOB_SIZE + 1]), Err(DecodeError::TooLarge { .. })));
    let mut mb = ModuleBuilder::new("vm.pick_victim", 8, 1);
    let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    for _ in 0..MAX_BLOB_SIZE / 3 + 1 {
        fb.abort(1);
    }
    assert!(matches!(encode(&mb.finish()), Err(EncodeError::TooLarge { .. })));
}

/// 16 KiB blobs whose counts claim far more elements than the bytes hold, at every level of
/// nesting, or more than the verifier allows: refused at the count, before allocating.
#[test]
fn lying_counts_in_a_full_size_blob_stay_small() {
    let fill = |blob: &mut Vec<u8>, unit: &[u8]| {
        while blob.len() + unit.len() <= MAX_BLOB_SIZE {
            blob.extend_from_slice(unit);
        }
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // `functions` claims 2^40, then minimal functions (name "", no params, no ret, no blocks).
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0]); // point "", resources, data [], imports []
    varint(1 << 40, &mut blob);
    fill(&mut blob, &[0, 0, 0, 0]);
    cases.push(("functions", blob));
    // One function whose `blocks` claims 2^40, then empty blocks (no params, no insts).
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0, 1, 0, 0, 0]);
    varint(1 << 40, &mut blob);
    fill(&mut blob, &[0, 0]);
    cases.push(("blocks", blob));
    // One block whose `insts` claims 2^40, then `iadd` instructions.
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0, 1, 0, 0, 0, 1, 0]);
    varint(1 << 40, &mut blob);
    // The bytes of one `iadd v0, v0`, as the encoder writes it: the difference between
    // blocks of two and of one.
    let block_of = |k: usize| {
        let mut mb = ModuleBuilder::new("", 8, 1);
        let f = mb.declare_function("", Signature::new(&[Type::I32], None));
        let mut fb = mb.function(f);
        let p = fb.params()[0];
        for _ in 0..k {
            fb.iadd(p, p);
        }
        encode(&mb.finish()).unwrap()
    };
    let (one, two) = (block_of(1), block_of(2));
    let at = one.iter().zip(&two).position(|(a, b)| a != b).unwrap_or(one.len());
    let unit_len = two.len() - one.len();
    // The count byte differs; the new instruction is the `unit_len` bytes ending where `one` ends.
    let unit = two[one.len()..].to_vec();
    assert!(at < one.len() && unit_len == unit.len() && unit_len <= 8, "iadd encodes in {unit_len} bytes");
    fill(&mut blob, &unit);
    cases.push(("insts", blob));
    // The data section claims 2^40 bytes.
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1]);
    varint(1 << 40, &mut blob);
    fill(&mut blob, &[7]);
    cases.push(("data", blob));
    // Counts the bytes could hold but the verifier's limits do not allow: 1025 functions,
    // 65 imports, a function of 33 parameters.
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0]);
    varint(MAX_FUNCTIONS as u64 + 1, &mut blob);
    fill(&mut blob, &[0, 0, 0, 0]);
    cases.push(("functions over the limit", blob));
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0]);
    varint(MAX_IMPORTS as u64 + 1, &mut blob);
    fill(&mut blob, &[0, 0, 0]);
    cases.push(("imports over the limit", blob));
    let mut blob = header();
    blob.extend_from_slice(&[0, 8, 1, 0, 0, 1, 0]);
    varint(MAX_PARAMS as u64 + 1, &mut blob);
    fill(&mut blob, &[2]);
    cases.push(("parameters over the limit", blob));
    for (what, blob) in cases {
        assert!(blob.len() > MAX_BLOB_SIZE - 8 && blob.len() <= MAX_BLOB_SIZE);
        let (r, peak) = peak_during(|| decode(&blob));
        println!("lying {what}: blob {} bytes, peak decode memory {peak} bytes: {r:?}", blob.len());
        assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{what}: a lying count decoded: {r:?}");
        // Refused at the count: nothing is allocated for the elements it claims.
        assert!(peak <= 1024, "{what}: peak {peak} for a blob of {}", blob.len());
    }
}

fn simple(insts_per_block: usize, blocks: usize) -> Module {
    let mut mb = ModuleBuilder::new("vm.pick_victim", 8, 1);
    let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    let p = fb.params()[0];
    for b in 0..blocks {
        for _ in 0..insts_per_block.saturating_sub(1) {
            fb.iadd(p, p);
        }
        if b + 1 == blocks {
            fb.ret(Some(p));
        } else {
            let next = fb.create_block();
            fb.jump(next, &[]);
            fb.switch_to_block(next);
        }
    }
    mb.finish()
}

#[test]
fn size_limits() {
    assert!(verify(simple(100, 100)).is_ok());
    let e = verify(simple(MAX_BLOCK_INSTS + 1, 1)).unwrap_err();
    assert!(e.to_string().contains("exceed the per-block limit"), "{e}");
    let e = verify(simple(2, MAX_BLOCKS + 1)).unwrap_err();
    assert!(e.to_string().contains("blocks exceed the limit"), "{e}");
    let e = verify(simple(MAX_BLOCK_INSTS, MAX_INSTS / MAX_BLOCK_INSTS + 1)).unwrap_err();
    assert!(e.to_string().contains("instructions exceed the limit"), "{e}");

    let mut m = simple(1, 1);
    let f0 = m.functions[0].clone();
    m.functions.resize(MAX_FUNCTIONS + 1, f0);
    assert!(verify(m).unwrap_err().to_string().contains("functions exceed the limit"));

    let mut m = simple(1, 1);
    for c in graft_ir::abi::CALLABLES.iter().cycle().take(MAX_IMPORTS + 1) {
        m.imports.push(Import { name: c.name.into(), sig: c.signature() });
    }
    assert!(verify(m).unwrap_err().to_string().contains("imports exceed the limit"));
}

#[test]
fn error_count_is_capped() {
    // Thousands of type errors: the log keeps MAX_ERRORS and counts the rest.
    let mut mb = ModuleBuilder::new("vm.pick_victim", 8, 1);
    let f = mb.declare_function("", Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    let p = fb.params()[0];
    let wide = fb.sextend(Type::I64, p);
    for _ in 0..5000 {
        fb.iadd(p, wide);
    }
    fb.ret(Some(p));
    let e = verify(mb.finish()).unwrap_err();
    assert_eq!(e.errors.len(), graft_ir::verifier::MAX_ERRORS);
    assert_eq!(e.count(), 5000);
    assert!(e.to_string().ends_with("verification failed: 5000 errors"));
}

#[test]
fn format_mismatch_from_binary_is_rejected() {
    // The text syntax cannot express an opcode in the wrong format; a blob can.
    let mut m = simple(1, 1);
    m.functions[0].blocks[0].insts.insert(
        0,
        Inst { result: Some(Value(1)), data: InstData::Binary { op: Opcode::Icmp, args: [Value(0), Value(0)] } },
    );
    let e = verify(m).unwrap_err();
    assert!(e.has(Rule::Format), "{e}");
    // An iadd without a result: also only possible in a blob.
    let mut m = simple(1, 1);
    m.functions[0].blocks[0]
        .insts
        .insert(0, Inst { result: None, data: InstData::Binary { op: Opcode::Iadd, args: [Value(0), Value(0)] } });
    let e = verify(m).unwrap_err();
    assert!(e.to_string().contains("iadd produces a value, but no result is named"), "{e}");
    // A function name the text format could not print.
    let mut m = simple(1, 1);
    m.functions[0].name = "9 lives".into();
    assert!(verify(m).unwrap_err().has(Rule::FunctionName));
}

