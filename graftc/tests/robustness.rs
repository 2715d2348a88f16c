//! No input makes the front end panic, and whatever the front end accepts, the verifier
//! accepts too (a rejection would be a compiler bug). Inputs: every sample, truncated at many
//! points and mutated at random (a fixed seed, so failures reproduce), plus pathological
//! nesting.

use std::path::Path;

use graftc::{compile, CompileError, Options};

fn samples() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-grafts");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("hostile")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "graft") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Compile and insist on no internal error; panics surface as test failures by themselves.
/// Says whether the variant compiled (so tests can make sure they exercise the back end too).
fn compile_no_ice(name: &str, src: &str) -> bool {
    let mut ok = false;
    for defer in [false, true] {
        match compile(src, Options { defer_import_rules: defer }) {
            Err(CompileError::Internal { detail, log, ir }) => {
                panic!("internal compiler error on a variant of {name}: {detail}\n{log:?}\n--- source\n{src}\n--- ir\n{ir}")
            }
            Ok(_) => ok = true,
            Err(_) => {}
        }
    }
    ok
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[test]
fn truncated_samples_never_panic() {
    for (name, src) in samples() {
        let mut i = 0;
        while i < src.len() {
            let cut = floor_char(&src, i);
            let _ = compile_no_ice(&name, &src[..cut]);
            i += 5;
        }
    }
}

#[test]
fn mutated_samples_never_panic() {
    const PIECES: &[&str] = &[
        "{", "}", "(", ")", "[", "]", ";", ",", ".", "..", "=", "+=", "as", "as u8", "-", "!", "<<",
        "0", "-1", "0xffffffffffffffffffff", "255u8", "true", "let mut q = 1;", "while true {",
        "break;", "continue;", "return;", "return 0;", "abort(1);", "fn", "graft", "global", "é",
        "/*", "n", "i", "cands[0].u64", "lock.get(0)", "kern.halt()", "x", "i64", "u32", "bool",
        "if n > 0 { return 1; }", "for k in 0..3 { }", "\n", " ", "rotl(1u32, 2u32)",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut tried, mut compiled) = (0usize, 0usize);
    for (name, src) in samples() {
        for _ in 0..300 {
            tried += 1;
            let mut s = src.clone();
            for _ in 0..1 + rng.below(3) {
                let a = floor_char(&s, rng.below(s.len() + 1));
                let b = floor_char(&s, a + rng.below(12));
                let b = b.max(a);
                match rng.below(4) {
                    0 => s.replace_range(a..b, ""),
                    1 => s.insert_str(a, PIECES[rng.below(PIECES.len())]),
                    2 => s.replace_range(a..b, PIECES[rng.below(PIECES.len())]),
                    _ => {
                        let piece = s[a..b].to_string();
                        let c = floor_char(&s, rng.below(s.len() + 1));
                        s.insert_str(c, &piece);
                    }
                }
            }
            compiled += usize::from(compile_no_ice(&name, &s));
        }
    }
    // Enough variants get through the front end for the verifier to have been exercised.
    assert!(compiled * 10 >= tried, "only {compiled} of {tried} variants compiled");
}

#[test]
fn pathological_nesting_is_an_error_not_a_crash() {
    let deep = |open: &str, mid: &str, close: &str, n: usize| {
        format!("graft vm.pick_victim(cands: buffer, n: i32) -> i32 {{ return {}{}{}; }}", open.repeat(n), mid, close.repeat(n))
    };
    for src in [
        deep("(", "1", ")", 100_000),
        deep("-", "1", "", 100_000),
        deep("", "1", " + 1", 100_000),
        deep("", "n", " as i32", 100_000),
        deep("", "cands", "[0]", 100_000),
        format!("graft vm.pick_victim(cands: buffer, n: i32) -> i32 {{ {} return 0; }}", "{".repeat(100_000)),
        format!("graft vm.pick_victim(cands: buffer, n: i32) -> i32 {{ if n > 0 {{ return 0; }} {} return 1; }}", "else if n > 0 { return 0; } ".repeat(10_000)),
    ] {
        match compile(&src, Options::default()) {
            Err(CompileError::Source(d)) => assert!(d.iter().any(|d| d.message.contains("nesting") || d.message.contains("expected")), "{:?}", d.first()),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(12345);
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| b"graft vm.pick_victim(){}[];:,.=+-*/<>!&|^%0123456789xu letmutifwhilefornreturn \n\"#"[rng.below(73)]).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = compile_no_ice("random", &s);
    }
}
