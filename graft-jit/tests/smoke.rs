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
