//! `librckpt_crt.a`, the runtime `rckpt compile` links into a program.
//!
//! * `__wrap_main` (the link uses `--wrap=main`) removes the `-_condor_*`
//!   flags from argv, runs the command stream up to its first `end`
//!   (`cmd`), installs the checkpoint handlers for SIGTSTP and SIGUSR2, and
//!   either calls the program's `main` or, for `-_condor_restart` (or the
//!   stream's `restart`), executes the embedded `rckpt-loader` on the image.
//!   With a command stream, SIGTSTP runs its next batch of commands.
//! * `on_checkpoint_signal` runs in signal context: it calls only rt-core
//!   (raw system calls, fixed buffers), never libc, never allocates.
//! * The libc-compat shim: `__wrap_signal` / `__wrap_sigaction` keep SIGTSTP
//!   and SIGUSR2 for the checkpointer, as HTCondor's library did.
//! * `api`: the program's own calls (`ckpt()`, `_condor_ckpt_disable()`...,
//!   declared in `crt/include/rckpt.h`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_char, c_int, c_void};
use core::ptr::{addr_of, addr_of_mut};
use rckpt_rt_core::flags::{self, MODE_OFF, MODE_ONCE, WARN_NOTICE};
use rckpt_rt_core::format::{RestartPatch, TimerDesc, PATCH_MAGIC};
use rckpt_rt_core::line::Line;
use rckpt_rt_core::sys::{self, CPath, KSigaction};
use rckpt_rt_core::writer;

mod api;
mod cmd;

const SIGTSTP: c_int = 20;
const SIGUSR2: c_int = 12;

/// The state the loader rewrites on restart (see `format::RestartPatch`).
/// Written only before `main` runs and by the loader; read by the handler.
#[no_mangle]
pub static mut rckpt_patch: RestartPatch = RestartPatch {
    magic: PATCH_MAGIC,
    ckpt_path: [0; 4096],
    relocatable: 0,
    generation: 0,
    debug: 0,
    warn: [1; 8],
    reserved: 0,
    ghost_limit: flags::DEFAULT_GHOST_LIMIT,
    cmd_fd: -1,
    pad: 0,
};

/// `-_condor_debug_wait` spins until a debugger clears this.
#[no_mangle]
pub static mut rckpt_debug_wait: c_int = 0;

/// Warnings already printed, for ONCE mode (one bit per kind).
static mut WARNED: u8 = 0;

/// Pid of the background writer of a SIGUSR2 checkpoint not reaped yet, or 0.
static mut WRITER: i32 = 0;

extern "C" {
    fn __real_main(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) -> c_int;
    fn __real_sigaction(sig: c_int, act: *const c_void, old: *mut c_void) -> c_int;
    fn __real_signal(sig: c_int, handler: usize) -> usize;
    fn __errno_location() -> *mut c_int;
    /// glibc 2.35+: where this thread's rseq area is, relative to the
    /// thread pointer, and its size (0: not registered).
    static __rseq_offset: isize;
    static __rseq_size: u32;
    /// The loader binary, embedded by `rckpt compile` (a generated object).
    static rckpt_loader_blob_start: u8;
    static rckpt_loader_blob_end: u8;
}

pub(crate) fn patch() -> &'static RestartPatch {
    // SAFETY: written only before main and by the loader while nothing runs;
    // this process is single-threaded (the checkpoint refuses threads).
    unsafe { &*addr_of!(rckpt_patch) }
}

unsafe fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p as *const u8, n)
    }
}

pub(crate) fn die(l: &mut Line, code: i32) -> ! {
    l.emit();
    sys::exit_group(code)
}

/// Print a warning of `kind` unless its mode says otherwise.
fn warn(kind: usize, msg: &mut Line) {
    let mode = patch().warn[kind];
    // SAFETY: single-threaded; see `patch`.
    let warned = unsafe { &mut *addr_of_mut!(WARNED) };
    if mode == MODE_OFF || (mode == MODE_ONCE && *warned & (1 << kind) != 0) {
        return;
    }
    *warned |= 1 << kind;
    msg.emit();
}

/// `name` resolved against the working directory; the error says what
/// failed.
pub(crate) fn absolute(name: &[u8]) -> Result<CPath, &'static str> {
    let mut p = CPath::new();
    if name.first() != Some(&b'/') && (sys::getcwd(&mut p).is_err() || p.push(b"/").is_err()) {
        return Err("cannot read the working directory");
    }
    p.push(name).map_err(|_| "file name too long")?;
    Ok(p)
}

