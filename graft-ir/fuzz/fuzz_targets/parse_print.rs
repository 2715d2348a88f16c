//! Any text: if it parses, its printed form parses to the same module, and printing that
//! gives the same text again (the round trip the printer promises). Nothing may panic.
#![no_main]

use graft_ir::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(module) = parse(text) else { return };
    let printed = module.to_string();
    let again = parse(&printed);
    assert_eq!(again.as_ref(), Ok(&module), "printed form does not parse back:\n{printed}");
    if let Ok(m) = again {
        assert_eq!(m.to_string(), printed);
    }
});
