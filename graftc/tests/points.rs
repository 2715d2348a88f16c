//! `graftc run`'s model of every graft point is derived from the point's row: this test walks
//! `GRAFT_POINTS` and fails for a point whose model is missing a piece (arguments, buffers
//! built field by field, the validator's facts), or whose fields land at other offsets than
//! the row says. It also checks that `graftc check` refuses what the kernel would.

use graft_ir::abi::{Extent, FieldType, GRAFT_POINTS};
use graft_ir::Type;
use graftc::run::{parse_buffer, run, Engine, RunConfig};

/// The value given to field `f` of record `r` (small enough for every field type).
fn value(r: usize, f: usize) -> i64 {
    1000 + 10 * f as i64 + r as i64
}

/// A graft for `point` that traces every field of every record of its first buffer, in order,
/// then returns 0 (valid at every point: 0 is an index when there are candidates, an empty
/// block list, and success for the filters).
fn tracer(point: &graft_ir::abi::GraftPoint, records: usize) -> String {
    let params: Vec<String> = point.params.iter().map(|p| p.ty.to_string()).collect();
    let mut s = format!("graft {}\nresources data_size=8 fuel=10000\n\nimport imp0 = debug.trace(i64)\n\n", point.name);
    s += &format!("function fn0({}) -> i32 {{\nb0(", params.join(", "));
    let vparams: Vec<String> = point.params.iter().enumerate().map(|(i, p)| format!("v{i}: {}", p.ty)).collect();
    s += &vparams.join(", ");
    s += "):\n";
    let mut v = point.params.len();
    s += &format!("    v{v} = iconst.i32 0\n");
    let base = v;
    v += 1;
    if let Some(spec) = point.regions.first() {
        for r in 0..records {
            for f in spec.fields {
                let off = r as u32 * spec.record_size + f.offset;
                match f.ty {
                    FieldType::U32 => {
                        s += &format!("    v{v} = load.i32 r1[v{base} + {off}]\n    v{} = uextend.i64 v{v}\n", v + 1);
                        v += 1;
                    }
                    FieldType::U64 | FieldType::I64 => s += &format!("    v{v} = load.i64 r1[v{base} + {off}]\n"),
                }
                s += &format!("    call_import imp0(v{v})\n");
                v += 1;
            }
        }
    }
    s += &format!("    return v{base}\n}}\n");
    s
}

#[test]
fn every_point_has_a_host_model_derived_from_its_row() {
    const RECORDS: usize = 3;
    for point in GRAFT_POINTS {
        let text = tracer(point, RECORDS);
        let module = graft_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", point.name));
        let verified = graft_ir::verify(module).unwrap_or_else(|e| panic!("{}: {e}\n{text}", point.name));
        // Arguments from the row: counts agree with their buffers, handles name file 1.
        let spec = point.regions.first();
        let count = match spec {
            Some(s) if s.has_records() => RECORDS,
            _ => 16,
        };
        let args: Vec<String> = point
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| match p.ty {
                Type::Handle(k) => format!("{}:1", k.name()),
                _ if spec.is_some_and(|s| s.extent == Extent::Param(i)) => count.to_string(),
                _ => "0".to_string(),
            })
            .collect();
        let mut buffers = Vec::new();
        if let Some(spec) = spec {
            let text = if spec.has_records() {
                let recs: Vec<String> = (0..RECORDS)
                    .map(|r| spec.fields.iter().enumerate().map(|(f, x)| format!("{}={}", x.name, value(r, f))).collect::<Vec<_>>().join(","))
                    .collect();
                format!("records:{}", recs.join("/"))
            } else {
                format!("zero:{count}")
            };
            buffers.push((spec.name.to_string(), parse_buffer(&text).unwrap()));
        }
        for engine in [Engine::Interp, Engine::Jit] {
            let config = RunConfig { engine, args: args.clone(), buffers: buffers.clone(), fuel: None, calls: 1 };
            let report = run(&verified, &config).unwrap_or_else(|e| panic!("{}: no host model: {e}", point.name));
            assert!(report.outcome.is_ok(), "{} ({engine:?}): {:?}", point.name, report.outcome);
            let want: Vec<i64> = match spec {
                Some(s) if s.has_records() => (0..RECORDS).flat_map(|r| (0..s.fields.len()).map(move |f| value(r, f))).collect(),
                _ => Vec::new(),
            };
            assert_eq!(report.trace, want, "{}: fields read back at the row's offsets", point.name);
        }
    }
}

