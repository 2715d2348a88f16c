//! Decode + verify time as a function of module size (run with `cargo bench -p graft-ir`).
//!
//! The module is a chain of diamonds (branch, two arms, join with a block parameter) with
//! arithmetic, compares, loads and stores in every block, so dominance, types and regions
//! are all exercised. Linear verification shows as a flat ns-per-instruction column.

use std::hint::black_box;
use std::time::Instant;

use graft_ir::builder::ModuleBuilder;
use graft_ir::{decode, encode, verify, IntCC, Module, Region, Signature, Type};

/// A module of about `target` instructions.
fn diamonds(target: usize) -> Module {
    let mut mb = ModuleBuilder::new("vm.pick_victim", 4096, 1 << 30);
    let f = mb.declare_function("bench", Signature::new(&[Type::I32], Some(Type::I32)));
    let mut fb = mb.function(f);
    let n = fb.params()[0];
    let mut acc = fb.iconst(Type::I32, 1);
    let mut count = 1;
    while count + 30 < target {
        // head: 6 instructions
        let x = fb.iadd(acc, n);
        let y = fb.load(Type::I32, Region(1), x, 8);
        let z = fb.imul(x, y);
        let c = fb.icmp(IntCC::Ult, z, n);
        let (left, right, join) = (fb.create_block(), fb.create_block(), fb.create_block());
        let p = fb.append_block_param(join, Type::I32);
        let _ = fb.bnot(z);
        fb.brif(c, left, &[], right, &[]);
        // left: 5
        fb.switch_to_block(left);
        let a = fb.isub(z, n);
        fb.store(Region::DATA, a, 16, a);
        let b = fb.load(Type::I32, Region::DATA, a, 4);
        let d = fb.iadd(a, b);
        fb.jump(join, &[d]);
        // right: 4
        fb.switch_to_block(right);
        let a = fb.binary(graft_ir::Opcode::Bxor, z, x);
        let w = fb.sextend(Type::I64, a);
        let a2 = fb.ireduce(Type::I32, w);
        fb.jump(join, &[a2]);
        // join: continues as the next head
        fb.switch_to_block(join);
        acc = fb.iadd(p, acc);
        count += 16;
    }
    fb.ret(Some(acc));
    mb.finish()
}

fn main() {
    println!("{:>12} {:>10} {:>12} {:>12} {:>12}", "insts", "blob KiB", "decode us", "verify us", "ns/inst");
    // 90,000 instructions is about the largest module of this shape under the 1 MiB blob cap.
    for target in [1_000, 10_000, 50_000, 90_000] {
        let m = diamonds(target);
        let insts = m.inst_count();
        let blob = encode(&m).expect("encodes");
        let iters = (2_000_000 / insts).clamp(3, 200);
        let (mut dec, mut ver) = (u128::MAX, u128::MAX);
        for _ in 0..iters {
            let t0 = Instant::now();
            let m = decode(black_box(&blob)).expect("decodes");
            let t1 = Instant::now();
            let v = verify(m).expect("verifies");
            let t2 = Instant::now();
            black_box(v);
            dec = dec.min((t1 - t0).as_nanos());
            ver = ver.min((t2 - t1).as_nanos());
        }
        println!(
            "{insts:>12} {:>10.1} {:>12.1} {:>12.1} {:>12.1}",
            blob.len() as f64 / 1024.0,
            dec as f64 / 1e3,
            ver as f64 / 1e3,
            (dec + ver) as f64 / insts as f64
        );
    }
}
