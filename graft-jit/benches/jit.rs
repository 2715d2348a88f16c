//! Host figures for the JIT: compile time and code size of 50- and 500-instruction
//! functions, and the cost of the sandbox checks on a memory-heavy loop (checked lowering
//! versus the benchmark-only unchecked lowering). Prints a table; asserts nothing.
//!
//! `cargo bench -p graft-jit` (wall time on a noisy machine: compare the ratios, which are
//! measured in one run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use graft_ir::builder::ModuleBuilder;
use graft_ir::interp::DataValue;
use graft_ir::mock::MockHost;
use graft_ir::{HandleKind, IntCC, Opcode, Region, Type, Verified};
use graft_jit::host::Loaded;
use graft_jit::{Options, Unchecked};

/// `fn0(i32) -> i32` of about `n` instructions: arithmetic chains with data-region loads and
/// stores mixed in, ending in one return.
fn straight_line(n: usize) -> Verified {
    let mut mb = ModuleBuilder::new("vm.pick_victim", 4096, graft_ir::limits::MAX_FUEL);
    let f = mb.declare_function("body", graft_ir::Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    let mut x = fb.params()[0];
    let mut k = 1;
    let ops = [Opcode::Iadd, Opcode::Imul, Opcode::Bxor, Opcode::Isub, Opcode::Ushr, Opcode::Bor];
    let mut count = 0;
    while count + 4 < n {
        let c = fb.iconst(Type::I32, k);
        x = fb.binary(ops[k as usize % ops.len()], x, c);
        if k % 3 == 0 {
            fb.store(Region::DATA, x, 16, x);
            x = fb.load(Type::I32, Region::DATA, x, 8);
            count += 2;
        }
        count += 2;
        k += 1;
    }
    fb.ret(Some(x));
    graft_ir::verify(mb.finish()).expect("benchmark module verifies")
}

/// `fs.read_filter` that, for every 4-byte word of the buffer, looks each byte up in a
/// 256-byte table in the data region and writes the word back transformed: four loads from
/// `r0` and two accesses to `r1` per iteration.
fn memory_loop() -> Verified {
    let mut mb = ModuleBuilder::new("fs.read_filter", 256, graft_ir::limits::MAX_FUEL);
    let table: Vec<u8> = (0..=255u8).map(|b| b.rotate_left(3) ^ 0x5a).collect();
    mb.set_data(&table);
    let sig = graft_ir::Signature::new(&[Type::Handle(HandleKind::File), Type::I64, Type::I32], Some(Type::I32));
    let f = mb.declare_function("filter", sig);
    let mut fb = mb.function(f);
    let len = fb.params()[2];
    let zero = fb.iconst(Type::I32, 0);
    let body = fb.create_block();
    let i = fb.append_block_param(body, Type::I32);
    let done = fb.create_block();
    fb.jump(body, &[zero]);
    fb.switch_to_block(body);
    let word = fb.load(Type::I32, Region(1), i, 0);
    let mut out = fb.iconst(Type::I32, 0);
    for byte in 0..4 {
        let sh = fb.iconst(Type::I32, byte * 8);
        let b = fb.binary(Opcode::Ushr, word, sh);
        let ff = fb.iconst(Type::I32, 0xff);
        let b = fb.binary(Opcode::Band, b, ff);
        let t = fb.load(Type::I8, Region::DATA, b, 0);
        let t = fb.uextend(Type::I32, t);
        let t = fb.binary(Opcode::Ishl, t, sh);
        out = fb.binary(Opcode::Bor, out, t);
    }
    fb.store(Region(1), i, 0, out);
    let four = fb.iconst(Type::I32, 4);
    let next = fb.iadd(i, four);
    let more = fb.icmp(IntCC::Slt, next, len);
    fb.brif(more, body, &[next], done, &[]);
    fb.switch_to_block(done);
    let r = fb.iconst(Type::I32, 0);
    fb.ret(Some(r));
    graft_ir::verify(mb.finish()).expect("benchmark module verifies")
}

/// With `GRAFT_BENCH_DUMP=DIR`, write each variant's code to `DIR/<what>.bin` (for
/// `objdump -D -b binary -mi386:x86-64`).
fn dump(what: &str, code: &[u8]) {
    if let Ok(dir) = std::env::var("GRAFT_BENCH_DUMP") {
        let name: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.bin")), code).expect("dump written");
    }
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    // Best of five batches: the least disturbed by the rest of the machine.
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .min()
        .unwrap_or_default()
}

fn compile_figures() {
    println!("compile time and code size (opt_level=speed, x86-64 baseline):");
    let t = time(20, || {
        black_box(graft_jit::isa::build().expect("isa"));
    });
    println!("  building the target ISA:           {:>9.1} us", t.as_secs_f64() * 1e6);
    for n in [50, 500] {
        let v = straight_line(n);
        let insts = v.module().inst_count();
        let compiled = graft_jit::compile(&v).expect("compiles");
        let t = time(if n < 100 { 200 } else { 40 }, || {
            black_box(graft_jit::compile(&v).expect("compiles"));
        });
        let f0 = compiled.function_offsets()[0] as usize;
        let fn_bytes = compiled.code().len() - f0;
        println!(
            "  {insts:>3}-instruction function:        {:>9.1} us   {fn_bytes:>5} bytes of code ({:.1} B/inst), blob {} bytes, {} trap sites",
            t.as_secs_f64() * 1e6,
            fn_bytes as f64 / insts as f64,
            compiled.code().len(),
            compiled.traps().sites().len()
        );
    }
}

fn sandbox_figures() {
    const LEN: usize = 64 * 1024;
    let v = memory_loop();
    println!("sandbox checks on a memory-heavy loop ({} IR insts/iteration, {LEN}-byte buffer):", v.module().functions[0].blocks[1].insts.len());
    let variants = [
        ("checked (default)", Unchecked { memory: false, fuel: false }),
        ("no region checks", Unchecked { memory: true, fuel: false }),
        ("no region or fuel checks", Unchecked { memory: true, fuel: true }),
    ];
    let mut base = None;
    for (name, unchecked) in variants {
        let compiled = graft_jit::compile_with(&v, &Options { verify_ir: false, unchecked }).expect("compiles");
        dump(&format!("memory-loop {name}"), compiled.code());
        let loaded = Loaded::new(&compiled).expect("loads");
        let mut data = graft_ir::interp::initial_data(v.module());
        let mut buf = vec![0x11u8; LEN];
        let args = [DataValue::Handle(HandleKind::File, 1), DataValue::I64(0), DataValue::I32(LEN as i32)];
        let mut host = MockHost::default();
        let t = time(20, || {
            let mut fuel = graft_ir::limits::MAX_FUEL;
            let r = loaded.call(&args, &mut [&mut data, &mut buf], &mut fuel, &mut host);
            assert_eq!(r, Ok(Some(DataValue::I32(0))));
        });
        let per_byte = t.as_secs_f64() * 1e9 / LEN as f64;
        let ratio = match base {
            None => {
                base = Some(per_byte);
                1.0
            }
            Some(b) => b / per_byte,
        };
        println!(
            "  {name:<26} {:>8.1} us/call  {per_byte:>6.3} ns/byte  code {:>4} bytes  checked takes {ratio:.2}x this",
            t.as_secs_f64() * 1e6,
            compiled.code().len() - compiled.function_offsets()[0] as usize
        );
    }
}

/// One XTEA encryption of the 64-bit block `v1:v0` (32 cycles), as the sample graft does it.
fn xtea_native(key: &[u32; 4], block: u64) -> u64 {
    let (mut v0, mut v1) = (block as u32, (block >> 32) as u32);
    let mut sum = 0u32;
    for _ in 0..32 {
        v0 = v0.wrapping_add((((v1 << 4) ^ (v1 >> 5)).wrapping_add(v1)) ^ sum.wrapping_add(key[(sum & 3) as usize]));
        sum = sum.wrapping_add(0x9E37_79B9);
        v1 = v1.wrapping_add((((v0 << 4) ^ (v0 >> 5)).wrapping_add(v0)) ^ sum.wrapping_add(key[((sum >> 11) & 3) as usize]));
    }
    (u64::from(v1) << 32) | u64::from(v0)
}

/// The sample's read filter in Rust: XTEA in counter mode over `buf`, file offset `offset`.
#[inline(never)]
fn xtea_ctr_native(key: &[u32; 4], nonce: u64, offset: i64, buf: &mut [u8]) {
    let mut block = -1i64;
    let mut stream = 0u64;
    for (j, b) in buf.iter_mut().enumerate() {
        let p = offset + j as i64;
        if p / 8 != block {
            block = p / 8;
            stream = xtea_native(key, nonce ^ block as u64);
        }
        *b ^= (stream >> ((p % 8) as u64 * 8)) as u8;
    }
}

/// XTEA-CTR on 512 bytes (`sample-grafts/xtea_read_filter.graft`, its IR in
/// `xtea_read_filter.gir`): native Rust against the JIT with every check, without region
/// checks, and with neither. Rounds are interleaved and the median of each is kept, so the
/// ratios are measured under the same machine load.
fn xtea_figures() {
    const LEN: usize = 512;
    const ROUNDS: usize = 41;
    const ITERS: u32 = 200;
    let module = graft_ir::parse(include_str!("xtea_read_filter.gir")).expect("xtea IR parses");
    let v = graft_ir::verify(module).expect("xtea IR verifies");
    let key = [0x0123_4567u32, 0x89ab_cdef, 0xfedc_ba98, 0x7654_3210];
    let nonce = 0x5eed_0000_0000_0000u64;
    let variants = [
        ("graft-jit, every check", Unchecked { memory: false, fuel: false }),
        ("graft-jit, no region checks", Unchecked { memory: true, fuel: false }),
        ("graft-jit, no region or fuel checks", Unchecked { memory: true, fuel: true }),
    ];
    let loaded: Vec<(&str, Loaded, usize)> = variants
        .iter()
        .map(|&(name, unchecked)| {
            let c = graft_jit::compile_with(&v, &Options { verify_ir: false, unchecked }).expect("compiles");
            let size = c.code().len();
            dump(&format!("xtea {name}"), c.code());
            (name, Loaded::new(&c).expect("loads"), size)
        })
        .collect();
    let mut data = graft_ir::interp::initial_data(v.module());
    let args = [DataValue::Handle(HandleKind::File, 1), DataValue::I64(0), DataValue::I32(LEN as i32)];
    let mut host = MockHost::default();
    // The JIT and native must agree before anything is timed.
    let mut expect = vec![0x5au8; LEN];
    xtea_ctr_native(&key, nonce, 0, &mut expect);
    let mut fuel_used = None;
    for (_, l, _) in &loaded {
        let mut buf = vec![0x5au8; LEN];
        let mut fuel = graft_ir::limits::MAX_FUEL;
        let r = l.call(&args, &mut [&mut data, &mut buf], &mut fuel, &mut host);
        assert_eq!(r, Ok(Some(DataValue::I32(0))));
        assert_eq!(buf, expect, "the JIT's XTEA differs from native");
        // The first variant is the one with fuel checks.
        fuel_used.get_or_insert(graft_ir::limits::MAX_FUEL - fuel);
    }
    let fuel_used = fuel_used.unwrap_or_default();
    let mut samples = vec![Vec::with_capacity(ROUNDS); loaded.len() + 1];
    let mut buf = vec![0x5au8; LEN];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..ITERS {
            xtea_ctr_native(black_box(&key), black_box(nonce), 0, black_box(&mut buf));
        }
        samples[0].push(t.elapsed() / ITERS);
        for (k, (_, l, _)) in loaded.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..ITERS {
                let mut fuel = graft_ir::limits::MAX_FUEL;
                let r = l.call(&args, &mut [&mut data, &mut buf], &mut fuel, &mut host);
                debug_assert_eq!(r, Ok(Some(DataValue::I32(0))));
            }
            samples[k + 1].push(t.elapsed() / ITERS);
        }
    }
    let median = |s: &mut Vec<Duration>| {
        s.sort();
        s[s.len() / 2]
    };
    let native = median(&mut samples[0]);
    println!("XTEA-CTR, {LEN} bytes (medians of {ROUNDS} interleaved rounds; the graft uses {fuel_used} fuel):");
    println!("  {:<36} {:>8.2} us/call  1.00x", "native Rust", native.as_secs_f64() * 1e6);
    for (k, (name, _, size)) in loaded.iter().enumerate() {
        let t = median(&mut samples[k + 1]);
        println!(
            "  {name:<36} {:>8.2} us/call  {:.2}x native  blob {size} bytes",
            t.as_secs_f64() * 1e6,
            t.as_secs_f64() / native.as_secs_f64()
        );
    }
}

fn main() {
    compile_figures();
    sandbox_figures();
    xtea_figures();
}
