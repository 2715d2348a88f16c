//! Hand-written grafts through the whole pipeline: compile, load, call, trap, recover.

use graft_ir::interp::{self, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::{AbortReason, FuncRef};
use graft_jit::host::Loaded;

fn verified(text: &str) -> graft_ir::Verified {
    let m = graft_ir::parse(text).unwrap_or_else(|e| panic!("{e}"));
    graft_ir::verify(m).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `fn0` on the JIT and the interpreter; assert they agree and return the JIT's outcome.
fn both(text: &str, args: &[DataValue], buf: &[u8]) -> (Result<Option<DataValue>, AbortReason>, u64) {
    let v = verified(text);
    let loaded = Loaded::compile(&v).unwrap_or_else(|e| panic!("{e}"));
    let fuel0 = v.module().resources.fuel;
    let mut data_j = interp::initial_data(v.module());
    let mut data_i = data_j.clone();
    let mut buf_j = buf.to_vec();
    let mut buf_i = buf.to_vec();
    let (mut fj, mut fi) = (fuel0, fuel0);
    let rj = loaded.call(args, &mut [&mut data_j, &mut buf_j], &mut fj, &mut MockHost::default());
    let ri = interp::run(&v, FuncRef(0), args, &mut [&mut data_i, &mut buf_i], &mut fi, &mut MockHost::default());
    assert_eq!(rj, ri, "result");
    assert_eq!(fj, fi, "fuel left");
    assert_eq!(data_j, data_i, "data region");
    assert_eq!(buf_j, buf_i, "buffer");
    (rj, fj)
}

const HEAD: &str = "graft vm.pick_victim\nresources data_size=64 fuel=1000\n";

#[test]
fn returns_argument() {
    let src = format!("{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    return v0\n}}\n");
    let (r, fuel) = both(&src, &[DataValue::I32(7)], &[]);
    assert_eq!(r, Ok(Some(DataValue::I32(7))));
    assert_eq!(fuel, 999);
}

#[test]
fn division_traps_are_recovered() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = iconst.i32 100\n    v2 = sdiv v1, v0\n    return v2\n}}\n"
    );
    assert_eq!(both(&src, &[DataValue::I32(0)], &[]).0, Err(AbortReason::DivisionByZero));
    assert_eq!(both(&src, &[DataValue::I32(7)], &[]).0, Ok(Some(DataValue::I32(14))));
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = iconst.i32 -2147483648\n    v2 = srem v1, v0\n    return v2\n}}\n"
    );
    assert_eq!(both(&src, &[DataValue::I32(-1)], &[]).0, Err(AbortReason::IntegerOverflow));
}

#[test]
fn loops_run_out_of_fuel_and_abort_explicitly() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    jump b1(v0)\nb1(v1: i32):\n    v2 = iconst.i32 1\n    v3 = isub v1, v2\n    v4 = iconst.i32 0\n    v5 = icmp ne v3, v4\n    brif v5, b1(v3), b2\nb2:\n    abort 42\n}}\n"
    );
    assert_eq!(both(&src, &[DataValue::I32(10)], &[]).0, Err(AbortReason::Explicit(42)));
    assert_eq!(both(&src, &[DataValue::I32(1000)], &[]).0, Err(AbortReason::OutOfFuel));
}

/// An irreducible cycle (b1 <-> b2, each entered from b0; neither dominates the other) still
/// runs out of fuel: its retreating edge is checked. OutOfFuel leaves no fuel, and an
/// out-of-bounds abort leaves what was left when it happened, in the JIT as in the interpreter.
#[test]
fn irreducible_loops_run_out_of_fuel_and_aborts_leave_the_fuel_left() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = ireduce.i8 v0\n    brif v1, b1, b2\nb1:\n    jump b2\nb2:\n    jump b1\n}}\n"
    );
    let checks = graft_ir::interp::fuel_check_blocks(&verified(&src).module().functions[0]);
    assert_eq!(checks.iter().filter(|&&c| c).count(), 2, "b0 and one block of the cycle check");
    for a in [0, 1] {
        assert_eq!(both(&src, &[DataValue::I32(a)], &[]), (Err(AbortReason::OutOfFuel), 0));
    }
    // A loop that reads past the end of r1 after some turns: fuel left is what the blocks run
    // so far left, checked or not.
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    jump b1(v0)\nb1(v1: i32):\n    v2 = load.i8 r1[v1]\n    v3 = iconst.i32 1\n    v4 = iadd v1, v3\n    jump b2(v4)\nb2(v5: i32):\n    v6 = load.i8 r1[v5]\n    jump b1(v5)\n}}\n"
    );
    let (r, left) = both(&src, &[DataValue::I32(0)], &[0u8; 7]);
    assert_eq!(r, Err(AbortReason::OutOfBounds));
    // b0 (1 instruction), then b1 (4) and b2 (2) for v1 = 0..=6; b2 is charged, then reads
    // offset 7 and aborts.
    assert_eq!(left, 1000 - 1 - 7 * 6);
}