#[test]
fn the_model_refuses_what_the_kernel_never_passes() {
    let p = graft_ir::abi::graft_point("sched.pick_next").unwrap();
    let verified = graft_ir::verify(graft_ir::parse(&tracer(p, 0)).unwrap()).unwrap();
    let bufs = vec![("threads".to_string(), parse_buffer("records:tid=1/tid=2").unwrap())];
    let config = RunConfig { args: vec!["3".into()], buffers: bufs.clone(), calls: 1, ..RunConfig::default() };
    let e = run(&verified, &config).unwrap_err().to_string();
    assert!(e.contains("`n` is 3 but buffer `threads` holds 2"), "{e}");
    let bad = vec![("threads".to_string(), parse_buffer("records:tid=1,nice=3").unwrap())];
    let config = RunConfig { args: vec!["1".into()], buffers: bad, calls: 1, ..RunConfig::default() };
    let e = run(&verified, &config).unwrap_err().to_string();
    assert!(e.contains("no field `nice`") && e.contains("tid, flags, runtime, wakeups, pad"), "{e}");
    let too_big = vec![("threads".to_string(), parse_buffer("records:tid=0x100000000").unwrap())];
    let config = RunConfig { args: vec!["1".into()], buffers: too_big, calls: 1, ..RunConfig::default() };
    assert!(run(&verified, &config).unwrap_err().to_string().contains("does not fit field `tid` (u32)"));
}

/// After an abort the data region keeps what the graft wrote (as in the kernel); the buffers
/// are put back.
#[test]
fn an_abort_keeps_the_data_region_as_the_kernel_does() {
    let text = "graft fs.read_filter\nresources data_size=8 fuel=1000\n\n\
        function fn0(handle<file>, i64, i32) -> i32 {\nb0(v0: handle<file>, v1: i64, v2: i32):\n\
        v3 = iconst.i32 0\n    v4 = load.i32 r0[v3]\n    v5 = iconst.i32 1\n    v6 = iadd v4, v5\n\
        store r0[v3], v6\n    v7 = iconst.i8 90\n    store r1[v3], v7\n    abort 7\n}\n";
    let verified = graft_ir::verify(graft_ir::parse(text).unwrap()).unwrap();
    let bufs = vec![("buf".to_string(), parse_buffer("0102").unwrap())];
    for engine in [Engine::Interp, Engine::Jit] {
        let config = RunConfig { engine, args: vec!["file:1".into(), "0".into(), "2".into()], buffers: bufs.clone(), fuel: None, calls: 3 };
        let report = run(&verified, &config).unwrap();
        assert!(report.outcome.is_err());
        // Three calls each incremented the counter in r0 before aborting: the third saw 2.
        assert_eq!(report.data[..4], 3u32.to_le_bytes(), "{engine:?}");
        assert!(report.buffers.iter().all(|(_, b)| b == &[1, 2]), "{engine:?}: {:?}", report.buffers);
    }
}

#[test]
fn check_refuses_what_the_kernel_refuses() {
    let fuel = "fuel 1000001;\ngraft sched.pick_next(threads: buffer, n: i32) -> i32 { return 0; }\n";
    let e = graftc::compile(fuel, graftc::Options::default()).unwrap_err();
    let graftc::CompileError::Source(d) = e else { panic!("{e}") };
    assert!(d.iter().any(|d| d.message.contains("fuel must be between 1 and 1000000")), "{d:?}");
    // A data section of 24 KiB encodes to a blob over the kernel's 16 KiB.
    let values: Vec<String> = (1..=3000u32).map(|i| (i * 2654435761u32 | 1).to_string()).collect();
    let big = format!(
        "global table: [u64; 3000] = [{}];\ngraft sched.pick_next(threads: buffer, n: i32) -> i32 {{ return 0; }}\n",
        values.join(", ")
    );
    let e = graftc::compile(&big, graftc::Options::default()).unwrap_err();
    let graftc::CompileError::Source(d) = e else { panic!("{e}") };
    assert!(d.iter().any(|d| d.message.contains("more than the limit of 16384 bytes")), "{d:?}");
}
