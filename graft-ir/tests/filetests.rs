//! The file-test driver: every `tests/cases/*.gir` is a module in text form with its
//! expectations in comments.
//!
//! - `; parse-error: TEXT` — parsing fails with an error whose text contains TEXT.
//! - `; error: TEXT` — verification fails and some error's text contains TEXT (repeatable).
//! - `; region rK: HEX` or `; region rK: zero N` — the initial bytes of passed-in region rK.
//! - `; run: fnN(ARGS) == VALUE [fuel_used N]` or `; run: fnN(ARGS) aborts REASON [fuel_used N]`
//!   — interpret with fresh regions and a fresh [`MockHost`]; ARGS are integers or handles
//!   written `kind:raw` (`file:3`); REASON is an `AbortReason` name, `Explicit(7)` or
//!   `CallableFailed(1)`; `== none` for a function returning nothing.
//! - `; fuel: N` — the fuel for the following runs (default: the module's).
//! - `; after: rK = HEX` — after the preceding run, region rK starts with these bytes.
//! - `; decode: refused` — the module encodes, but the decoder refuses the blob (a sequence
//!   over the verifier's limit is refused at its count); otherwise every file must survive a
//!   binary round trip.
//!
//! `GRAFT_BLESS=1` prints each rejected file's verifier log, plain and annotated (to review
//! the log format).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use graft_ir::interp::{initial_data, run, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::verifier::Rule;
use graft_ir::{parse, verify, AbortReason, FuncRef, HandleKind, Type};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("bad hex in test"))
        .collect()
}

fn parse_reason(s: &str) -> AbortReason {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("Explicit(") {
        return AbortReason::Explicit(rest.trim_end_matches(')').parse().expect("code"));
    }
    if let Some(rest) = s.strip_prefix("CallableFailed(") {
        return AbortReason::CallableFailed(rest.trim_end_matches(')').parse().expect("code"));
    }
    AbortReason::ALL.into_iter().find(|r| r.name() == s).unwrap_or_else(|| panic!("unknown abort reason {s}"))
}

fn parse_int(s: &str) -> i128 {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        i128::from_str_radix(h, 16).expect("hex int")
    } else {
        s.parse().unwrap_or_else(|_| panic!("bad integer {s}"))
    }
}

fn arg(s: &str, ty: Type) -> DataValue {
    if let Some((kind, raw)) = s.split_once(':') {
        let k = HandleKind::from_name(kind.trim()).expect("handle kind");
        return DataValue::Handle(k, raw.trim().parse().expect("raw handle"));
    }
    DataValue::from_bits(ty, parse_int(s) as u64)
}