/// Resolve `name` against the working directory into the patch block.
fn set_ckpt_path(name: &[u8]) {
    match absolute(name) {
        Ok(p) => store_ckpt_path(&p),
        Err(what) => die(Line::new().t("rckpt: checkpoint ").t(what), 2),
    }
}

/// Make `p` (absolute) the checkpoint file. Before main, or in the handler
/// (which masks both checkpoint signals).
pub(crate) fn store_ckpt_path(p: &CPath) {
    // SAFETY: single-threaded, and never while the handler reads it; see
    // `patch`.
    let dst = unsafe { &mut (*addr_of_mut!(rckpt_patch)).ckpt_path };
    dst.fill(0);
    let n = p.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&p.as_bytes()[..n]);
}

/// The program's entry, in place of `main`.
///
/// # Safety
/// Called once by the C runtime with the process's argc/argv/envp.
#[no_mangle]
pub unsafe extern "C" fn __wrap_main(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) -> c_int {
    let n = (argc.max(1) - 1) as usize;
    let mut removed = [0u64; 1024];
    // SAFETY: argv has argc valid entries.
    let arg = |i: usize| -> &[u8] { unsafe { cstr(*argv.add(i + 1)) } };
    let parsed = flags::parse(n, arg, |i| {
        if i < removed.len() * 64 {
            removed[i / 64] |= 1 << (i % 64);
        }
    });
    let f = match parsed {
        Ok(f) => f,
        Err(e) => {
            let mut l = Line::new();
            l.t("rckpt: ");
            e.describe(&mut l);
            die(&mut l, 2);
        }
    };
    // Default checkpoint file: the program's name plus ".ckpt", here.
    match f.file {
        Some(file) => set_ckpt_path(file),
        None => {
            // SAFETY: argv[0] exists when argc >= 1.
            let prog = if argc >= 1 { unsafe { cstr(*argv) } } else { b"a.out" };
            let base = prog.rsplit(|&c| c == b'/').next().unwrap_or(prog);
            let mut name = CPath::new();
            if name.push(base).and_then(|_| name.push(b".ckpt")).is_err() {
                die(Line::new().t("rckpt: program name too long"), 2);
            }
            set_ckpt_path(name.as_bytes());
        }
    }
    {
        // SAFETY: before main; see `patch`.
        let p = unsafe { &mut *addr_of_mut!(rckpt_patch) };
        p.relocatable = f.relocatable as u32;
        p.debug = f.debug;
        p.warn[..5].copy_from_slice(&f.warn);
        p.reserved = f.aggravate_bugs as u32;
        p.ghost_limit = f.ghost_limit.unwrap_or(flags::DEFAULT_GHOST_LIMIT);
    }
    if f.cmd_fd.is_some() || f.cmd_file.is_some() {
        // SAFETY: envp comes from the C runtime.
        unsafe { cmd::before_main(&f, envp) };
    }
    if f.restart {
        // SAFETY: argv/envp come from the C runtime.
        unsafe { exec_loader(Source::Image(f.file.unwrap_or_default()), &f, envp) };
    }
    // Compact argv: keep argv[0] and every argument that is not a flag.
    let mut k = 1;
    for i in 0..n {
        let gone = i < removed.len() * 64 && removed[i / 64] & (1 << (i % 64)) != 0;
        if !gone {
            // SAFETY: k <= i + 1 < argc: moving entries down inside argv.
            unsafe { *argv.add(k) = *argv.add(i + 1) };
            k += 1;
        }
    }
    for j in k..=n {
        // SAFETY: j <= argc: argv[argc] is the terminating NULL slot.
        unsafe { *argv.add(j) = core::ptr::null_mut() };
    }
    // SAFETY: envp is the C runtime's NULL-terminated environment.
    unsafe { read_environment(envp) };
    install_handlers();
    // SAFETY: registering a plain function with libc before main.
    unsafe { atexit(reap_writer_at_exit) };
    if f.debug_wait {
        debug_wait();
    }
    // SAFETY: the program's own main with its (now flag-free) arguments.
    unsafe { __real_main(k as c_int, argv, envp) }
}

