//! `docs/graft-points.md`, the graft point reference, is generated from the ABI table
//! (`graft_ir::abi::GRAFT_POINTS`): this test fails when the file is stale, and rewrites it
//! when run with `BLESS=1` (or `GRAFT_BLESS=1`): `BLESS=1 cargo test -p graft-ir --test points_doc`.

use std::fmt::Write;
use std::path::Path;

use graft_ir::abi::{Extent, Rights, Validator, GRAFT_POINTS};

/// The whole reference, from the table.
fn reference() -> String {
    let mut s = String::new();
    s.push_str("# Graft points\n\n");
    s.push_str(
        "<!-- Generated from graft-ir/src/abi.rs (GRAFT_POINTS) by graft-ir/tests/points_doc.rs; \
         do not edit: change the table and run `BLESS=1 cargo test -p graft-ir --test points_doc`. -->\n\n",
    );
    s.push_str(
        "Every graft point a process may graft, with its entry signature, the buffers it passes \
         (field by field: every multi-byte field is little-endian), the rule the kernel's validator \
         applies to the result, and the callables a graft there may import. Region `r0` is always \
         the graft's own data region; the point's buffers are `r1, r2, ...` in the order below. \
         A result the validator refuses aborts the call `InvalidResult`, and the kernel's default \
         policy answers instead.\n\n",
    );
    s.push_str("| point | decides | result |\n|---|---|---|\n");
    for p in GRAFT_POINTS {
        writeln!(s, "| [`{}`](#{}) | {} | {} |", p.name, p.name.replace('.', ""), p.doc, p.result).unwrap();
    }
    s.push('\n');
    for p in GRAFT_POINTS {
        let params: Vec<String> = p.params.iter().map(|x| format!("{}: {}", x.name, x.ty)).collect();
        writeln!(s, "## {}\n", p.name).unwrap();
        writeln!(s, "{} Reached from {}.\n", p.doc, p.reached_from.describe()).unwrap();
        writeln!(s, "```\nfunction fn0({}) -> {}\n```\n", params.join(", "), p.ret).unwrap();
        for (i, r) in p.regions.iter().enumerate() {
            let rights = if r.rights == Rights::ReadOnly { "read-only" } else { "read/write" };
            let extent = match (r.extent, r.has_records()) {
                (Extent::Param(k), true) => format!("`{}` records of {} bytes", p.params[k].name, r.record_size),
                (Extent::Param(k), false) => format!("`{}` bytes", p.params[k].name),
                (Extent::Capacity, true) => format!("its length / {} records of {} bytes", r.record_size, r.record_size),
                (Extent::Capacity, false) => "any number of bytes".to_string(),
            };
            let mut doc = r.doc.to_string();
            if let Some(c) = doc.get(..1) {
                doc.replace_range(..1, &c.to_uppercase());
            }
            writeln!(s, "### `r{}` `{}` ({rights}): {extent}\n\n{doc}.\n", i + 1, r.name).unwrap();
            if r.has_records() {
                s.push_str("| field | offset | type | meaning |\n|---|---|---|---|\n");
                for f in r.fields {
                    writeln!(s, "| `{}` | {} | {} | {} |", f.name, f.offset, f.ty.name(), f.doc).unwrap();
                }
                s.push('\n');
            }
        }
        let variant = match p.validator {
            Validator::Index { .. } => "Index",
            Validator::BlockList { .. } => "BlockList",
            Validator::ZeroOrNegative => "ZeroOrNegative",
        };
        writeln!(s, "**Result**: {}. Validator `{variant}`: {}.\n", p.result, p.validator.describe(p)).unwrap();
        let calls: Vec<String> = p.callables.iter().map(|c| format!("`{c}`")).collect();
        writeln!(s, "**May import**: {}.\n", calls.join(", ")).unwrap();
    }
    s.push_str(
        "## Where each piece comes from\n\n\
         One row of `GRAFT_POINTS` defines a point. Derived from it, and checked against it: the \
         kernel's record type of each buffer of records (`record!` in `kern/src/graft/points.rs`, \
         a compile error if its fields differ from the row's), `graftc run`'s model of the point \
         (arguments, buffers given field by field, the validator's facts), `graftc points`, the \
         benchmark fixtures (`kern/src/bench.rs`), the differential generator \
         (`graft-jit/tests/modgen`), the hostile program's way to reach the point, and this file. \
         Tests that fail when a point lacks a piece: `every_point_has_its_kernel_pieces` (kern), \
         `every_point_has_a_host_model_derived_from_its_row` (graftc), and this file's own.\n",
    );
    s
}

#[test]
fn graft_points_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/graft-points.md");
    let want = reference();
    if std::env::var_os("BLESS").is_some() || std::env::var_os("GRAFT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "{} is stale: run `BLESS=1 cargo test -p graft-ir --test points_doc`", path.display());
}

/// Every point has its section in the reference (the generator would not leave one out, but a
/// hand-edited file could).
#[test]
fn every_point_has_a_section() {
    let doc = reference();
    for p in GRAFT_POINTS {
        assert!(doc.contains(&format!("\n## {}\n", p.name)), "{} has no section", p.name);
        for r in p.regions {
            for f in r.fields {
                assert!(doc.contains(&format!("| `{}` | {} |", f.name, f.offset)), "{}: field {}", p.name, f.name);
            }
        }
    }
}
