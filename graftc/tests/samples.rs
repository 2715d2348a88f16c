//! Every file of `sample-grafts/` compiles and verifies (or is rejected as its header says),
//! and running it gives what its header expects:
//!
//! ```text
//! // run: --arg 4 --buf cands=zero:64     (graftc run options)
//! // expect: result 3 | abort OutOfFuel | error <message>
//! // expect-buffer: NAME=HEX               (a writable buffer after the call)
//! // expect-output: <text>                 (a line of the run report)
//! // expect-deferred: imports              (with --defer-import-rules, the verifier's rule)
//! ```

use std::path::{Path, PathBuf};

use graftc::{compile, CompileError, Options};

fn samples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-grafts");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("sample-grafts is readable") {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "graft") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn header<'a>(src: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("// {key}:");
    src.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).map(str::trim).collect()
}

fn check_sample(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let expect = header(&src, "expect");
    let [expect] = expect.as_slice() else { return Err("needs exactly one `// expect:` line".into()) };
    if let Some(msg) = expect.strip_prefix("error ") {
        match compile(&src, Options::default()) {
            Err(CompileError::Source(d)) if d.iter().any(|d| d.message.contains(msg)) => {}
            other => return Err(format!("expected error `{msg}`, got {other:?}")),
        }
        for rule in header(&src, "expect-deferred") {
            match compile(&src, Options { defer_import_rules: true }) {
                Err(CompileError::Rejected { log, .. }) if log.errors.iter().all(|e| e.rule.name() == rule) && !log.errors.is_empty() => {}
                other => return Err(format!("expected a verifier rejection by rule `{rule}`, got {other:?}")),
            }
        }
        return Ok(());
    }
    let compiled = compile(&src, Options::default()).map_err(|e| match e {
        CompileError::Source(d) => graftc::diag::render_plain(&path.display().to_string(), &src, &d),
        e => e.to_string(),
    })?;
    // The blob round-trips and still verifies.
    let blob = graft_ir::encode(compiled.verified.module()).map_err(|e| e.to_string())?;
    let decoded = graft_ir::decode(&blob).map_err(|e| e.to_string())?;
    if &decoded != compiled.verified.module() {
        return Err("blob does not round-trip".into());
    }
    let run = header(&src, "run");
    let [run] = run.as_slice() else { return Err("needs exactly one `// run:` line".into()) };
    let words: Vec<&str> = run.split_whitespace().collect();
    let mut config = graftc::run::config_from_words(&words)?;
    // Both engines must give the same answer, and the same fuel left.
    config.engine = graftc::run::Engine::Interp;
    let interp = graftc::run::run(&compiled.verified, &config).map_err(|e| e.to_string())?;
    config.engine = graftc::run::Engine::Jit;
    let report = graftc::run::run(&compiled.verified, &config).map_err(|e| e.to_string())?;
    if (interp.outcome, interp.fuel_used, &interp.buffers) != (report.outcome, report.fuel_used, &report.buffers) {
        return Err(format!("the JIT and the interpreter disagree:\n--- interp\n{}--- jit\n{}", graftc::run::format_report(&interp), graftc::run::format_report(&report)));
    }
    let got = match &report.outcome {
        Ok(v) => format!("result {v}"),
        Err(e) => format!("abort {}", e.name()),
    };
    if got != *expect {
        return Err(format!("expected `{expect}`, got `{got}`\n{}", graftc::run::format_report(&report)));
    }
    for b in header(&src, "expect-buffer") {
        let (name, hex) = b.split_once('=').ok_or("expect-buffer wants NAME=HEX")?;
        let found = report.buffers.iter().find(|(n, _)| *n == name).map(|(_, bytes)| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        if found.as_deref() != Some(hex) {
            return Err(format!("buffer {name}: expected {hex}, got {found:?}"));
        }
    }
    let text = graftc::run::format_report(&report);
    for line in header(&src, "expect-output") {
        if !text.lines().any(|l| l == line) {
            return Err(format!("report lacks the line `{line}`:\n{text}"));
        }
    }
    Ok(())
}

#[test]
fn every_sample_compiles_and_runs_as_expected() {
    let all = samples();
    assert!(all.len() >= 12, "found only {} samples", all.len());
    let failures: Vec<String> = all
        .iter()
        .filter_map(|p| check_sample(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn encryption_round_trips_at_any_offset() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-grafts");
    let enc = compile(&std::fs::read_to_string(root.join("xtea_write_filter.graft")).unwrap(), Options::default()).unwrap();
    let dec = compile(&std::fs::read_to_string(root.join("xtea_read_filter.graft")).unwrap(), Options::default()).unwrap();
    let plain: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
    for offset in [0i64, 3, 8, 4093] {
        let cfg = |bytes: Vec<u8>| graftc::run::RunConfig {
            args: vec!["file:1".into(), offset.to_string(), bytes.len().to_string()],
            buffers: vec![("buf".into(), bytes.into())],
            fuel: None,
            calls: 1,
            engine: graftc::run::Engine::Jit,
        };
        let c = graftc::run::run(&enc.verified, &cfg(plain.clone())).unwrap();
        assert!(c.outcome.is_ok(), "{:?}", c.outcome);
        let cipher = c.buffers[0].1.clone();
        assert_ne!(cipher, plain);
        let p = graftc::run::run(&dec.verified, &cfg(cipher)).unwrap();
        assert_eq!(p.buffers[0].1, plain, "offset {offset}");
    }
}
