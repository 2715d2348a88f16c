//! Differential testing: random valid modules run on the reference interpreter and on the
//! JIT must agree exactly: result or abort reason, fuel left, the data region and buffers
//! afterwards, and every effect on the mock host.
//!
//! `GRAFT_DIFF_CASES` sets the number of modules (default 10,000, split over four shards that
//! run in parallel), `GRAFT_DIFF_SEED` the first seed (default fixed). A failure prints the
//! seed of the failing case and its module text; rerun it alone with
//! `GRAFT_DIFF_SEED=<seed> GRAFT_DIFF_CASES=1`.

mod modgen;

use std::env;
use std::io::Write;

use graft_ir::interp::{self, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::FuncRef;
use graft_jit::host::Loaded;

const DEFAULT_CASES: u64 = 10_000;
const DEFAULT_SEED: u64 = 0x6772_6166_7400_0000;
const SHARDS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    let s = env::var(name).ok()?;
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[derive(Default)]
struct Tally {
    cases: u64,
    runs: u64,
    ok: u64,
    aborted: u64,
    /// Runs per abort reason, by `AbortReason::code`.
    reasons: [u64; 16],
}

fn host_state(h: &MockHost) -> String {
    format!("trace={:?} counters={:?} held={:?} allocations={:?} now={}", h.trace, h.counters, h.held, h.allocations, h.now)
}

fn check(seed: u64, tally: &mut Tally) {
    let case = modgen::case(seed);
    let text = case.module.to_string();
    let verified = match graft_ir::verify(case.module) {
        Ok(v) => v,
        Err(e) => panic!("generator made an invalid module (seed {seed:#x}):\n{e}\n{text}"),
    };
    let loaded = match Loaded::compile(&verified) {
        Ok(l) => l,
        Err(e) => panic!("JIT failed on a verified module (seed {seed:#x}): {e}\n{text}"),
    };
    let fuel0 = verified.module().resources.fuel;
    for (args, buffers) in case.args.iter().zip(&case.buffers) {
        let mut data_i = interp::initial_data(verified.module());
        let mut data_j = data_i.clone();
        let mut bufs_i = buffers.clone();
        let mut bufs_j = buffers.clone();
        let (mut host_i, mut host_j) = (MockHost::default(), MockHost::default());
        let (mut fuel_i, mut fuel_j) = (fuel0, fuel0);

        let mut regions_i: Vec<&mut [u8]> = vec![&mut data_i];
        regions_i.extend(bufs_i.iter_mut().map(|b| b.as_mut_slice()));
        let ri = interp::run(&verified, FuncRef(0), args, &mut regions_i, &mut fuel_i, &mut host_i);
        let mut regions_j: Vec<&mut [u8]> = vec![&mut data_j];
        regions_j.extend(bufs_j.iter_mut().map(|b| b.as_mut_slice()));
        let rj = loaded.call(args, &mut regions_j, &mut fuel_j, &mut host_j);

        let show = |a: &[DataValue]| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        let context = || {
            format!("seed {seed:#x}, fn0({}), buffers {:?}\n{text}", show(args), buffers)
        };
        assert_eq!(ri, rj, "result differs (interpreter left, JIT right); {}", context());
        assert_eq!(fuel_i, fuel_j, "fuel left differs; {}", context());
        assert_eq!(data_i, data_j, "data region differs; {}", context());
        assert_eq!(bufs_i, bufs_j, "buffers differ; {}", context());
        assert_eq!(host_state(&host_i), host_state(&host_j), "host effects differ; {}", context());
        tally.runs += 1;
        if ri.is_ok() {
            tally.ok += 1;
        } else {
            tally.aborted += 1;
        }
        if let Err(r) = ri {
            tally.reasons[r.code() as usize % 16] += 1;
        }
    }
    tally.cases += 1;
}

fn shard(index: u64) {
    let total = env_u64("GRAFT_DIFF_CASES").unwrap_or(DEFAULT_CASES);
    let first = env_u64("GRAFT_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let mut tally = Tally::default();
    let mut i = index;
    while i < total {
        check(first.wrapping_add(i), &mut tally);
        i += SHARDS;
    }
    let reasons: Vec<String> = graft_ir::AbortReason::ALL
        .iter()
        .filter(|r| tally.reasons[r.code() as usize] > 0)
        .map(|r| format!("{} {}", r.name(), tally.reasons[r.code() as usize]))
        .collect();
    // Straight to stderr, past the test harness's capture: the count is part of the result.
    let _ = writeln!(
        std::io::stderr(),
        "differential shard {index}: {} cases, {} runs agreed ({} returned, {} aborted: {}); seeds {first:#x} + i",
        tally.cases,
        tally.runs,
        tally.ok,
        tally.aborted,
        reasons.join(", ")
    );
}

#[test]
fn differential_shard_0() {
    shard(0);
}

#[test]
fn differential_shard_1() {
    shard(1);
}

#[test]
fn differential_shard_2() {
    shard(2);
}

#[test]
fn differential_shard_3() {
    shard(3);
}
