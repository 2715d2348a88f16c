//! The `graftc` binary: exit codes and the shape of its output.

use std::path::Path;
use std::process::Command;

fn graftc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_graftc"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("NO_COLOR", "1")
        .output()
        .expect("graftc runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn build_writes_a_blob_that_dump_and_run_accept() {
    let dir = std::env::temp_dir().join(format!("graftc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blob = dir.join("victim.grir");
    let blob_s = blob.to_str().unwrap();
    let (code, _, err) = graftc(&["build", "sample-grafts/keep_buffer_cache.graft", "-o", blob_s]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&blob).unwrap();
    assert!(bytes.starts_with(b"GRIR"));
    let (code, text, _) = graftc(&["dump", blob_s]);
    assert_eq!(code, 0);
    assert!(text.starts_with("graft vm.pick_victim\n"), "{text}");
    let (code, from_src, _) = graftc(&["dump", "sample-grafts/keep_buffer_cache.graft"]);
    assert_eq!(code, 0);
    assert_eq!(text, from_src);
    let (code, out, _) = graftc(&["run", blob_s, "--arg", "2", "--buf", "cands=zero:32"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("result: 0\n"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn exit_codes() {
    // Errors in the input.
    let (code, _, err) = graftc(&["check", "graftc/tests/diagnostics/three_mistakes.graft"]);
    assert_eq!(code, 1);
    assert!(err.contains("3 errors"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colour when not on a terminal");
    // A graft that aborts.
    let (code, out, _) = graftc(&["run", "sample-grafts/hostile/endless_loop.graft", "--arg", "3"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("aborted: OutOfFuel"), "{out}");
    // Usage errors.
    assert_eq!(graftc(&["frobnicate"]).0, 2);
    assert_eq!(graftc(&["run", "sample-grafts/keep_buffer_cache.graft"]).0, 2);
    assert_eq!(graftc(&["run", "sample-grafts/keep_buffer_cache.graft", "--arg", "x"]).0, 2);
    assert_eq!(graftc(&["run", "sample-grafts/keep_buffer_cache.graft", "--arg", "1", "--buf", "nope=00"]).0, 2);
    // Help everywhere.
    for cmd in ["build", "check", "dump", "points", "run"] {
        let (code, out, _) = graftc(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}");
        assert!(out.contains("Usage"), "{cmd}");
    }
}

#[test]
fn points_lists_every_point_and_callable() {
    let (code, out, _) = graftc(&["points"]);
    assert_eq!(code, 0);
    for p in graft_ir::abi::GRAFT_POINTS {
        assert!(out.contains(&format!("graft {}(", p.name)), "{}", p.name);
    }
    for c in graft_ir::abi::CALLABLES {
        assert!(out.contains(&format!("{}(", c.name)), "{}", c.name);
    }
    assert!(out.contains("kern.halt() -> i32  cost 0  [kernel-only]"));
}

#[test]
fn forbidden_call_is_rejected_by_the_verifier_when_deferred() {
    let (code, _, err) = graftc(&["check", "--defer-import-rules", "sample-grafts/hostile/forbidden_call.graft"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[imports]"), "{err}");
    assert!(!err.contains("internal compiler error"), "{err}");
}
