//! The command stream's interpreter (`-_condor_cmd_fd FD`,
//! `-_condor_cmd_file FILE`). Parsing is rt-core's ([`rckpt_rt_core::cmd`]);
//! this module only executes.
//!
//! * [`before_main`] runs in `__wrap_main`, before the program's `main`:
//!   `iwd`, `fd`, `ckpt`, `restart` and `migrate_from` set the job up until
//!   the first `end`. Any error there is one line and exit status 2: the
//!   job never runs half set up.
//! * [`on_tstp`] runs in the checkpoint signal handler: every SIGTSTP reads
//!   one batch (`ckpt`, `migrate_to`, `exit`, up to `end` or the end of the
//!   stream). Signal context: only rt-core (raw system calls, fixed
//!   buffers); forbidden are allocation, `core::fmt`, panics, locks and
//!   libc calls.
//!
//! The stream's lines are numbered from 1 for the whole stream, across
//! batches; a restarted process (a new generation) starts a new count.

use crate::{absolute, ckpt_path, die, exec_loader, patch, rckpt_patch, request, store_ckpt_path, write_checkpoint_to, Ctx, Source};
use core::ffi::c_char;
use core::ptr::addr_of_mut;
use rckpt_rt_core::cmd::{parse_line, words, Command, LineReader, ReadError, MAX_LINE};
use rckpt_rt_core::flags::Flags;
use rckpt_rt_core::line::Line;
use rckpt_rt_core::migrate;
use rckpt_rt_core::sys::{self, CPath, Fd};

/// The stream's reader: bytes read past a line's end wait here for the
/// next batch.
static mut READER: LineReader = LineReader::new();
/// The (restart generation, descriptor) whose stream `READER` holds. A
/// restored process finds the image's values here and starts afresh.
static mut READER_OF: (u32, Fd) = (0, -1);

fn reader() -> &'static mut LineReader {
    let p = patch();
    // SAFETY: single-threaded; used only before main and in the handler,
    // which masks both checkpoint signals, so never twice at once.
    let (of, r) = unsafe { (&mut *addr_of_mut!(READER_OF), &mut *addr_of_mut!(READER)) };
    if *of != (p.generation, p.cmd_fd) {
        r.reset();
        *of = (p.generation, p.cmd_fd);
    }
    r
}

/// "rckpt: command stream line N: "
fn at(n: u32) -> Line {
    let mut l = Line::new();
    l.t("rckpt: command stream line ").u(n as u64).t(": ");
    l
}

/// The line's words, joined by single spaces.
fn echo<'l>(l: &'l mut Line, line: &[u8]) -> &'l mut Line {
    for (i, w) in words(line).enumerate() {
        if i > 0 {
            l.t(" ");
        }
        l.s(w);
    }
    l
}

/// Open (or check) the stream named by the flags; record it for the
/// handler, the writer (which leaves it out of images) and the loader.
fn open_stream(f: &Flags) -> Fd {
    let fd = match (f.cmd_fd, f.cmd_file) {
        (Some(n), _) => {
            if let Err(e) = sys::fcntl(n, sys::F_GETFD, 0) {
                die(Line::new().t("rckpt: -_condor_cmd_fd ").i(n as i64).t(": ").e(e), 2);
            }
            n
        }
        (None, Some(name)) => {
            let opened = CPath::from_bytes(name).and_then(|mut p| sys::open(&mut p, sys::O_RDONLY | sys::O_CLOEXEC, 0));
            match opened {
                Ok(fd) => fd,
                Err(e) => die(Line::new().t("rckpt: -_condor_cmd_file ").s(name).t(": ").e(e), 2),
            }
        }
        (None, None) => -1,
    };
    // SAFETY: before main, single-threaded; see `patch`.
    unsafe { (*addr_of_mut!(rckpt_patch)).cmd_fd = fd };
    fd
}

/// Where a `restart` or `migrate_from` before `end` resumes from (one
/// value on the stack before main: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Resume {
    Image(CPath),
    Fd(Fd),
}