/// Returns the number of (verifier-error files, run cases) checked, and adds the rules of
/// the verifier errors seen to `rules`.
fn check_file(path: &Path, rules: &mut BTreeSet<Rule>) -> (usize, usize) {
    let name = path.display();
    let src = fs::read_to_string(path).unwrap();
    let directives: Vec<(&str, &str)> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix(';'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| ["parse-error", "error", "region", "run", "fuel", "after", "decode"].iter().any(|d| k.starts_with(d)))
        .collect();
    let parsed = parse(&src);
    let parse_errors: Vec<&str> = directives.iter().filter(|d| d.0 == "parse-error").map(|d| d.1).collect();
    if !parse_errors.is_empty() {
        let err = match parsed {
            Ok(_) => panic!("{name}: expected a parse error"),
            Err(e) => e.to_string(),
        };
        for want in parse_errors {
            assert!(err.contains(want), "{name}: parse error `{err}` does not contain `{want}`");
        }
        return (0, 0);
    }
    let module = parsed.unwrap_or_else(|e| panic!("{name}: parse error {e}"));
    // The text format must round-trip on every test file.
    let printed = module.to_string();
    assert_eq!(parse(&printed).as_ref(), Ok(&module), "{name}: print/parse round trip");
    let blob = graft_ir::encode(&module).unwrap();
    if directives.iter().any(|d| d.0 == "decode" && d.1 == "refused") {
        // A sequence over the verifier's limit: the decoder refuses its count before allocating.
        assert!(matches!(graft_ir::decode(&blob), Err(graft_ir::DecodeError::Malformed { .. })), "{name}: decoded");
    } else {
        assert_eq!(graft_ir::decode(&blob).as_ref(), Ok(&module), "{name}: binary round trip");
    }

    let errors: Vec<&str> = directives.iter().filter(|d| d.0 == "error").map(|d| d.1).collect();
    let result = verify(module.clone());
    if !errors.is_empty() {
        let log = match result {
            Ok(_) => panic!("{name}: verified, but errors were expected: {errors:?}"),
            Err(e) => {
                rules.extend(e.errors.iter().map(|e| e.rule));
                let annotated = e.annotate(&module);
                for err in &e.errors {
                    assert!(annotated.contains(&err.message), "{name}: annotated log lacks `{}`", err.message);
                }
                if std::env::var_os("GRAFT_BLESS").is_some() {
                    println!("--- {name}\n{e}\n{annotated}");
                }
                e.to_string()
            }
        };
        for want in &errors {
            assert!(log.contains(want), "{name}: log does not contain `{want}`:\n{log}");
        }
        return (1, 0);
    }
    let verified = result.unwrap_or_else(|e| panic!("{name}: verification failed:\n{e}"));

    let point = verified.point();
    let mut region_init: Vec<Vec<u8>> = vec![Vec::new(); point.regions.len() + 1];
    let mut fuel = module.resources.fuel;
    let mut last: Option<Vec<Vec<u8>>> = None;
    let mut runs = 0;
    for &(key, value) in &directives {
        if let Some(r) = key.strip_prefix("region r") {
            let r: usize = r.trim().parse().expect("region number");
            region_init[r] = match value.strip_prefix("zero ") {
                Some(n) => vec![0; n.trim().parse().expect("size")],
                None => hex(value),
            };
        } else if key == "fuel" {
            fuel = value.parse().expect("fuel");
        } else if key == "after" {
            let (r, bytes) = value.split_once('=').expect("after: rK = HEX");
            let r: usize = r.trim().trim_start_matches('r').parse().expect("region");
            let want = hex(bytes);
            let got = &last.as_ref().expect("after without run")[r];
            assert!(got.starts_with(&want), "{name}: after run, r{r} = {got:02x?}, expected prefix {want:02x?}");
        } else if key == "run" {
            runs += 1;
            let (call, expect) = value
                .split_once(" == ")
                .map(|(c, e)| (c, Ok(e)))
                .or_else(|| value.split_once(" aborts ").map(|(c, e)| (c, Err(e))))
                .unwrap_or_else(|| panic!("{name}: bad run line {value}"));
            let (fname, args) = call.trim().split_once('(').expect("fnN(args)");
            let f = FuncRef(fname.trim().trim_start_matches("fn").parse().expect("function number"));
            let func = module.function(f).expect("run of a missing function");
            let args: Vec<DataValue> = args
                .trim_end_matches(')')
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .zip(&func.sig.params)
                .map(|(a, &t)| arg(a, t))
                .collect();
            let (expect, fuel_used) = match expect {
                Ok(e) | Err(e) if e.contains(" fuel_used ") => {
                    let (a, b) = e.split_once(" fuel_used ").unwrap();
                    (if expect.is_ok() { Ok(a) } else { Err(a) }, Some(parse_int(b) as u64))
                }
                e => (e, None),
            };
            let mut regions: Vec<Vec<u8>> = region_init.clone();
            regions[0] = initial_data(&module);
            let mut slices: Vec<&mut [u8]> = regions.iter_mut().map(|r| r.as_mut_slice()).collect();
            let mut left = fuel;
            let got = run(&verified, f, &args, &mut slices, &mut left, &mut MockHost::default());
            match (expect, got) {
                (Ok("none"), Ok(None)) => {}
                (Ok(v), Ok(Some(got))) => {
                    let want = DataValue::from_bits(got.ty(), parse_int(v) as u64);
                    assert_eq!(got, want, "{name}: {value}");
                }
                (Err(reason), Err(got)) => assert_eq!(got, parse_reason(reason), "{name}: {value}"),
                (_, got) => panic!("{name}: {value}: got {got:?}"),
            }
            if let Some(used) = fuel_used {
                assert_eq!(fuel - left, used, "{name}: fuel used by {value}");
            }
            last = Some(regions);
        }
    }
    assert!(runs > 0, "{name}: a file without `; error:` needs at least one `; run:`");
    (0, runs)
}

#[test]
fn filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "gir"));
    paths.sort();
    let (mut rejected, mut runs) = (0, 0);
    let mut rules = BTreeSet::new();
    for p in &paths {
        let (r, n) = check_file(p, &mut rules);
        rejected += r;
        runs += n;
    }
    println!(
        "{} files: {rejected} rejected programs covering {} of {} verifier rules, {runs} run cases",
        paths.len(),
        rules.len(),
        Rule::ALL.len()
    );
    let missing: Vec<&str> = Rule::ALL.iter().filter(|r| !rules.contains(r)).map(|r| r.name()).collect();
    assert!(missing.is_empty(), "no rejected file exercises rules {missing:?}");
    assert!(rejected >= 40, "only {rejected} rejected programs");
    assert!(runs >= 20, "only {runs} run cases");
}
