//! graft-ir's hand-written run cases (`graft-ir/tests/cases/run_*.gir`: the sample grafts,
//! hostile ones, every opcode family) through the JIT and the interpreter with random entry
//! arguments and buffers: the two must agree as in `differential.rs`.

mod modgen;

use graft_ir::interp::{self, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::FuncRef;
use graft_jit::host::Loaded;

#[test]
fn run_cases_agree() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../graft-ir/tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("graft-ir test cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("run_")))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut rng = modgen::Rng::new(0x6972);
    let mut runs = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let module = graft_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let verified = graft_ir::verify(module).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let loaded = Loaded::compile(&verified).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let point = verified.point();
        for _ in 0..200 {
            let args: Vec<DataValue> = point
                .params
                .iter()
                .map(|p| match p.ty {
                    graft_ir::Type::Handle(k) => DataValue::Handle(k, rng.pick(&[0u64, 1, 3, 1 << 33])),
                    t => DataValue::from_bits(t, rng.interesting(t.bits()) as u64),
                })
                .collect();
            let buffers: Vec<Vec<u8>> = point
                .regions
                .iter()
                .map(|_| (0..rng.pick(&[0u64, 16, 48, 96, 240])).map(|_| rng.next() as u8).collect())
                .collect();
            let fuel0 = verified.module().resources.fuel;
            let (mut data_i, mut bufs_i, mut fuel_i, mut host_i) =
                (interp::initial_data(verified.module()), buffers.clone(), fuel0, MockHost::default());
            let (mut data_j, mut bufs_j, mut fuel_j, mut host_j) =
                (data_i.clone(), buffers.clone(), fuel0, MockHost::default());
            let mut ri: Vec<&mut [u8]> = vec![&mut data_i];
            ri.extend(bufs_i.iter_mut().map(|b| b.as_mut_slice()));
            let mut rj: Vec<&mut [u8]> = vec![&mut data_j];
            rj.extend(bufs_j.iter_mut().map(|b| b.as_mut_slice()));
            let a = interp::run(&verified, FuncRef(0), &args, &mut ri, &mut fuel_i, &mut host_i);
            let b = loaded.call(&args, &mut rj, &mut fuel_j, &mut host_j);
            let what = format!("{} with {args:?}", path.display());
            assert_eq!(a, b, "{what}");
            assert_eq!(fuel_i, fuel_j, "{what}");
            assert_eq!(data_i, data_j, "{what}");
            assert_eq!(bufs_i, bufs_j, "{what}");
            assert_eq!(format!("{:?}", (host_i.trace, host_i.counters)), format!("{:?}", (host_j.trace, host_j.counters)), "{what}");
            runs += 1;
        }
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "ir cases: {} files, {runs} runs agreed", files.len());
}