/// Settings from the environment: `RCKPT_MIGRATE_TIMEOUT` (seconds a
/// `migrate_to` may wait for its receiver).
///
/// # Safety
/// `envp` is a NULL-terminated array of NUL-terminated strings.
unsafe fn read_environment(envp: *mut *mut c_char) {
    let mut k = 0;
    loop {
        // SAFETY: inside the NULL-terminated array.
        let e = unsafe { *envp.add(k) };
        if e.is_null() {
            return;
        }
        // SAFETY: each entry is a NUL-terminated string.
        let v = unsafe { cstr(e) };
        if let Some(secs) = v.strip_prefix(b"RCKPT_MIGRATE_TIMEOUT=").and_then(rckpt_rt_core::procfs::dec) {
            rckpt_rt_core::migrate::TIMEOUT_SECS.store(secs.clamp(1, 86400) as usize, core::sync::atomic::Ordering::Relaxed);
        }
        k += 1;
    }
}

fn debug_wait() {
    // SAFETY: single-threaded; a debugger clears the flag from outside.
    unsafe { core::ptr::write_volatile(addr_of_mut!(rckpt_debug_wait), 1) };
    let pid = sys::getpid() as u64;
    Line::new()
        .t("rckpt: -_condor_debug_wait: waiting for a debugger: gdb -p ")
        .u(pid)
        .t(" -ex 'set language c' -ex 'set var *(int*)&rckpt_debug_wait = 0' -ex continue")
        .emit();
    // SAFETY: as above.
    while unsafe { core::ptr::read_volatile(addr_of!(rckpt_debug_wait)) } != 0 {
        sys::pause_briefly();
    }
}

fn install_handlers() {
    let sa = KSigaction {
        handler: on_checkpoint_signal as *const () as usize,
        flags: sys::SA_SIGINFO | sys::SA_RESTART | sys::SA_RESTORER,
        restorer: rckpt_arch::rckpt_sigreturn_restorer as *const () as usize,
        mask: sys::sigbit(SIGTSTP) | sys::sigbit(SIGUSR2),
    };
    for sig in [SIGTSTP, SIGUSR2] {
        // SAFETY: on_checkpoint_signal is a signal handler with the
        // SA_SIGINFO signature and the restorer performs rt_sigreturn.
        if let Err(e) = unsafe { sys::sigaction(sig, Some(&sa), None) } {
            die(Line::new().t("rckpt: cannot install the checkpoint handler: ").e(e), 2);
        }
    }
}

/// What the loader restores from.
pub(crate) enum Source<'a> {
    Image(&'a [u8]),
    /// `migrate_from FD`: an image streamed on this descriptor.
    Fd(i32),
}

/// `v` in decimal, NUL-terminated, in `buf`.
fn dec_z(v: u64, buf: &mut [u8; 24]) -> *const u8 {
    let mut p = CPath::new();
    let _ = p.push_dec(v);
    buf.fill(0);
    buf[..p.len()].copy_from_slice(p.as_bytes());
    buf.as_ptr()
}

