//! Installs `include/rckpt.h` next to `librckpt_crt.a`: in the profile
//! directory (`target/release/`, or `target/<triple>/release/` for a
//! `--target` build), where `rckpt compile` adds it to the include path.
//! Cargo has no install step for a static library's header; the profile
//! directory is `OUT_DIR`'s third ancestor
//! (`<profile>/build/rckpt-crt-<hash>/out`), checked below.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=include/rckpt.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let build = out.ancestors().nth(2).expect("OUT_DIR is <profile>/build/<pkg>/out");
    assert!(
        build.file_name().is_some_and(|n| n == "build"),
        "unexpected OUT_DIR layout {}: cannot find the profile directory for rckpt.h",
        out.display()
    );
    let profile = build.parent().expect("the build directory has a parent");
    let src = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("include/rckpt.h");
    // Through a temporary name: a compile may be reading the old copy.
    let tmp = profile.join(".rckpt.h.tmp");
    std::fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", src.display(), tmp.display()));
    std::fs::rename(&tmp, profile.join("rckpt.h")).unwrap_or_else(|e| panic!("cannot install rckpt.h in {}: {e}", profile.display()));
}
