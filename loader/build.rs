//! Link the loader as a static, non-PIE, libc-free executable at the fixed
//! address of `linker/loader-<arch>.ld`.
fn main() {
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => "x86_64",
        "x86" => "i386",
        other => panic!("rckpt-loader: unsupported architecture {other}"),
    };
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let script = format!("{dir}/../linker/loader-{arch}.ld");
    println!("cargo:rerun-if-changed={script}");
    for a in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,--no-dynamic-linker", "-Wl,-z,norelro"] {
        println!("cargo:rustc-link-arg-bins={a}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
}