/// Hand the image to the embedded loader (never returns), with the command
/// stream if there is one.
///
/// # Safety
/// `envp` is the process's NULL-terminated environment.
pub(crate) unsafe fn exec_loader(from: Source, f: &flags::Flags, envp: *mut *mut c_char) -> ! {
    // SAFETY: linker-provided bounds of the embedded loader.
    let blob = unsafe {
        let s = addr_of!(rckpt_loader_blob_start);
        let e = addr_of!(rckpt_loader_blob_end);
        core::slice::from_raw_parts(s, e as usize - s as usize)
    };
    let fail = |what: &str, e: sys::Errno| -> ! { die(Line::new().t("rckpt: cannot start the restart loader: ").t(what).t(": ").e(e), 1) };
    const MFD_CLOEXEC: u32 = 1;
    let fd = sys::memfd_create(b"rckpt-loader", MFD_CLOEXEC).unwrap_or_else(|e| fail("memfd_create", e));
    if let Err(e) = sys::write_all(fd, blob) {
        fail("writing the loader", e);
    }
    let mut image = CPath::from_bytes(match from {
        Source::Image(file) => file,
        Source::Fd(_) => b"",
    })
    .unwrap_or_else(|e| fail("image name", e));
    image.push(&[0]).unwrap_or_else(|e| fail("image name", e));
    let ckpt = &patch().ckpt_path;
    let mut argv: [*const u8; 28] = [core::ptr::null(); 28];
    let mut n = 0;
    let mut add = |p: *const u8| {
        argv[n] = p;
        n += 1;
    };
    add(c"rckpt-loader".as_ptr().cast());
    add(c"--from-program".as_ptr().cast());
    add(c"--ckpt".as_ptr().cast());
    add(ckpt.as_ptr());
    if f.relocatable {
        add(c"--relocatable".as_ptr().cast());
    }
    if f.debug > 0 {
        add(c"--debug".as_ptr().cast());
    }
    if f.aggravate_bugs {
        add(c"--aggravate-bugs".as_ptr().cast());
    }
    // Decimal, NUL-terminated: the loader parses it like the flag.
    let mut limit = [0u8; 24];
    if let Some(v) = f.ghost_limit {
        add(c"--ghost-limit".as_ptr().cast());
        add(dec_z(v, &mut limit));
    }
    // The stream survives the exec (a `-_condor_cmd_file` is opened
    // close-on-exec) and the restore.
    let mut cmd_fd = [0u8; 24];
    let stream = patch().cmd_fd;
    if stream >= 0 {
        let _ = sys::fcntl(stream, sys::F_SETFD, 0);
        add(c"--cmd-fd".as_ptr().cast());
        add(dec_z(stream as u64, &mut cmd_fd));
    }
    const KINDS: [&[u8]; 5] = [b"ALL\0", b"NOTICE\0", b"READWRITE\0", b"UNSUP\0", b"BADURL\0"];
    const MODES: [&[u8]; 3] = [b"OFF\0", b"ON\0", b"ONCE\0"];
    for (k, &m) in f.warn.iter().enumerate().skip(1) {
        if m != flags::MODE_ON {
            add(c"--warning".as_ptr().cast());
            add(KINDS[k].as_ptr());
            add(MODES[m as usize].as_ptr());
        }
    }
    let mut from_fd = [0u8; 24];
    match from {
        Source::Image(_) => {
            add(c"--".as_ptr().cast());
            add(image.as_bytes().as_ptr());
        }
        Source::Fd(n) => {
            let _ = sys::fcntl(n, sys::F_SETFD, 0);
            add(c"--fd".as_ptr().cast());
            add(dec_z(n as u64, &mut from_fd));
        }
    }
    // SAFETY: argv is NULL-terminated (28 slots, at most 25 used); envp is the
    // process environment.
    let e = unsafe { sys::fexecve(fd, argv.as_ptr(), envp as *const *const u8) };
    fail("execveat", e)
}

/// Wait for a background writer, so that two checkpoints never write the
/// same `.tmp` at once; also reaps one whose exit signal could not be
/// handled (the program blocked SIGUSR2). Its exit notification, if still
/// pending, is then stale: the handler ignores it (see
/// `on_checkpoint_signal`).
fn wait_writer() {
    // SAFETY: single-threaded; the handler masks both checkpoint signals.
    let w = unsafe { &mut *addr_of_mut!(WRITER) };
    if *w != 0 {
        let _ = sys::wait_clone(*w);
        *w = 0;
    }
}

/// At exit, reap a writer still running (nobody else would: it sends no
/// SIGCHLD, and orphans may never be reaped on some systems). The
/// checkpoint signals are blocked meanwhile: this is not the handler, and a
/// handler run (the writer's own exit signal, or a checkpoint) in the middle
/// of `wait_writer` would reap the writer under it, or start a new one that
/// `wait_writer` then forgets.
extern "C" fn reap_writer_at_exit() {
    let old = sys::sigprocmask(sys::SIG_BLOCK, Some(sys::sigbit(SIGTSTP) | sys::sigbit(SIGUSR2)));
    wait_writer();
    if let Ok(old) = old {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, Some(old));
    }
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> c_int;
}

