//! `rckpt compile <compiler command line>`: HTCondor's condor_compile. Runs
//! the compiler command with the rckpt runtime linked in:
//!
//! * `-Wl,--wrap=main` routes the C runtime's call to `main` through
//!   `__wrap_main` (flag parsing, handlers, restart); relinking existing
//!   objects works the same, nothing is recompiled;
//! * `-Wl,--wrap=signal,--wrap=sigaction` keep SIGTSTP/SIGUSR2 for the
//!   checkpointer;
//! * a generated object embeds `rckpt-loader` so that
//!   `./prog -_condor_restart FILE` needs nothing else on the machine;
//! * `librckpt_crt.a` comes last;
//! * `-I<runtime dir>`, so that `#include <rckpt.h>` (the program's own
//!   checkpoint calls, installed there by `cargo build`) needs no flag.
//!
//! Commands that do not link (`-c`, `-S`, `-E`, `-M`...) run with only that
//! `-I` added.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the runtime pieces for one target class live.
pub struct Runtime {
    pub crt: PathBuf,
    pub loader: PathBuf,
    /// `rckpt.h`; its directory goes on the include path.
    pub header: PathBuf,
    pub machine: object::Architecture,
}

/// The directory of the runtime for one target class, next to the `rckpt`
/// executable (as cargo builds it).
fn runtime_dir(m32: bool) -> Result<(PathBuf, object::Architecture), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate rckpt itself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    Ok(if m32 {
        // target/release/rckpt -> target/i686-unknown-linux-gnu/release/
        let profile = dir.file_name().map(PathBuf::from).unwrap_or_default();
        let root = dir.parent().unwrap_or(Path::new("."));
        (root.join("i686-unknown-linux-gnu").join(profile), object::Architecture::I386)
    } else {
        (dir.to_path_buf(), object::Architecture::X86_64)
    })
}

/// Find the runtime next to the `rckpt` executable (as cargo builds it).
pub fn runtime(m32: bool) -> Result<Runtime, String> {
    let (base, machine) = runtime_dir(m32)?;
    let rt = Runtime { crt: base.join("librckpt_crt.a"), loader: base.join("rckpt-loader"), header: base.join("rckpt.h"), machine };
    for p in [&rt.crt, &rt.loader, &rt.header] {
        if !p.exists() {
            return Err(format!(
                "runtime file {} is missing (build it with: {})",
                p.display(),
                if m32 {
                    "cargo build --release --target i686-unknown-linux-gnu -p rckpt-crt -p rckpt-loader"
                } else {
                    "cargo build --release"
                }
            ));
        }
    }
    Ok(rt)
}

fn links(args: &[String]) -> bool {
    !args
        .iter()
        .any(|a| matches!(a.as_str(), "-c" | "-S" | "-E" | "-M" | "-MM" | "--version" | "-v" | "-dumpversion" | "-dumpmachine" | "--help"))
}

/// An ELF relocatable object holding the loader as
/// `rckpt_loader_blob_start .. rckpt_loader_blob_end`.
pub fn loader_object(rt: &Runtime) -> Result<Vec<u8>, String> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope};
    let blob = std::fs::read(&rt.loader).map_err(|e| format!("cannot read {}: {e}", rt.loader.display()))?;
    let mut obj = Object::new(BinaryFormat::Elf, rt.machine, Endianness::Little);
    let sec = obj.add_section(Vec::new(), b".rodata.rckpt_loader".to_vec(), SectionKind::ReadOnlyData);
    let off = obj.append_section_data(sec, &blob, 16);
    // Say the object needs no executable stack.
    obj.add_section(Vec::new(), b".note.GNU-stack".to_vec(), SectionKind::Other);
    for (name, value) in [("rckpt_loader_blob_start", off), ("rckpt_loader_blob_end", off + blob.len() as u64)] {
        obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size: 0,
            kind: SymbolKind::Data,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(sec),
            flags: SymbolFlags::None,
        });
    }
    obj.write().map_err(|e| format!("cannot build the loader object: {e}"))
}

/// Run the compiler command with the runtime linked in; returns its exit code.
pub fn run(cmd: &[String]) -> Result<i32, String> {
    let (cc, args) = cmd.split_first().ok_or("usage: rckpt compile <compiler> [args...]")?;
    let mut c = Command::new(cc);
    c.args(args);
    let _tmp;
    let m32 = args.iter().any(|a| a == "-m32");
    if links(args) {
        let rt = runtime(m32)?;
        let dir = std::env::temp_dir().join(format!("rckpt-compile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        _tmp = TempDir(dir.clone());
        let obj = dir.join("rckpt-loader-blob.o");
        std::fs::write(&obj, loader_object(&rt)?).map_err(|e| format!("cannot write {}: {e}", obj.display()))?;
        c.arg("-Wl,--wrap=main,--wrap=signal,--wrap=sigaction");
        c.arg(&obj);
        c.arg(&rt.crt);
    }
    // After the command's own -I options, which are searched first. A
    // command that does not link gets it if the header is there (either
    // class's copy: they are the same file).
    let header = [m32, !m32].into_iter().filter_map(|c| runtime_dir(c).ok()).map(|(d, _)| d).find(|d| d.join("rckpt.h").exists());
    if let Some(dir) = header {
        let mut flag = std::ffi::OsString::from("-I");
        flag.push(&dir);
        c.arg(flag);
    }
    let st = c.status().map_err(|e| format!("cannot run {cc}: {e}"))?;
    Ok(st.code().unwrap_or(1))
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