/// Read and execute the stream up to its first `end`; then return (main
/// runs) or execute the loader (`restart`, `migrate_from`). Reads one byte
/// at a time, so that nothing past `end` is consumed: a restarted program
/// goes on reading the same stream from there.
///
/// # Safety
/// Called once, from `__wrap_main`, with the process's environment.
pub(crate) unsafe fn before_main(f: &Flags, envp: *mut *mut c_char) {
    let fd = open_stream(f);
    let mut resume = None;
    let mut had_ckpt = false;
    loop {
        let r = reader();
        let (n, line) = match r.next_line(|b| sys::read(fd, &mut b[..1])) {
            Ok(Some(x)) => x,
            Ok(None) => {
                let n = reader().lineno;
                die(Line::new().t("rckpt: command stream ended after line ").u(n as u64).t(" without 'end'; the job does not start"), 2)
            }
            Err(ReadError::TooLong(n)) => die(at(n).t("line longer than ").u(MAX_LINE as u64).t(" bytes"), 2),
            Err(ReadError::Io(n, e)) => die(at(n).t("reading the stream: ").e(e), 2),
        };
        let cmd = match parse_line(line) {
            Ok(None) => continue,
            Ok(Some(c)) => c,
            Err(e) => {
                let mut l = at(n);
                e.describe(&mut l);
                die(&mut l, 2)
            }
        };
        let failed = |l: &mut Line, line: &[u8]| -> ! {
            let mut m = at(n);
            echo(&mut m, line).t(": ").s(l.as_bytes());
            die(&mut m, 2)
        };
        match cmd {
            Command::Iwd(dir) => {
                if let Err(e) = CPath::from_bytes(dir).and_then(|mut p| sys::chdir(&mut p)) {
                    failed(Line::new().e(e), line);
                }
            }
            Command::Fd { fd: target, path, flags } => {
                if target == fd {
                    failed(Line::new().t("descriptor ").i(target as i64).t(" is the command stream"), line);
                }
                if let Err(e) = redirect(target, path, flags) {
                    failed(Line::new().e(e), line);
                }
            }
            Command::Ckpt(name) => match absolute(name) {
                Ok(p) => {
                    store_ckpt_path(&p);
                    had_ckpt = true;
                }
                Err(what) => failed(Line::new().t(what), line),
            },
            Command::Restart(Some(name)) => match absolute(name) {
                Ok(p) => resume = Some(Resume::Image(p)),
                Err(what) => failed(Line::new().t(what), line),
            },
            Command::Restart(None) => match CPath::from_bytes(ckpt_path()) {
                Ok(p) => resume = Some(Resume::Image(p)),
                Err(e) => failed(Line::new().e(e), line),
            },
            Command::MigrateFrom(from) => {
                if let Err(e) = sys::fcntl(from, sys::F_GETFD, 0) {
                    failed(Line::new().e(e), line);
                }
                resume = Some(Resume::Fd(from));
            }
            Command::MigrateTo { .. } => failed(Line::new().t("migrate_to is only valid after 'end' (in a SIGTSTP batch)"), line),
            Command::Exit(status) => sys::exit_group(status),
            Command::End => break,
        }
    }
    match resume {
        None => {}
        Some(Resume::Image(img)) => {
            // `restart PATH` implies `ckpt PATH`, unless the stream said
            // where checkpoints go.
            if !had_ckpt {
                store_ckpt_path(&img);
            }
            // SAFETY: forwarded contract.
            unsafe { exec_loader(Source::Image(img.as_bytes()), f, envp) }
        }
        // SAFETY: forwarded contract.
        Some(Resume::Fd(from)) => unsafe { exec_loader(Source::Fd(from), f, envp) },
    }
}

/// `fd N PATH MODE`: open PATH (created 0666 less the umask) and move it
/// to descriptor N.
fn redirect(target: Fd, path: &[u8], flags: u32) -> Result<(), sys::Errno> {
    let mut p = CPath::from_bytes(path)?;
    let t = sys::open(&mut p, flags, 0o666)?;
    if t != target {
        let r = sys::dup3(t, target, flags & sys::O_CLOEXEC);
        let _ = sys::close(t);
        r?;
    }
    Ok(())
}

/// SIGTSTP with a command stream: read and execute one batch. Returns true
/// when the stream had no command at all (its end came first): the caller
/// then does what SIGTSTP does without a stream.
///
/// Signal context (see the module doc). A failed `ckpt` or `migrate_to`
/// keeps the program running and makes a following `exit` of the same
/// batch refuse (which ends the batch), unless a later checkpoint of the
/// batch succeeded.
pub(crate) fn on_tstp(ctx: &Ctx) -> bool {
    let fd = patch().cmd_fd;
    let r = reader();
    let mut any = false;
    let mut last_failed = false;
    loop {
        let (n, line) = match r.next_line(|b| sys::read(fd, b)) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(ReadError::TooLong(n)) => {
                any = true;
                at(n).t("line longer than ").u(MAX_LINE as u64).t(" bytes; ignored").emit();
                continue;
            }
            Err(ReadError::Io(n, e)) => {
                at(n).t("reading the stream: ").e(e).t("; the batch ends here").emit();
                break;
            }
        };
        let cmd = match parse_line(line) {
            Ok(None) => continue,
            Ok(Some(c)) => c,
            Err(e) => {
                any = true;
                let mut l = at(n);
                e.describe(&mut l);
                l.t("; ignored").emit();
                continue;
            }
        };
        any = true;
        match cmd {
            Command::Ckpt(name) => {
                last_failed = !checkpoint_to(ctx, n, line, name);
            }
            Command::MigrateTo { host, port } => {
                last_failed = true;
                match CPath::from_bytes(ckpt_path()) {
                    Ok(path) => match migrate::migrate_to(host, port, &request(ctx, &path)) {
                        Ok(()) => last_failed = false,
                        Err(e) => {
                            let mut l = at(n);
                            echo(&mut l, line).t(": ");
                            e.describe(&mut l);
                            l.t("; the program keeps running").emit();
                        }
                    },
                    Err(e) => {
                        echo(&mut at(n), line).t(": ").e(e).emit();
                    }
                }
            }
            Command::Exit(status) => {
                if !last_failed {
                    sys::exit_group(status);
                }
                // The batch ends here: the program goes on.
                at(n).t("exit refused: the last checkpoint failed; the program keeps running").emit();
                return false;
            }
            Command::End => return false,
            Command::Iwd(_) | Command::Fd { .. } | Command::Restart(_) | Command::MigrateFrom(_) => {
                let verb = words(line).next().unwrap_or(b"");
                at(n).s(verb).t(" is only valid before the first 'end'; ignored").emit();
            }
        }
    }
    !any
}

/// `ckpt PATH` after `end`: a checkpoint to PATH now, in this process; on
/// success PATH becomes the checkpoint file. True on success.
fn checkpoint_to(ctx: &Ctx, n: u32, line: &[u8], name: &[u8]) -> bool {
    let path = match absolute(name) {
        Ok(p) => p,
        Err(what) => {
            echo(&mut at(n), line).t(": ").t(what).emit();
            return false;
        }
    };
    match write_checkpoint_to(ctx, &path) {
        Ok(()) => {
            store_ckpt_path(&path);
            true
        }
        Err(e) => {
            let mut l = at(n);
            l.t("checkpoint to ").s(path.as_bytes()).t(" failed: ");
            e.describe(&mut l);
            l.t("; the previous checkpoint is kept").emit();
            false
        }
    }
}