/// SIGTSTP: checkpoint, then die by SIGUSR2. SIGUSR2: checkpoint, continue;
/// the image is written by a forked copy of the process, so the program
/// pauses only for the fork (copy-on-write keeps the snapshot consistent).
/// A failed checkpoint prints one line, keeps the previous image, and the
/// program keeps running (also after SIGTSTP: never exit without a good
/// checkpoint).
///
/// The writer is created with SIGUSR2 as its exit signal, so that it is
/// reaped as soon as it ends instead of staying a zombie until the next
/// checkpoint: a SIGUSR2 whose `si_code` is a child's (`CLD_*`, > 0) is its
/// exit notification, never a request (`kill`, `sigqueue`, `tgkill` give
/// `si_code` <= 0). A child with a non-SIGCHLD exit signal stays invisible
/// to the program's own `wait()`/`waitpid()`. The costs: a user's SIGUSR2
/// arriving while the writer's exit notification is pending (microseconds,
/// unless the program blocks SIGUSR2) is merged with it, as any standard
/// signal already pending is, and that checkpoint request is lost; and, like
/// the checkpoint signal itself, the notification interrupts a `nanosleep`,
/// `poll` or `pause` of the program (EINTR; SA_RESTART restarts the rest).
/// While the program blocks SIGUSR2 the ended writer waits, a zombie, for
/// the unblock, the next checkpoint or the exit (`wait_writer`).
///
/// Signal context: only rt-core, no libc, no allocation.
extern "C" fn on_checkpoint_signal(sig: c_int, info: *mut c_void, uc: *mut c_void) {
    if sig == SIGUSR2 {
        // SAFETY: SA_SIGINFO: the kernel passes its siginfo (128 bytes).
        let (code, from) = unsafe {
            let i = info as *const sys::SigInfo;
            (core::ptr::read(addr_of!((*i).code)), core::ptr::read(addr_of!((*i).pid)))
        };
        if code >= sys::CLD_EXITED {
            writer_ended(from);
            return;
        }
    }
    if api::defer(sig) {
        return; // inside _condor_ckpt_disable(): taken at the enable
    }
    wait_writer();
    let mut ctx =
        Ctx { sig, uc, pid: sys::getpid(), ppid: sys::getppid(), pending: sys::sigpending().unwrap_or(0), timers: Default::default() };
    // Timers too: a forked writer has none.
    for (which, t) in sys::ITIMERS.into_iter().zip(ctx.timers.iter_mut()) {
        if let Ok((value_us, interval_us)) = sys::getitimer(which) {
            *t = TimerDesc { value_us, interval_us };
        }
    }
    // With a command stream, SIGTSTP runs its next batch; only a stream
    // with nothing to say leaves the plain behaviour below.
    if sig == SIGTSTP && patch().cmd_fd >= 0 && !cmd::on_tstp(&ctx) {
        return;
    }
    // Refuse threads here, in the process itself: a forked writer would
    // see only one thread and write an image missing the others.
    if let Err(e) = writer::check_single_threaded() {
        report_failure(sig, ckpt_path(), e);
        return;
    }
    if sig == SIGUSR2 {
        match sys::fork_with_exit_signal(SIGUSR2) {
            Ok(0) => {
                let ok = write_checkpoint(&ctx);
                sys::exit_group(if ok { 0 } else { 1 });
            }
            Ok(child) => {
                if !api::wait_requested_writer(child) {
                    // SAFETY: single-threaded; see `wait_writer`.
                    unsafe { *addr_of_mut!(WRITER) = child };
                }
                return;
            }
            Err(_) => {} // no memory for a copy: write in place
        }
    }
    let written = write_checkpoint(&ctx);
    api::record(sig, written);
    if written && sig == SIGTSTP {
        exit_by_sigusr2();
    }
}

/// The exit notification of child `pid`: reap it if it is the writer.
/// Another pid is a writer `wait_writer` already reaped (its notification
/// came in while the handler had SIGUSR2 blocked), or a child of the
/// program's own with SIGUSR2 as exit signal: not ours to reap either way.
fn writer_ended(pid: i32) {
    // SAFETY: single-threaded; the handler masks both checkpoint signals.
    let w = unsafe { &mut *addr_of_mut!(WRITER) };
    if *w != 0 && *w == pid {
        let _ = sys::wait_clone(pid);
        *w = 0;
    }
}

/// The checkpoint file's name (without its NUL).
pub(crate) fn ckpt_path() -> &'static [u8] {
    let p = &patch().ckpt_path;
    &p[..p.iter().position(|&c| c == 0).unwrap_or(0)]
}

/// What a checkpoint needs of the interrupted program, read as the handler
/// starts.
pub(crate) struct Ctx {
    pub sig: c_int,
    pub uc: *mut c_void,
    pub pid: i32,
    pub ppid: i32,
    pub pending: u64,
    pub timers: [TimerDesc; 3],
}

/// Write the image to the checkpoint file; print the outcome. True on
/// success.
fn write_checkpoint(ctx: &Ctx) -> bool {
    let Ok(path) = CPath::from_bytes(ckpt_path()) else {
        return false;
    };
    match write_checkpoint_to(ctx, &path) {
        Ok(()) => true,
        Err(e) => {
            report_failure(ctx.sig, path.as_bytes(), e);
            false
        }
    }
}

