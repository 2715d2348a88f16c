//! What language constructs compute, checked by running small grafts on graft-ir's reference
//! interpreter and on the JIT (without the point's result validator, so any i32 can come
//! back); the two must agree on the outcome and the fuel left.

use graft_ir::interp::{initial_data, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::AbortReason;
use graftc::{compile, CompileError, Options};

/// Run `items` (which must define `graft vm.pick_victim(cands: buffer, n: i32) -> i32`) with
/// `n` and a 64-byte candidate buffer holding 0, 1, 2, ...
fn eval(items: &str, n: i32) -> Result<i32, AbortReason> {
    let compiled = match compile(items, Options::default()) {
        Ok(c) => c,
        Err(CompileError::Source(d)) => panic!("{}", graftc::diag::render_plain("t.graft", items, &d)),
        Err(e) => panic!("{e}"),
    };
    let run = |jit: bool| {
        let mut data = initial_data(compiled.verified.module());
        let mut cands: Vec<u8> = (0..64u8).collect();
        let mut regions: Vec<&mut [u8]> = vec![&mut data, &mut cands];
        let mut fuel = 1_000_000;
        let args = [DataValue::I32(n)];
        let r = if jit {
            let loaded = graft_jit::host::Loaded::compile(&compiled.verified).expect("the JIT compiles verified code");
            loaded.call(&args, &mut regions, &mut fuel, &mut MockHost::default())
        } else {
            graft_ir::interp::run(&compiled.verified, graft_ir::Module::ENTRY, &args, &mut regions, &mut fuel, &mut MockHost::default())
        };
        (r.map(|v| v.map(|v| v.as_i64() as i32)), fuel, data)
    };
    let (interp, jit) = (run(false), run(true));
    assert_eq!(interp, jit, "interpreter and JIT disagree on\n{items}");
    interp.0.map(|v| v.unwrap_or(i32::MIN))
}

fn body(b: &str) -> String {
    format!("graft vm.pick_victim(cands: buffer, n: i32) -> i32 {{\n{b}\n}}\n")
}

#[test]
fn arithmetic_signed_and_unsigned() {
    assert_eq!(eval(&body("return -7 / 2;"), 0), Ok(-3));
    assert_eq!(eval(&body("return -7 % 2;"), 0), Ok(-1));
    assert_eq!(eval(&body("let x = 0xFFFFFFF9u32; return (x / 2) as i32;"), 0), Ok(0x7FFF_FFFC));
    assert_eq!(eval(&body("return (-16 >> 2);"), 0), Ok(-4));
    assert_eq!(eval(&body("return ((0xFFFFFFF0u32 >> 2) >> 28) as i32;"), 0), Ok(3));
    assert_eq!(eval(&body("let b: u8 = 200; return (b as i8) as i32;"), 0), Ok(-56));
    assert_eq!(eval(&body("let b: u8 = 200; return b as i32;"), 0), Ok(200));
    assert_eq!(eval(&body("return (0x1_0000_0005i64 as i32);"), 0), Ok(5));
    assert_eq!(eval(&body("return rotl(0x80000001u32, 1) as i32;"), 0), Ok(3));
    assert_eq!(eval(&body("return !0;"), 0), Ok(-1));
    assert_eq!(eval(&body("return n / (n - n);"), 3), Err(AbortReason::DivisionByZero));
    assert_eq!(eval(&body("let m = -2147483648; return m / (n - 4);"), 3), Err(AbortReason::IntegerOverflow));
}

#[test]
fn comparisons_follow_signedness() {
    assert_eq!(eval(&body("if -1 < 1 { return 1; } return 0;"), 0), Ok(1));
    assert_eq!(eval(&body("if 0xFFFFFFFFu32 < 1u32 { return 1; } return 0;"), 0), Ok(0));
    assert_eq!(eval(&body("let t = true; let f = !t; if f == false && t != f { return 1; } return 0;"), 0), Ok(1));
}

#[test]
fn short_circuit_skips_the_right_side() {
    // The right side would divide by zero.
    assert_eq!(eval(&body("if n == 0 || 10 / n > 1 { return 1; } return 2;"), 0), Ok(1));
    assert_eq!(eval(&body("if n != 0 && 10 / n > 1 { return 1; } return 2;"), 0), Ok(2));
}

#[test]
fn loops_break_continue_and_mutation() {
    let src = body(
        "let mut sum = 0;
         for i in 0..n {
             if i % 2 == 0 { continue; }
             if i > 7 { break; }
             sum += i;
         }
         return sum;",
    );
    assert_eq!(eval(&src, 100), Ok(1 + 3 + 5 + 7));
    let src = body(
        "let mut i = 0; let mut total = 0;
         while i < n {
             let mut j = 0;
             while j < i { total += 1; j += 1; }
             i += 1;
         }
         return total;",
    );
    assert_eq!(eval(&src, 5), Ok(10));
    assert_eq!(eval(&body("let mut x = 1; if n > 0 { x = 2; } else { x = 3; } return x;"), 1), Ok(2));
    assert_eq!(eval(&body("let mut x = 1; if n > 0 { x = 2; } else { x = 3; } return x;"), 0), Ok(3));
    assert_eq!(eval(&body("let mut x = 1; if n > 0 { return 9; } else { x = 3; } return x;"), 0), Ok(3));
    assert_eq!(eval(&body("let mut k = 0; for i in 0..0 { k = 1; } for i in 5..3 { k = 2; } return k;"), 0), Ok(0));
}

#[test]
fn globals_arrays_and_buffers() {
    let src = "global a: [i16; 4] = [10, -20, 30];
               global count: i32 = 5;
               graft vm.pick_victim(cands: buffer, n: i32) -> i32 {
                   a[3] = 7;
                   a[n] += 1;
                   count += a[n] as i32;
                   return count + a[3] as i32 + cands[8].u32 as i32;
               }";
    // a[1] = -19; count = 5 - 19 = -14; a[3] = 7; cands[8..12] = 08 09 0a 0b.
    assert_eq!(eval(src, 1), Ok(-14 + 7 + 0x0b0a_0908));
    assert_eq!(eval(src, 4), Err(AbortReason::Explicit(graftc::check::ARRAY_INDEX_ABORT)));
    assert_eq!(eval(src, -1), Err(AbortReason::Explicit(graftc::check::ARRAY_INDEX_ABORT)));
    assert_eq!(eval(&body("return cands[n].u8 as i32;"), 63), Ok(63));
    assert_eq!(eval(&body("return cands[n].u16 as i32;"), 63), Err(AbortReason::OutOfBounds));
    assert_eq!(eval(&body("return cands[n].u8 as i32;"), -1), Err(AbortReason::OutOfBounds));
}

#[test]
fn functions_recursion_and_abort() {
    let src = "fn fib(k: i32) -> i32 { if k < 2 { return k; } return fib(k - 1) + fib(k - 2); }
               fn check(k: i32) { if k > 100 { abort(42); } }
               graft vm.pick_victim(cands: buffer, n: i32) -> i32 { check(n); return fib(n); }";
    assert_eq!(eval(src, 10), Ok(55));
    assert_eq!(eval(src, 101), Err(AbortReason::Explicit(42)));
}

#[test]
fn callables_and_handles() {
    let src = "graft vm.pick_victim(cands: buffer, n: i32) -> i32 {
                   let a = lock.get(1);
                   let b = lock.get(n);
                   kern.counter_add(2, 40);
                   let c = kern.counter_add(2, 2);
                   if a == b { return c as i32; }
                   return 0;
               }";
    assert_eq!(eval(src, 1), Ok(42));
    assert_eq!(eval(src, 2), Ok(0));
    assert_eq!(eval(src, 99), Err(AbortReason::CallableFailed(graft_ir::abi::errors::BAD_ARGUMENT)));
}

