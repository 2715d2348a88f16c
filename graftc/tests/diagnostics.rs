//! Golden tests of diagnostics: each `tests/diagnostics/NAME.graft` is compiled and the plain
//! text of its diagnostics compared with `NAME.stderr`. `GRAFTC_BLESS=1` rewrites the
//! expected files from the current output.

use std::path::Path;

#[test]
fn diagnostics_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let bless = std::env::var_os("GRAFTC_BLESS").is_some_and(|v| v != "0");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/diagnostics is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "graft"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let src = std::fs::read_to_string(&case).expect("case is readable");
        let name = format!("{}", case.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        let got = match graftc::compile(&src, graftc::Options::default()) {
            Ok(c) => graftc::diag::render_plain(&name, &src, &c.warnings),
            Err(graftc::CompileError::Source(d)) => graftc::diag::render_plain(&name, &src, &d),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = case.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &got).expect("expected file is writable");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            failures.push(format!("{}: output differs (GRAFTC_BLESS=1 to accept)\n--- expected\n{expected}\n--- got\n{got}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn three_mistakes_give_three_errors() {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics/three_mistakes.graft")).unwrap();
    let Err(graftc::CompileError::Source(d)) = graftc::compile(&src, graftc::Options::default()) else { panic!("must fail") };
    let errors: Vec<_> = d.iter().filter(|d| d.severity == graftc::diag::Severity::Error).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let lines: Vec<usize> = errors.iter().map(|e| src[..e.primary.0.start].lines().count()).collect();
    assert_eq!(lines, vec![6, 7, 10]);
}
