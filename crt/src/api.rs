//! The program's own checkpoint API, HTCondor's names (`crt/include/rckpt.h`
//! is the user's documentation):
//!
//! * `ckpt()`: checkpoint and continue, synchronously. It raises SIGUSR2 on
//!   the calling thread (`tgkill`), so the image is taken in the checkpoint
//!   handler's own signal frame, which is what a restart resumes through:
//!   a restart returns from the `tgkill` inside `ckpt()`. The handler forks
//!   the writer as for any SIGUSR2, but, asked by `ckpt()` (`REQUEST`), waits
//!   for it there and records its outcome (`RESULT`). Back in `ckpt()`, the
//!   restart count in `rckpt_patch` (the loader increments it) tells a
//!   restart (1) from the writer's outcome (0 or -1).
//! * `ckpt_and_exit()`: the same with SIGTSTP (written in place, then death
//!   by SIGUSR2; a failure returns from the handler and from the call).
//! * `init_image_with_file_name(name)`: the checkpoint file from now on.
//! * `_condor_ckpt_disable()` / `_condor_ckpt_enable()`: a nesting count.
//!   While it is above 0 the handler does not checkpoint but remembers the
//!   signal (`DEFERRED`, SIGTSTP winning) and the outermost enable raises it
//!   again, inside the enable.
//! * Fortran's names (gfortran: one trailing underscore, a string's length as
//!   a hidden argument): `ckpt_`, `ckpt_and_exit_`,
//!   `init_image_with_file_name_`, `condor_ckpt_disable_`,
//!   `condor_ckpt_enable_` (a Fortran name cannot start with `_`).
//! * All these names are weak entry points jumping to the runtime's
//!   `rckpt_*` functions: a program's own definition of one wins.
//!
//! Signal context: [`defer`], [`wait_requested_writer`] and [`record`] run in
//! the checkpoint handler. They touch only atomics and rt-core's raw system
//! calls: no allocation, no formatting, no panics, no locks, no libc. The
//! entry points themselves are called by the program (not from its signal
//! handlers: `ckpt()` calls `fflush`).

use crate::{cstr, SIGTSTP, SIGUSR2};
use core::ffi::{c_char, c_int, c_void};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::SeqCst};
use rckpt_rt_core::line::Line;
use rckpt_rt_core::sys::{self, CPath};

/// Depth of `_condor_ckpt_disable()` calls not yet matched by an enable.
static DISABLED: AtomicU32 = AtomicU32::new(0);
/// The checkpoint signal that arrived while disabled (0: none).
static DEFERRED: AtomicI32 = AtomicI32::new(0);
/// The signal `ckpt()`/`ckpt_and_exit()` is raising (0: none): its handler
/// run is neither deferred nor left in the background.
static REQUEST: AtomicI32 = AtomicI32::new(0);
/// The requested checkpoint's outcome: 0 written, -1 not (the default: a
/// handler that refuses, e.g. for threads, never records).
static RESULT: AtomicI32 = AtomicI32::new(-1);

const BOTH: u64 = sys::sigbit(SIGTSTP) | sys::sigbit(SIGUSR2);

extern "C" {
    fn fflush(stream: *mut c_void) -> c_int;
}

// ---------------------------------------------------------------------------
// Hooks in the checkpoint handler (signal context)

/// True if checkpoint signal `sig` must wait for the outermost enable; it is
/// then remembered. A signal `ckpt()` itself raised is never deferred.
pub(crate) fn defer(sig: c_int) -> bool {
    if DISABLED.load(SeqCst) == 0 || REQUEST.load(SeqCst) == sig {
        return false;
    }
    // The handler masks both checkpoint signals and the enable blocks them
    // around its update: nothing races with this.
    if sig == SIGTSTP || DEFERRED.load(SeqCst) == 0 {
        DEFERRED.store(sig, SeqCst);
    }
    true
}

/// After the handler forked the writer `child` of a SIGUSR2 checkpoint: if
/// `ckpt()` asked for it, wait for it here and record whether it wrote the
/// image (true: reaped; its exit signal, still pending, is then stale and
/// ignored). False: a background writer, as for `kill -USR2`.
pub(crate) fn wait_requested_writer(child: i32) -> bool {
    if REQUEST.load(SeqCst) != SIGUSR2 {
        return false;
    }
    // Status 0: exited with 0, i.e. the image was written and renamed.
    record(SIGUSR2, sys::wait_clone(child) == Ok(0));
    true
}