/// The writer's request for a checkpoint of this process to `path`.
pub(crate) fn request<'a>(ctx: &Ctx, path: &'a CPath) -> writer::Request<'a> {
    let p = patch();
    let (rseq_addr, rseq_len) = {
        // SAFETY: glibc defines both; reading two integers.
        let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
        if size == 0 {
            (0, 0)
        } else {
            (rckpt_arch::thread_pointer().wrapping_add(off as usize), rckpt_arch::RSEQ_LEN)
        }
    };
    writer::Request {
        uc: ctx.uc as *const u8,
        signal: ctx.sig,
        path,
        patch_addr: addr_of!(rckpt_patch) as usize,
        tail_addr: rckpt_arch::rckpt_restore_tail as *const () as usize,
        rseq_addr,
        rseq_len,
        generation: p.generation,
        pid: ctx.pid,
        ppid: ctx.ppid,
        pending: ctx.pending,
        timers: ctx.timers,
        ghost_limit: p.ghost_limit,
        cmd_fd: p.cmd_fd,
    }
}

/// Write a checkpoint to `path` (a debug line on success).
// A `Failure` carries a path (no allocator to box it), as in `writer`.
#[allow(clippy::result_large_err)]
pub(crate) fn write_checkpoint_to(ctx: &Ctx, path: &CPath) -> Result<(), writer::Failure> {
    match writer::checkpoint(&request(ctx, path)) {
        Ok(st) => {
            if patch().debug > 0 {
                let mut l = Line::new();
                l.t("rckpt: D_CKPT: wrote ")
                    .s(path.as_bytes())
                    .t(": ")
                    .u(st.segments as u64)
                    .t(" segments, ")
                    .u(st.stored >> 10)
                    .t(" KiB stored, ");
                if st.ghosts > 0 {
                    l.u(st.ghosts as u64).t(" deleted files (").u(st.ghost_bytes >> 10).t(" KiB of it), ");
                }
                l.u(st.ns / 1_000_000).t(" ms (fsync ").u(st.sync_ns / 1_000_000).t(" ms of it)").emit();
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// One line: what failed, the previous image is kept, the program runs on.
pub(crate) fn report_failure(sig: c_int, path: &[u8], e: writer::Failure) {
    let mut l = Line::new();
    l.t("rckpt: checkpoint to ").s(path).t(" failed: ");
    e.describe(&mut l);
    l.t("; the previous checkpoint is kept");
    if sig == SIGTSTP {
        l.t(", the program keeps running");
    }
    l.emit();
}

/// The seed's success signal: the process dies by SIGUSR2.
pub(crate) fn exit_by_sigusr2() -> ! {
    let dfl = KSigaction::default();
    // SAFETY: SIG_DFL is always valid.
    let _ = unsafe { sys::sigaction(SIGUSR2, Some(&dfl), None) };
    let _ = sys::sigprocmask(sys::SIG_UNBLOCK, Some(sys::sigbit(SIGUSR2)));
    let _ = sys::tgkill(sys::getpid(), sys::gettid(), SIGUSR2);
    sys::exit_group(128 + SIGUSR2)
}

fn refuse_reserved(sig: c_int, what: &str) {
    let mut l = Line::new();
    l.t("rckpt: notice: ")
        .t(what)
        .t("(")
        .t(if sig == SIGTSTP { "SIGTSTP" } else { "SIGUSR2" })
        .t(") refused: SIGTSTP and SIGUSR2 are reserved for checkpointing");
    warn(WARN_NOTICE, &mut l);
    // SAFETY: errno of the calling thread.
    unsafe { *__errno_location() = 22 }; // EINVAL
}

/// `sigaction`, except that SIGTSTP and SIGUSR2 stay the checkpointer's.
///
/// # Safety
/// As `sigaction(2)`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_sigaction(sig: c_int, act: *const c_void, old: *mut c_void) -> c_int {
    if (sig == SIGTSTP || sig == SIGUSR2) && !act.is_null() {
        refuse_reserved(sig, "sigaction");
        return -1;
    }
    // SAFETY: forwarded to libc with the caller's arguments.
    unsafe { __real_sigaction(sig, act, old) }
}

/// `signal`, except that SIGTSTP and SIGUSR2 stay the checkpointer's.
///
/// # Safety
/// As `signal(2)`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_signal(sig: c_int, handler: usize) -> usize {
    if sig == SIGTSTP || sig == SIGUSR2 {
        refuse_reserved(sig, "signal");
        return usize::MAX; // SIG_ERR
    }
    // SAFETY: forwarded to libc with the caller's arguments.
    unsafe { __real_signal(sig, handler) }
}

/// Referenced from libcore's unwind tables (libcore is built for
/// panic=unwind); never called: the runtime aborts on panic.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    Line::new().t("rckpt: internal error in the checkpoint runtime").emit();
    sys::exit_group(134)
}