#[test]
fn region_checks() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = load.i32 r1[v0 + 4]\n    store r0[v0 + 0], v1\n    v2 = load.i32 r0[v0 + 0]\n    return v2\n}}\n"
    );
    let buf: Vec<u8> = (0..16).collect();
    assert_eq!(both(&src, &[DataValue::I32(0)], &buf).0, Ok(Some(DataValue::I32(0x07060504))));
    assert_eq!(both(&src, &[DataValue::I32(8)], &buf).0, Ok(Some(DataValue::I32(0x0f0e0d0c))));
    assert_eq!(both(&src, &[DataValue::I32(9)], &buf).0, Err(AbortReason::OutOfBounds));
    assert_eq!(both(&src, &[DataValue::I32(-4)], &buf).0, Err(AbortReason::OutOfBounds));
}

#[test]
fn recursion_depth() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = call fn0(v0)\n    return v1\n}}\n"
    );
    assert_eq!(both(&src, &[DataValue::I32(0)], &[]).0, Err(AbortReason::CallDepthExceeded));
}

#[test]
fn stack_limit_aborts_deep_recursion() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = call fn0(v0)\n    return v1\n}}\n"
    );
    let v = verified(&src);
    let mut loaded = Loaded::compile(&v).expect("compiles");
    loaded.set_stack_budget(2048);
    let mut data = interp::initial_data(v.module());
    let mut fuel = 1000;
    let r = loaded.call(&[DataValue::I32(0)], &mut [&mut data, &mut []], &mut fuel, &mut MockHost::default());
    assert_eq!(r, Err(AbortReason::StackOverflow));
}

#[test]
fn callables_fail_and_succeed() {
    let src = "graft vm.pick_victim\nresources data_size=64 fuel=1000\nimport imp0 = kern.counter_add(i32, i64) -> i64\n\
               function fn0(i32) -> i32 {\nb0(v0: i32):\n    v1 = iconst.i64 5\n    v2 = call_import imp0(v0, v1)\n    v3 = ireduce.i32 v2\n    return v3\n}\n";
    assert_eq!(both(src, &[DataValue::I32(3)], &[]).0, Ok(Some(DataValue::I32(5))));
    assert_eq!(
        both(src, &[DataValue::I32(99)], &[]).0,
        Err(AbortReason::CallableFailed(graft_ir::abi::errors::BAD_ARGUMENT))
    );
}

/// A host whose callable panics: the panic must not unwind through graft frames.
struct PanickingHost;

impl graft_ir::Host for PanickingHost {
    fn call(
        &mut self,
        _: &'static graft_ir::abi::Callable,
        _: &[DataValue],
    ) -> Result<Option<DataValue>, AbortReason> {
        panic!("callable bug");
    }
}

#[test]
fn panicking_callable_is_a_host_contract_abort() {
    let src = "graft vm.pick_victim\nresources data_size=64 fuel=1000\nimport imp0 = time.now() -> i64\n\
               function fn0(i32) -> i32 {\nb0(v0: i32):\n    v1 = call_import imp0()\n    return v0\n}\n";
    let v = verified(src);
    let loaded = Loaded::compile(&v).expect("compiles");
    let mut data = interp::initial_data(v.module());
    let mut fuel = 1000;
    let r = loaded.call(&[DataValue::I32(0)], &mut [&mut data, &mut []], &mut fuel, &mut PanickingHost);
    assert_eq!(r, Err(AbortReason::HostContract));
}

#[test]
fn code_is_position_independent_and_traps_are_mapped() {
    let src = format!(
        "{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = iconst.i32 100\n    v2 = udiv v1, v0\n    return v2\n}}\n"
    );
    let v = verified(&src);
    let compiled = graft_jit::compile(&v).expect("compiles");
    // Two copies at two addresses behave the same.
    let a = Loaded::new(&compiled).expect("loads");
    let b = Loaded::new(&compiled).expect("loads");
    assert_ne!(a.code_base(), b.code_base());
    for l in [&a, &b] {
        for (arg, want) in [(4, Ok(Some(DataValue::I32(25)))), (0, Err(AbortReason::DivisionByZero))] {
            let mut data = interp::initial_data(v.module());
            let mut fuel = 1000;
            let r = l.call(&[DataValue::I32(arg)], &mut [&mut data, &mut []], &mut fuel, &mut MockHost::default());
            assert_eq!(r, want);
        }
    }
    // Every site maps to a reason; the ones this function must have are there.
    let reasons: Vec<_> = compiled.traps().sites().iter().map(|s| s.reason).collect();
    // (No stack-limit check: a leaf function with no frame needs none.)
    for want in [AbortReason::OutOfFuel, AbortReason::DivisionByZero] {
        assert!(reasons.contains(&graft_jit::TrapReason::Fixed(want)), "{want:?} missing from {reasons:?}");
    }
    for s in compiled.traps().sites() {
        assert!((s.offset as usize) < compiled.code().len());
    }
}