/// How many `abort` instructions with graftc's array index code the lowered module holds.
fn index_checks(items: &str) -> usize {
    let compiled = match compile(items, Options::default()) {
        Ok(c) => c,
        Err(CompileError::Source(d)) => panic!("{}", graftc::diag::render_plain("t.graft", items, &d)),
        Err(e) => panic!("{e}"),
    };
    compiled
        .verified
        .module()
        .functions
        .iter()
        .flat_map(|f| &f.blocks)
        .flat_map(|b| &b.insts)
        .filter(|i| matches!(i.data, graft_ir::InstData::Abort { code } if code == graftc::check::ARRAY_INDEX_ABORT))
        .count()
}

#[test]
fn index_checks_the_front_end_proves_are_left_out() {
    let key = "global key: [u32; 4] = [1, 2, 3, 4];\n";
    // A mask below the length, a `for` counter over a range inside the array, unsigned
    // remainder by at most the length, a narrowing cast of such an index: no check.
    let proven = [
        "let mut s = 0u32; for r in 0..32 { s += key[(s + r as u32) & 3]; } return s as i32;",
        "let mut s = 0u32; for i in 0..4 { s += key[i]; } return s as i32;",
        "let mut s = 0u32; for i in 1..3 { s += key[i]; } return s as i32;",
        "return key[(n as u32) % 4] as i32;",
        "return key[(n & 3) as u8] as i32;",
    ];
    for b in proven {
        let src = format!("{key}{}", body(b));
        assert_eq!(index_checks(&src), 0, "a check is left in\n{src}");
    }
    assert_eq!(eval(&format!("{key}{}", body(proven[1])), 0), Ok(10));
    assert_eq!(eval(&format!("{key}{}", body(proven[3])), 6), Ok(3));
    assert_eq!(eval(&format!("{key}{}", body(proven[4])), 7), Ok(4));
    // Unprovable: a mask past the length, a range past it, a counter plus an argument, a
    // signed remainder, a plain argument. Each keeps its check, and out of range aborts.
    let unproven = [
        ("let mut s = 0u32; for r in 0..n { s += key[r & 4]; } return s as i32;", 5),
        ("let mut s = 0u32; for i in 0..5 { s += key[i]; } return s as i32;", 0),
        ("let mut s = 0u32; for i in 0..4 { s += key[i + n]; } return s as i32;", 1),
        ("return key[n % 4] as i32;", -1),
        ("return key[n] as i32;", 4),
    ];
    for (b, n) in unproven {
        let src = format!("{key}{}", body(b));
        assert_eq!(index_checks(&src), 1, "no check left in\n{src}");
        assert_eq!(eval(&src, n), Err(AbortReason::Explicit(graftc::check::ARRAY_INDEX_ABORT)), "{src}");
    }
}
