//! `rckpt`: the user command.
//!
//! * `rckpt compile <compiler command>`: relink a program with the runtime.
//! * `rckpt info [--json] FILE`: what an image holds, and whether it is intact.
//! * `rckpt restart [--relocatable] FILE`: same as `rckpt-loader FILE`.

mod compile;
mod info;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rckpt", version, about = "User-level checkpoint/restart for Linux processes")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a compiler command with the rckpt runtime linked in
    /// (e.g. `rckpt compile cc -O2 -o prog prog.c`).
    Compile {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Describe a checkpoint image and verify its checksums.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        file: std::path::PathBuf,
    },
    /// Restart a checkpoint image (runs rckpt-loader).
    Restart {
        #[arg(long)]
        relocatable: bool,
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    die_quietly_on_sigpipe();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Compile { command } => compile::run(&command),
        Cmd::Info { json, file } => info::run(&file, json),
        Cmd::Restart { relocatable, file } => restart(&file, relocatable),
    };
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(msg) => {
            eprintln!("rckpt: {msg}");
            ExitCode::from(1)
        }
    }
}

/// A closed stdout (`rckpt info IMG | head`) ends the command by SIGPIPE,
/// silently, as it ends `cat` or `grep`. Rust's runtime starts with SIGPIPE
/// ignored, which turns the same write into an EPIPE error and `println!`
/// into a "Broken pipe" panic. Dying by the signal, rather than exiting 0,
/// tells a shell with `pipefail` that the output was cut short. Set before
/// clap parses, so that `--help | head` ends the same way; programs this
/// command runs (the compiler, the loader) get SIGPIPE's default as they
/// always did.
fn die_quietly_on_sigpipe() {
    const SIGPIPE: i32 = 13;
    let dfl = rckpt_rt_core::sys::KSigaction::default();
    // SAFETY: SIG_DFL (the default `KSigaction`) installs no handler.
    let _ = unsafe { rckpt_rt_core::sys::sigaction(SIGPIPE, Some(&dfl), None) };
}

fn restart(file: &std::path::Path, relocatable: bool) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    let rt = compile::runtime(false)?;
    let mut c = std::process::Command::new(&rt.loader);
    if relocatable {
        c.arg("--relocatable");
    }
    c.arg("--").arg(file);
    Err(format!("cannot run {}: {}", rt.loader.display(), c.exec()))
}
