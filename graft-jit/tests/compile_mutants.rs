//! Compile fuzzing on the host: every module the verifier accepts must compile (a Cranelift
//! panic on a verified module would be a kernel panic). Generated modules are encoded, their
//! blobs mutated (bytes flipped, inserted, deleted), and whatever still decodes and verifies is
//! compiled. `GRAFT_MUTANT_CASES` sets the number of mutants (default 20,000).

mod modgen;

use graft_ir::{decode, encode, verify};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[test]
fn every_verified_mutant_compiles() {
    let cases: u64 = std::env::var("GRAFT_MUTANT_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let mut rng = Rng(0x6d75_7461_6e74_0001);
    let (mut decoded, mut verified, mut compiled) = (0u64, 0u64, 0u64);
    let mut originals = 0u64;
    let mut blob = Vec::new();
    for i in 0..cases {
        // A fresh generated module every 16 mutants.
        if i % 16 == 0 {
            let case = modgen::case(0x6d75_0000_0000 + originals);
            originals += 1;
            blob = encode(&case.module).expect("generated modules encode");
        }
        let mut m = blob.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len() as u64) as usize;
            match rng.below(3) {
                0 if at >= 6 => m[at] ^= 1 << rng.below(8),
                1 if at >= 6 => {
                    m.insert(at, rng.next() as u8);
                }
                2 if at >= 6 && m.len() > 7 => {
                    m.remove(at);
                }
                _ => {
                    let last = m.len() - 1;
                    m[at.clamp(6.min(last), last)] = rng.next() as u8;
                }
            }
        }
        let Ok(module) = decode(&m) else { continue };
        decoded += 1;
        let Ok(v) = verify(module) else { continue };
        verified += 1;
        let text = v.module().to_string();
        match std::panic::catch_unwind(|| graft_jit::compile(&v)) {
            Ok(Ok(_)) => compiled += 1,
            Ok(Err(e)) => panic!("a verified module does not compile: {e}\n{text}"),
            Err(_) => panic!("the compiler panicked on a verified module:\n{text}"),
        }
    }
    println!("compile mutants: {cases} mutants of {originals} modules; {decoded} decoded, {verified} verified, {compiled} compiled");
    assert_eq!(verified, compiled);
    assert!(verified > cases / 100, "too few mutants verify ({verified}) to test anything");
}
