//! Any blob: decode, and if it decodes, verify, print, re-parse, and if it verifies, compile it
//! with graft-jit (a Cranelift panic on a verified module would be a kernel panic) and run it
//! on the interpreter with a small fuel budget. None of it may panic.
#![no_main]

use graft_ir::interp::{initial_data, run, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::{decode, encode, parse, verify, FuncRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(module) = decode(data) else { return };
    // Whatever decodes re-encodes to a blob that decodes to the same module.
    if let Ok(blob) = encode(&module) {
        assert_eq!(decode(&blob).as_ref(), Ok(&module));
    }
    let _ = parse(&module.to_string());
    let Ok(verified) = verify(module) else { return };
    if let Err(e) = graft_jit::compile(&verified) {
        panic!("a verified module does not compile: {e}\n{}", verified.module());
    }
    let m = verified.module();
    let mut r0 = initial_data(m);
    let mut regions: Vec<Vec<u8>> = vec![vec![0xa5; 64]; verified.point().regions.len()];
    let mut slices: Vec<&mut [u8]> = vec![&mut r0];
    slices.extend(regions.iter_mut().map(|r| r.as_mut_slice()));
    let args: Vec<DataValue> =
        m.functions[0].sig.params.iter().map(|&t| DataValue::from_bits(t, 1)).collect();
    let mut fuel = m.resources.fuel.min(100_000);
    let _ = run(&verified, FuncRef(0), &args, &mut slices, &mut fuel, &mut MockHost::default());
});