#[test]
fn recover_ignores_faults_it_does_not_own() {
    let src = format!("{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    abort 3\n}}\n");
    let compiled = graft_jit::compile(&verified(&src)).expect("compiles");
    let site = compiled.traps().sites()[0];
    let base = 0x4000_0000;
    let code = compiled.at(base);
    let mut ctx = graft_jit::Context::empty();
    // No call in progress: not ours.
    assert_eq!(graft_jit::recover(&ctx, &code, base + u64::from(site.offset)), None);
    ctx.recovery_rsp = 0x7fff_0000;
    // Outside the code: not ours.
    assert_eq!(graft_jit::recover(&ctx, &code, base - 1), None);
    assert_eq!(graft_jit::recover(&ctx, &code, base + compiled.code().len() as u64), None);
    // Inside, not a trap site: still aborts, as a contract violation.
    let r = graft_jit::recover(&ctx, &code, base + u64::from(site.offset) + 1).expect("inside the code");
    assert_eq!(r.rsp, 0x7fff_0000);
    assert_eq!(r.rip, graft_jit::resume_address());
    if compiled.traps().lookup(site.offset + 1).is_none() {
        assert_eq!(r.reason, AbortReason::HostContract);
    }
    // An in-context site reads the slot.
    ctx.set_abort(AbortReason::Explicit(3));
    for s in compiled.traps().sites() {
        if s.reason == graft_jit::TrapReason::InContext {
            let r = graft_jit::recover(&ctx, &code, base + u64::from(s.offset)).expect("trap site");
            assert_eq!(r.reason, AbortReason::Explicit(3));
            assert_eq!(r.rax, AbortReason::Explicit(3).to_u64());
        }
    }
}

/// The kernel's way of calling: on a stack of the graft's own. Results, traps and the stack
/// limit behave as on the caller's stack, and every abort returns to the caller's stack.
#[test]
fn calls_on_a_separate_stack_return_and_recover() {
    let mut stack = vec![0u8; 64 * 1024];
    let run = |src: &str, arg: i32, stack: &mut [u8], reserve: usize| {
        let v = verified(src);
        let loaded = Loaded::compile(&v).expect("compiles");
        let mut data = interp::initial_data(v.module());
        let mut fuel = 1000;
        let mut buf = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let r = loaded.call_on_stack(stack, reserve, &[DataValue::I32(arg)], &mut [&mut data, &mut buf], &mut fuel, &mut MockHost::default());
        (r, fuel)
    };
    let div = format!("{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = iconst.i32 100\n    v2 = sdiv v1, v0\n    return v2\n}}\n");
    assert_eq!(run(&div, 5, &mut stack, 4096).0, Ok(Some(DataValue::I32(20))));
    assert_eq!(run(&div, 0, &mut stack, 4096).0, Err(AbortReason::DivisionByZero));
    // The graft used the given stack: its bytes near the top changed.
    let top_used = stack[stack.len() - 256..].iter().any(|&b| b != 0);
    assert!(top_used, "the call ran on the separate stack");
    let load = format!("{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = load.i32 r1[v0]\n    return v1\n}}\n");
    assert_eq!(run(&load, 4, &mut stack, 4096).0, Ok(Some(DataValue::I32(0x08070605))));
    assert_eq!(run(&load, 6, &mut stack, 4096).0, Err(AbortReason::OutOfBounds));
    let rec = format!("{HEAD}function fn0(i32) -> i32 {{\nb0(v0: i32):\n    v1 = call fn0(v0)\n    return v1\n}}\n");
    // 1 KiB of frames above the reserve: deep recursion hits the limit before the depth cap.
    assert_eq!(run(&rec, 0, &mut stack, 63 * 1024).0, Err(AbortReason::StackOverflow));
    // A stack too small for the reserve is refused before anything runs.
    assert_eq!(run(&div, 5, &mut stack[..4096], 4096).0, Err(AbortReason::HostContract));
    // After all that, an ordinary call on the caller's stack still works.
    assert_eq!(both(&div, &[DataValue::I32(4)], &[]).0, Ok(Some(DataValue::I32(25))));
}