/// The outcome of a checkpoint the handler wrote itself (or waited for).
pub(crate) fn record(sig: c_int, written: bool) {
    if REQUEST.load(SeqCst) == sig && written {
        RESULT.store(0, SeqCst);
    }
}

// ---------------------------------------------------------------------------
// The API

/// Restarts so far; the loader increments it in the restarted process.
fn generation() -> u32 {
    // SAFETY: a plain read of a field of the runtime's own static; volatile
    // because a restart changes it behind the compiler's back.
    unsafe { core::ptr::read_volatile(addr_of!(crate::rckpt_patch.generation)) }
}

/// Raise checkpoint signal `sig` on this thread for `what` (the caller's
/// name) and report: 1 resumed from a restart, 0 written, -1 failed (the
/// handler, or this function, printed why).
fn request(sig: c_int, what: &str) -> c_int {
    // Before `__wrap_main` installed the handler (a constructor calling
    // ckpt()), the signal's default action would kill the process.
    let mut current = sys::KSigaction::default();
    // SAFETY: only reads the current disposition.
    let installed = unsafe { sys::sigaction(sig, None, Some(&mut current)) }.is_ok()
        && current.handler == crate::on_checkpoint_signal as *const () as usize;
    if !installed {
        Line::new().t("rckpt: ").t(what).t(": the checkpoint runtime has not started yet (called before main); nothing written").emit();
        return -1;
    }
    // SAFETY: fflush(NULL) flushes every output stream; we are in the
    // program's own context (documented: not for its signal handlers).
    unsafe { fflush(core::ptr::null_mut()) };
    let before = generation();
    RESULT.store(-1, SeqCst);
    REQUEST.store(sig, SeqCst);
    // Taken even where the program blocks it: it asked explicitly. The
    // kernel delivers the unblocked signal on the way out of `tgkill`, so
    // the handler has run (and a restart resumes) when it returns.
    let old = sys::sigprocmask(sys::SIG_UNBLOCK, Some(sys::sigbit(sig)));
    let raised = sys::tgkill(sys::getpid(), sys::gettid(), sig);
    if let Ok(old) = old {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, Some(old));
    }
    REQUEST.store(0, SeqCst);
    if generation() != before {
        return 1;
    }
    if let Err(e) = raised {
        Line::new().t("rckpt: cannot raise the checkpoint signal: ").e(e).emit();
        return -1;
    }
    RESULT.load(SeqCst)
}

/// `int ckpt(void)`: checkpoint and continue (see `rckpt.h`).
#[no_mangle]
pub extern "C" fn rckpt_ckpt() -> c_int {
    request(SIGUSR2, "ckpt()")
}

/// `void ckpt_and_exit(void)`: checkpoint, then die by SIGUSR2; returns if
/// the checkpoint failed, or in a restart of the image.
#[no_mangle]
pub extern "C" fn rckpt_ckpt_and_exit() {
    request(SIGTSTP, "ckpt_and_exit()");
}

/// `void init_image_with_file_name(const char *)`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rckpt_init_image_with_file_name(name: *const c_char) {
    if name.is_null() {
        set_image_name(b"");
    } else {
        // SAFETY: the caller's contract.
        set_image_name(unsafe { cstr(name) });
    }
}

/// Resolve `name` against the working directory and make it the checkpoint
/// file, or print why not and change nothing.
fn set_image_name(name: &[u8]) {
    let mut p = CPath::new();
    let why = if name.is_empty() {
        Some("the name is empty")
    } else if name.contains(&0) {
        Some("the name holds a NUL byte")
    } else if name[0] != b'/' && (sys::getcwd(&mut p).is_err() || p.push(b"/").is_err()) {
        Some("cannot read the working directory")
    } else if p.push(name).is_err() {
        Some("the name is too long")
    } else {
        None
    };
    if let Some(why) = why {
        Line::new()
            .t("rckpt: init_image_with_file_name(\"")
            .s(name)
            .t("\"): ")
            .t(why)
            .t("; checkpoints still go to ")
            .s(crate::ckpt_path())
            .emit();
        return;
    }
    // The handler reads the name: no checkpoint signal in the middle.
    let old = sys::sigprocmask(sys::SIG_BLOCK, Some(BOTH));
    // SAFETY: the checkpoint signals are blocked, so the handler does not run
    // meanwhile; the process is single-threaded (checkpoints refuse threads).
    let dst = unsafe { &mut (*addr_of_mut!(crate::rckpt_patch)).ckpt_path };
    dst.fill(0);
    dst[..p.len()].copy_from_slice(p.as_bytes());
    if let Ok(old) = old {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, Some(old));
    }
}

