//! `docs/graft-ir.md` has sections generated from the opcode table, the abort reasons and the
//! ABI table; this test fails when they drift. `GRAFT_BLESS=1` rewrites them (so does `BLESS=1`).

use std::fmt::Write;
use std::path::Path;

use graft_ir::abi::{Rights, CALLABLES, GRAFT_POINTS};
use graft_ir::{AbortReason, Opcode};

fn opcodes() -> String {
    let mut s = String::from("| opcode | semantics |\n|---|---|\n");
    for op in Opcode::ALL {
        let doc = op.doc().trim().replace('\n', " ");
        writeln!(s, "| `{}` | {doc} |", op.name()).unwrap();
    }
    s
}

fn aborts() -> String {
    let mut s = String::from("| code | reason | message |\n|---|---|---|\n");
    for r in AbortReason::ALL {
        let payload = match r {
            AbortReason::Explicit(_) | AbortReason::CallableFailed(_) => "(u32)",
            _ => "",
        };
        writeln!(s, "| {} | `{}{payload}` | {r} |", r.code(), r.name()).unwrap();
    }
    s
}

fn abi() -> String {
    let mut s = String::from("### Graft points\n\nThe full reference, field by field, is `docs/graft-points.md` (generated from the same rows).\n\n");
    for p in GRAFT_POINTS {
        let params: Vec<String> = p.params.iter().map(|x| format!("{}: {}", x.name, x.ty)).collect();
        writeln!(s, "#### `{}({}) -> {}`\n\n{}\n", p.name, params.join(", "), p.ret, p.doc).unwrap();
        for (i, r) in p.regions.iter().enumerate() {
            let rights = if r.rights == Rights::ReadOnly { "read-only" } else { "read/write" };
            let fields: Vec<String> = r.fields.iter().map(|f| format!("{}: {} @{}", f.name, f.ty.name(), f.offset)).collect();
            let layout = if fields.is_empty() { String::from("bytes") } else { format!("records of {} bytes: {}", r.record_size, fields.join(", ")) };
            writeln!(s, "- region `r{}` `{}` ({rights}; {layout}): {}", i + 1, r.name, r.doc).unwrap();
        }
        writeln!(s, "- result: {}; {}", p.result, p.validator.describe(p)).unwrap();
        let calls: Vec<String> = p.callables.iter().map(|c| format!("`{c}`")).collect();
        writeln!(s, "- may import: {}\n", calls.join(", ")).unwrap();
    }
    s.push_str("### Callables\n\n| id | callable | cost | doc |\n|---|---|---|---|\n");
    for c in CALLABLES {
        let sig = c.signature();
        let doc = if c.importable { c.doc.to_string() } else { format!("**Privileged.** {}", c.doc) };
        writeln!(s, "| {} | `{}{sig}` | {} | {doc} |", c.id, c.name, c.cost).unwrap();
    }
    s
}

#[test]
fn generated_doc_sections_are_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/graft-ir.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        panic!("{} is missing", path.display());
    };
    let mut out = doc.clone();
    for (name, body) in [("opcodes", opcodes()), ("aborts", aborts()), ("abi", abi())] {
        let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
        let end = format!("<!-- END GENERATED: {name} -->");
        let (Some(b), Some(e)) = (out.find(&begin), out.find(&end)) else {
            panic!("section {name} markers missing");
        };
        out.replace_range(b + begin.len()..e, &body);
    }
    if std::env::var_os("GRAFT_BLESS").is_some() || std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &out).unwrap();
    } else {
        assert!(out == doc, "docs/graft-ir.md is out of date: run with GRAFT_BLESS=1");
    }
}
