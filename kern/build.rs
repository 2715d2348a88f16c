//! Link settings for the bare-metal kernel binary.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        // The in-kernel test registry and the exception fix-up table are linker sections found
        // through `__start_*` / `__stop_*`; keep them even though nothing else references them.
        println!("cargo:rustc-link-arg-bins=-znostart-stop-gc");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