/// `void _condor_ckpt_disable(void)`: hold checkpoint signals (nests).
#[no_mangle]
pub extern "C" fn rckpt_ckpt_disable() {
    let _ = DISABLED.fetch_update(SeqCst, SeqCst, |d| d.checked_add(1));
}

/// `void _condor_ckpt_enable(void)`: end one disabled level; the outermost
/// takes a checkpoint signal that arrived meanwhile, here. Unmatched: ignored.
#[no_mangle]
pub extern "C" fn rckpt_ckpt_enable() {
    // Blocked while the count and the remembered signal change together, so
    // a signal arriving now is either remembered or taken, never both.
    let old = sys::sigprocmask(sys::SIG_BLOCK, Some(BOTH));
    let depth = DISABLED.load(SeqCst);
    if depth > 0 {
        DISABLED.store(depth - 1, SeqCst);
        if depth == 1 {
            let sig = DEFERRED.swap(0, SeqCst);
            if sig != 0 {
                // Pending until the old mask returns below: then it is
                // delivered, and a restart resumes, inside this call.
                let _ = sys::tgkill(sys::getpid(), sys::gettid(), sig);
            }
        }
    }
    if let Ok(old) = old {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, Some(old));
    }
}

// ---------------------------------------------------------------------------
// The names programs call, C's and Fortran's (gfortran: `call ckpt()`...)

/// Fortran `call init_image_with_file_name(name)`: gfortran passes the
/// string's address and, as a hidden last argument, its length; the string
/// is not NUL-terminated and trailing blanks are padding.
///
/// # Safety
/// `name` points to `len` readable bytes (gfortran's calling convention).
#[no_mangle]
pub unsafe extern "C" fn rckpt_init_image_with_file_name_fortran(name: *const c_char, len: usize) {
    let s: &[u8] = if name.is_null() {
        b""
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(name as *const u8, len) }
    };
    let end = s.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    set_image_name(&s[..end]);
}

/// Defines each public name as a weak function that tail-jumps to the
/// runtime's own (arguments, in registers or on the stack, pass through
/// untouched; the same text assembles for x86_64 and i386). Weak, because
/// relinking must not break a program that already defines one of these
/// names itself (an application's own `ckpt`, say): its definition wins,
/// as it would have without rckpt. A Rust `#[no_mangle]` function cannot be
/// weak on stable Rust, hence the assembly.
macro_rules! weak_entry_points {
    ($($name:literal => $target:literal),* $(,)?) => {
        core::arch::global_asm!(concat!($(
            ".pushsection .text.rckpt_api.", $name, ",\"ax\",@progbits\n",
            ".weak ", $name, "\n",
            ".type ", $name, ",@function\n",
            $name, ":\n",
            "jmp ", $target, "\n",
            ".size ", $name, ", . - ", $name, "\n",
            ".popsection\n",
        )*));
    };
}

weak_entry_points! {
    "ckpt" => "rckpt_ckpt",
    "ckpt_and_exit" => "rckpt_ckpt_and_exit",
    "init_image_with_file_name" => "rckpt_init_image_with_file_name",
    "_condor_ckpt_disable" => "rckpt_ckpt_disable",
    "_condor_ckpt_enable" => "rckpt_ckpt_enable",
    // Fortran: `r = ckpt()` or `call ckpt()`; a Fortran name cannot start
    // with `_`, hence `call condor_ckpt_disable()`.
    "ckpt_" => "rckpt_ckpt",
    "ckpt_and_exit_" => "rckpt_ckpt_and_exit",
    "init_image_with_file_name_" => "rckpt_init_image_with_file_name_fortran",
    "condor_ckpt_disable_" => "rckpt_ckpt_disable",
    "condor_ckpt_enable_" => "rckpt_ckpt_enable",
}
