//! Core checkpoint/restart round trips, one function per scenario taking
//! the architecture (see `arch_tests!` at the bottom).
//!
//! Every scenario compiles a fixture with `rckpt compile`, runs it as a
//! real process, checkpoints it with SIGTSTP (the process must die by
//! SIGUSR2) or SIGUSR2 (it must keep running), restarts the image, and
//! compares what the programs print with what an uninterrupted run prints.

#[macro_use]
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SIGTSTP, then `./prog -_condor_restart FILE`.
fn counter_tstp_program(arch: Arch) {
    let t = T::new("tstp-program", arch);
    let (prog, want) = counter(&t, &[]);
    counter_roundtrip(&t, &prog, &want, "c", plain, plain, Via::Program);
}

/// SIGTSTP, then `rckpt-loader FILE`.
fn counter_tstp_loader(arch: Arch) {
    let t = T::new("tstp-loader", arch);
    let (prog, want) = counter(&t, &[]);
    counter_roundtrip(&t, &prog, &want, "c", plain, plain, Via::Loader);
}

/// SIGUSR2: the program writes a checkpoint, keeps running and finishes
/// normally; restarting that image later replays from the checkpoint.
fn usr2_continue_then_replay(arch: Arch) {
    let t = T::new("usr2", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("c.ckpt");
    let gate = t.p("gate");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.signal(SIGUSR2);
    wait_file(&mut p, &img);
    t.touch(&gate);
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "output of the run that was checkpointed with SIGUSR2");
    assert_eq!(p.stderr(), "", "{}", p.describe());

    let mut outs = vec![];
    for (i, via) in [Via::Program, Via::Loader].into_iter().enumerate() {
        let mut r = t.spawn(&format!("replay{i}"), &t.restart_argv(&prog, &img, via, false));
        r.expect_exit(0);
        let o = r.stdout();
        assert!(!o.is_empty() && o.len() < want.len(), "replay printed nothing or everything:\n{}", r.describe());
        assert!(want.ends_with(&o), "replay output is not the rest of the uninterrupted output:\n{}", r.describe());
        assert!(!o.contains("ready"), "main ran again:\n{}", r.describe());
        assert!(o.ends_with(&format!("{}\n", want.lines().last().unwrap())), "{}", r.describe());
        assert_eq!(r.stderr(), "", "{}", r.describe());
        outs.push(o);
    }
    assert_eq!(outs[0], outs[1], "two restarts of the same image printed different things");
}

/// A SIGUSR2 writer is reaped when it ends, not at the next checkpoint: no
/// zombie child is left once the image is there. A second SIGUSR2 checkpoints
/// again. A SIGUSR2 sent while a writer still runs (one held in `open` of
/// the `.tmp`, made a FIFO) is not lost: that writer fails (a FIFO cannot be
/// fsynced), and the request gives a new image. The program finishes with
/// its uninterrupted output.
fn usr2_writer_reaped(arch: Arch) {
    let t = T::new("usr2reap", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("c.ckpt");
    let gate = t.p("gate");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.signal(SIGUSR2);
    wait_file(&mut p, &img);
    wait_writer_reaped(&p, "after the first SIGUSR2 checkpoint");

    let first = ino(&img);
    p.signal(SIGUSR2);
    wait_replaced(&mut p, &img, first);
    wait_writer_reaped(&p, "after the second SIGUSR2 checkpoint");
    assert_eq!(p.stderr(), "", "{}", p.describe());

    // A writer that cannot finish until this test opens the FIFO's read end.
    let tmp = t.p("c.ckpt.tmp");
    let c = std::ffi::CString::new(s(&tmp)).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let second = ino(&img);
    p.signal(SIGUSR2);
    let pid = p.pid;
    p.wait_until("the writer held by the FIFO", move |_, _| !children_of(pid).is_empty());
    p.signal(SIGUSR2);
    // Let the held writer stream its image into the FIFO (a FIFO takes a
    // stream like any descriptor); it then fails at fsync, which a FIFO
    // does not support.
    let fifo = tmp.clone();
    let drain = std::thread::spawn(move || {
        use std::io::Read;
        let mut v = Vec::new();
        std::fs::File::open(&fifo).and_then(|mut f| f.read_to_end(&mut v)).map(|_| v.len())
    });
    wait_replaced(&mut p, &img, second);
    wait_writer_reaped(&p, "after the SIGUSR2 sent while a writer ran");
    assert!(drain.join().unwrap().unwrap() > 0, "the held writer sent nothing");
    let err = p.stderr();
    let failed = format!("rckpt: checkpoint to {} failed: ", img.display());
    assert!(
        err.lines().count() == 1 && err.starts_with(&failed) && err.ends_with("; the previous checkpoint is kept\n"),
        "expected one failure line from the writer held by the FIFO:\n{}",
        p.describe()
    );
    assert!(!tmp.exists(), "{} left behind", tmp.display());

    t.touch(&gate);
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "output of the run checkpointed three times with SIGUSR2");
}

const MEMORY_AFTER: &str = "heap OK\nlist OK\nstack OK\nbss OK\ndata OK\nrodata OK\nanon OK\nreadonly OK\n\
readonly prot OK\nshared OK\nshared after fork OK\nmalloc after restart OK\nsmall mallocs after restart OK\ndone\n";

fn memory_roundtrip(t: &T, extra: &[&str], via: Via) {
    let prog = t.compile("memory", &["memory.c"], extra);
    fixture_roundtrip(t, &prog, "filled\nready\n", MEMORY_AFTER, &[via]);
}

/// Heap, stack, bss, data, private/read-only/shared anonymous mappings.
fn memory(arch: Arch) {
    let t = T::new("memory", arch);
    memory_roundtrip(&t, &[], Via::Program);
}

const WINDOW_AFTER: &str = "loader window OK\ncrowded chunks OK\nmalloc after restart OK\ndone\n";

/// A mapping over the loader's own link address (restored by the restore
/// tail after the loader is gone) and, for 32-bit programs, about 3 GiB of
/// the 4 GiB address space in use up to its top; both restart paths.
fn loader_window(arch: Arch) {
    let t = T::new("window", arch);
    let prog = t.compile("window", &["window.c"], &[]);
    fixture_roundtrip(&t, &prog, "crowded\nready\n", WINDOW_AFTER, &[Via::Loader, Via::Program]);
}

const TIMERS_AFTER: &str = "real timer armed OK\nvirtual timer armed OK\nSIGALRM delivered once\ndone\n";

/// Interval timers (setitimer, alarm) keep the time they had left and fire
/// after the restart.
fn interval_timers(arch: Arch) {
    let t = T::new("timers", arch);
    let prog = t.compile("timers", &["timers.c"], &[]);
    fixture_roundtrip(&t, &prog, "ready\n", TIMERS_AFTER, &[Via::Loader]);
}

/// The image is self-contained: the restart works with the program and a
/// shared library it uses deleted.
fn program_and_library_gone(arch: Arch) {
    let t = T::new("gone", arch);
    let mut cc = Command::new("cc");
    cc.args(arch.cflags()).args(["-O2", "-shared", "-fPIC", "-o"]).arg(t.p("libstep.so")).arg(fixtures_dir().join("libstep.c"));
    let o = cc.current_dir(&t.dir).output().unwrap();
    assert!(o.status.success(), "building libstep.so: {}", String::from_utf8_lossy(&o.stderr));
    let rpath = format!("-Wl,-rpath,{}", t.dir.display());
    let prog = t.compile("uselib", &["uselib.c"], &["-L.", "-lstep", &rpath]);
    let img = t.p("u.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    assert_eq!(p.stdout(), "before: 4\nready\n", "{}", p.describe());
    std::fs::remove_file(&prog).unwrap();
    std::fs::remove_file(t.p("libstep.so")).unwrap();
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(0);
    // lib_step(4) on its second call: 4 * 3 + 2.
    assert_text(&r.stdout(), "restarted\nafter: 14\ndone\n", "restart with the program and its library deleted");
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

/// A MAP_SHARED mapping of a file is mapped again on restart, so writes
/// after the restart reach the file; without the file the image is refused.
fn shared_file_mapping(arch: Arch) {
    let t = T::new("shfile", arch);
    let prog = t.compile("sharedfile", &["sharedfile.c"], &[]);
    let img = t.p("sh.ckpt");
    let dat = t.p("out.dat");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), s(&dat)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    assert_eq!(std::fs::read(&dat).unwrap()[0], b'A', "the write before the checkpoint is in the file");
    for (i, via) in [Via::Loader, Via::Program].into_iter().enumerate() {
        std::fs::write(&dat, vec![b'x'; 4096]).unwrap();
        let mut r = t.spawn(&format!("restart{i}"), &t.restart_argv(&prog, &img, via, false));
        r.expect_exit(0);
        assert_text(&r.stdout(), "restarted\nfile mapping holds B, anonymous one a\n", "after the restart");
        assert_eq!(r.stderr(), "", "{}", r.describe());
        assert_eq!(std::fs::read(&dat).unwrap()[0], b'B', "{via:?}: the write after the restart did not reach the file");
    }
    std::fs::remove_file(&dat).unwrap();
    let mut r = t.spawn("missing", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(1);
    let err = r.stderr();
    let want = format!("rckpt-loader: {}: cannot map {} again (shared at 0x", img.display(), dat.display());
    assert!(
        err.starts_with(&want) && err.ends_with("): No such file or directory\n") && err.lines().count() == 1,
        "expected one line {want:?}...: No such file or directory:\n{err}"
    );
    assert_eq!(r.stdout(), "");
}

/// Vector and x87 registers and MXCSR/x87 control live across the
/// checkpoint (it lands in an assembly loop).
fn registers(arch: Arch) {
    let t = T::new("regs", arch);
    let prog = t.compile("regs", &["regs.c"], &["-lm"]);
    let vec = match arch {
        Arch::X86_64 if cpu_has("avx") => "ymm0-15",
        Arch::X86_64 => "xmm0-15",
        Arch::I386 => "xmm0-7",
    };
    let after =
        format!("vector {vec} OK\nx87 st0/st1 OK\nfegetround FE_UPWARD OK\nmxcsr OK\nx87 control word OK\n1/3 rounds up OK\ndone\n");
    let head = format!("vector registers: {}\nready\n", &vec[..3]);

    let mut c = t.spawn("control", &[s(&prog)]);
    c.wait_ready();
    c.signal(SIGWINCH);
    c.expect_exit(0);
    assert_text(&c.stdout(), &format!("{head}go\n{after}"), "register fixture without checkpoint");

    for (i, via) in [Via::Loader, Via::Program].into_iter().enumerate() {
        let img = t.p(&format!("r{i}.ckpt"));
        let mut p = t.spawn(&format!("orig{i}"), &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
        p.wait_ready();
        p.checkpoint_and_stop();
        assert_eq!(p.stdout(), head);
        let mut r = t.spawn(&format!("restart{i}"), &t.restart_argv(&prog, &img, via, false));
        r.expect_exit(0);
        assert_text(&r.stdout(), &format!("restarted\n{after}"), "registers after the restart");
    }
}

const STATE_BEFORE: &str = "before: signal(SIGUSR2) -> SIG_ERR errno EINVAL
before: signal(SIGTSTP) -> SIG_ERR errno EINVAL
before: sigaction(SIGTSTP) -> -1 errno EINVAL
before: sigaction(SIGUSR2) -> -1 errno EINVAL
before: query sigaction(SIGUSR2) -> 0
before: SIGHUP pending yes, hup handler ran 0 times
ready
";

const STATE_AFTER: &str = "errno ERANGE OK
tls OK
pipe fds after restart: closed OK
SIGHUP still pending yes, hup handler ran 0 times
usr1 handler ran
usr1 count 1
hup handler ran
hup count after unblock 1
after: signal(SIGUSR2) -> SIG_ERR errno EINVAL
after: signal(SIGTSTP) -> SIG_ERR errno EINVAL
after: sigaction(SIGTSTP) -> -1 errno EINVAL
after: sigaction(SIGUSR2) -> -1 errno EINVAL
after: query sigaction(SIGUSR2) -> 0
done
";

/// __thread variables, errno, the program's own handlers, a blocked signal
/// pending at the checkpoint, the reserved signals refused (and the
/// checkpoint still working), pipes at fds >= 3 closed with a warning.
fn thread_locals_errno_signals(arch: Arch) {
    let t = T::new("state", arch);
    let prog = t.compile("state", &["state.c"], &[]);
    let mut c = t.spawn("control", &[s(&prog)]);
    c.wait_ready();
    c.signal(SIGWINCH);
    c.expect_exit(0);
    assert_text(&c.stdout(), &format!("{STATE_BEFORE}go\n{STATE_AFTER}"), "state fixture without checkpoint");
    let notice = "rckpt: notice: signal(SIGUSR2) refused: SIGTSTP and SIGUSR2 are reserved for checkpointing";
    assert!(c.stderr().contains(notice), "no notice for signal(SIGUSR2):\n{}", c.describe());

    let img = t.p("s.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    assert_text(&p.stdout(), STATE_BEFORE, "state fixture before the checkpoint");
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_text(&r.stdout(), &format!("restarted\n{STATE_AFTER}"), "state after the restart");
    let err = r.stderr();
    for fd in [40, 41] {
        let w = format!("rckpt: warning: fd {fd} (pipe:[");
        assert!(
            err.lines().any(|l| l.starts_with(&w) && l.ends_with("]) cannot be restored (not a file); it stays closed")),
            "no warning about the pipe at fd {fd}:\n{}",
            r.describe()
        );
    }
}

fn write_inputs(dir: &Path, n: usize) {
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..n + 10 {
        a.push_str(&format!("in {i:05}\n"));
        b.push_str(&format!("line {i:05} of in2\n"));
    }
    std::fs::write(dir.join("in.dat"), a).unwrap();
    std::fs::write(dir.join("in2.dat"), b).unwrap();
    std::fs::write(dir.join("app.dat"), "header\n").unwrap();
}

const FILES_N: usize = 3000;

fn expected_files(n: usize) -> [(&'static str, String); 3] {
    let mut raw = String::new();
    let mut buf = String::new();
    let mut app = String::from("header\n");
    for i in 0..n {
        raw.push_str(&format!("raw {i:05}\n"));
        buf.push_str(&format!("buf {i:05}\n"));
        app.push_str(&format!("app {i:05}\n"));
    }
    [("raw.dat", raw), ("buf.dat", buf), ("app.dat", app)]
}

fn expected_files_stdout(n: usize) -> String {
    let mut o = String::new();
    for i in 0..n {
        o.push_str(&format!("{i} read [in {i:05}] fgets [line {i:05} of in2]\n"));
        if i == 0 {
            o.push_str("ready\n");
        }
    }
    o.push_str("done\n");
    o
}

fn check_files(dir: &Path, n: usize, what: &str) {
    for (name, want) in expected_files(n) {
        let got = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        assert_text(&got, &want, &format!("{what}: contents of {name}"));
    }
}

/// Files at fds >= 3: written ones keep their offsets (no gap, no
/// overwrite), read ones continue where they were, O_APPEND keeps
/// appending, stdio buffers carry over.
fn open_files(arch: Arch) {
    let t = T::new("files", arch);
    let prog = t.compile("files", &["files.c"], &[]);
    let n = FILES_N.to_string();
    let control = t.mkdir("control");
    write_inputs(&control, FILES_N);
    t.touch(control.join("gate"));
    let mut c = t.spawn_in("control", &[s(&prog), n.clone(), "gate".into()], &control);
    c.expect_exit(0);
    assert_text(&c.stdout(), &expected_files_stdout(FILES_N), "files fixture without checkpoint");
    check_files(&control, FILES_N, "without checkpoint");

    for (i, via) in [Via::Loader, Via::Program].into_iter().enumerate() {
        let d = t.mkdir(&format!("run{i}"));
        write_inputs(&d, FILES_N);
        let mut p = t.spawn_in(&format!("orig{i}"), &[s(&prog), "-_condor_ckpt".into(), "f.ckpt".into(), n.clone(), "gate".into()], &d);
        p.wait_ready();
        p.checkpoint_and_stop();
        let img = d.join("f.ckpt");
        assert!(img.exists(), "relative -_condor_ckpt f.ckpt must land in the working directory");
        t.touch(d.join("gate"));
        let mut r = t.spawn_in(&format!("restart{i}"), &t.restart_argv(&prog, &img, via, false), &d);
        r.expect_exit(0);
        assert_text(&format!("{}{}", p.stdout(), r.stdout()), &expected_files_stdout(FILES_N), "files: original + restarted output");
        check_files(&d, FILES_N, "after restart");
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

/// Run the files fixture in `A`, SIGTSTP it, rename `A` to `B` (image and
/// files move along). Returns (program, original run, A, B, image).
fn moved_checkpoint(t: &T) -> (PathBuf, Proc, PathBuf, PathBuf, PathBuf) {
    let prog = t.compile("files", &["files.c"], &[]);
    let a = t.mkdir("A");
    write_inputs(&a, FILES_N);
    let mut p = t.spawn_in("orig", &[s(&prog), "-_condor_ckpt".into(), "f.ckpt".into(), FILES_N.to_string(), "gate".into()], &a);
    p.wait_ready();
    p.checkpoint_and_stop();
    let b = t.p("B");
    std::fs::rename(&a, &b).unwrap();
    t.touch(b.join("gate"));
    let img = b.join("f.ckpt");
    (prog, p, a, b, img)
}

/// The working directory moved away: a plain restart refuses with the cwd
/// message (naming the old directory), exit status 1, and changes nothing.
fn moved_cwd_refused(arch: Arch) {
    let t = T::new("cwd-gone", arch);
    let (prog, _p, a, b, img) = moved_checkpoint(&t);
    let snapshot: Vec<(String, Vec<u8>)> =
        ["raw.dat", "buf.dat", "app.dat"].iter().map(|f| (f.to_string(), std::fs::read(b.join(f)).unwrap())).collect();
    for (i, via) in [Via::Program, Via::Loader].into_iter().enumerate() {
        let mut r = t.spawn_in(&format!("plain{i}"), &t.restart_argv(&prog, &img, via, false), &b);
        r.expect_exit(1);
        assert_eq!(r.stdout(), "", "a refused restart ran the program:\n{}", r.describe());
        for (f, bytes) in &snapshot {
            assert!(std::fs::read(b.join(f)).unwrap() == *bytes, "{f} changed by a refused restart");
        }
        assert!(!a.exists(), "a refused restart recreated {}", a.display());
        let want = format!(
            "rckpt-loader: {}: the checkpointed working directory {} is not usable (No such file or directory); \
             restart with -_condor_relocatable (rckpt-loader --relocatable) to stay here\n",
            img.display(),
            a.display()
        );
        assert_text(&r.stderr(), &want, "refused restart's message");
    }
}

/// The working directory moved away: a relocatable restart stays in the
/// new directory and continues the open files there.
fn moved_cwd_relocatable(arch: Arch) {
    let t = T::new("reloc", arch);
    let (prog, p, a, b, img) = moved_checkpoint(&t);
    for (i, via) in [Via::Program, Via::Loader].into_iter().enumerate() {
        // Each restart from a fresh copy of the moved directory.
        let d = t.p(&format!("B{i}"));
        std::fs::create_dir(&d).unwrap();
        for e in std::fs::read_dir(&b).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        let img_i = d.join(img.file_name().unwrap());
        let mut r = t.spawn_in(&format!("reloc{i}"), &t.restart_argv(&prog, &img_i, via, true), &d);
        r.expect_exit(0);
        assert_text(&format!("{}{}", p.stdout(), r.stdout()), &expected_files_stdout(FILES_N), "relocated: original + restarted output");
        check_files(&d, FILES_N, "relocated restart");
        assert!(!a.exists(), "the relocatable restart wrote under the old directory {}", a.display());
    }
}

/// The original run and the restart both without address randomization
/// (`setarch ARCH -R`).
fn no_aslr_both(arch: Arch) {
    if !require_setarch(arch) {
        return;
    }
    let t = T::new("noaslr", arch);
    let (prog, want) = counter(&t, &[]);
    counter_roundtrip(&t, &prog, &want, "rr-program", no_aslr, no_aslr, Via::Program);
    counter_roundtrip(&t, &prog, &want, "rr-loader", no_aslr, no_aslr, Via::Loader);
}

/// Randomization on for one of the two runs and off for the other.
fn aslr_mixed(arch: Arch) {
    if !require_setarch(arch) {
        return;
    }
    let t = T::new("aslrmix", arch);
    let (prog, want) = counter(&t, &[]);
    counter_roundtrip(&t, &prog, &want, "norand-then-rand", no_aslr, plain, Via::Program);
    counter_roundtrip(&t, &prog, &want, "rand-then-norand", plain, no_aslr, Via::Loader);
}

/// A statically linked program (`-static`).
fn static_program(arch: Arch) {
    let t = T::new("static", arch);
    let (prog, want) = counter(&t, &["-static"]);
    let file = std::process::Command::new("file").arg(&prog).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if let Ok(f) = file {
        assert!(f.contains("statically linked") || f.contains("static-pie"), "not a static program: {f}");
    }
    counter_roundtrip(&t, &prog, &want, "static-program", plain, plain, Via::Program);
    counter_roundtrip(&t, &prog, &want, "static-loader", plain, plain, Via::Loader);
    let t2 = T::new("static-memory", arch);
    memory_roundtrip(&t2, &["-static"], Via::Loader);
}

/// 20 checkpoint/restart cycles, alternating the two ways of restarting,
/// give the uninterrupted output; each image records its generation.
fn twenty_cycles(arch: Arch) {
    let t = T::new("cycles", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("c.ckpt");
    let gate = t.p("gate");
    let mut p = t.spawn("run0", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let mut all = p.stdout();
    assert_eq!(image::header(&std::fs::read(&img).unwrap()).generation, 0);
    for cycle in 1..=20u32 {
        let via = if cycle % 2 == 0 { Via::Loader } else { Via::Program };
        let mut r = t.spawn(&format!("run{cycle}"), &t.restart_argv(&prog, &img, via, false));
        r.wait_lines(1);
        r.checkpoint_and_stop();
        let o = r.stdout();
        assert!(!o.contains("done"), "the counter finished during cycle {cycle}");
        all.push_str(&o);
        assert!(want.starts_with(&all), "cycle {cycle}: output so far is not a prefix of the uninterrupted output:\n{}", r.describe());
        let h = image::header(&std::fs::read(&img).unwrap());
        assert_eq!(h.generation, cycle, "image written in cycle {cycle} records generation {}", h.generation);
    }
    t.touch(&gate);
    let mut r = t.spawn("last", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    all.push_str(&r.stdout());
    assert_text(&all, &want, "20 cycles: concatenated output");
}

/// The same round trip as an unprivileged user (uid/gid 65534 via
/// setpriv when the tests run as root).
fn unprivileged_user(arch: Arch) {
    if is_root() && !require_tool("setpriv") {
        return;
    }
    let t = T::new("nobody", arch);
    let (prog, want) = counter(&t, &[]);
    t.open_up();
    counter_roundtrip(&t, &prog, &want, "nobody-program", nobody, nobody, Via::Program);
    counter_roundtrip(&t, &prog, &want, "nobody-loader", nobody, nobody, Via::Loader);
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let uid = t.p("nobody-program.ckpt").metadata().unwrap().uid();
        assert_eq!(uid, 65534, "the image was not written by the unprivileged user");
    }
}

arch_tests!(
    counter_tstp_program,
    counter_tstp_loader,
    usr2_continue_then_replay,
    usr2_writer_reaped,
    memory,
    registers,
    loader_window,
    interval_timers,
    program_and_library_gone,
    shared_file_mapping,
    thread_locals_errno_signals,
    open_files,
    moved_cwd_refused,
    moved_cwd_relocatable,
    no_aslr_both,
    aslr_mixed,
    static_program,
    twenty_cycles,
    unprivileged_user,
);

/// 8 GiB reserved, 16 MiB touched: the image stays sparse and the touched
/// data comes back (64-bit only).
#[test]
fn sparse_memory() {
    use std::os::unix::fs::MetadataExt;
    let t = T::new("sparse", Arch::X86_64);
    let prog = t.compile("sparse", &["sparse.c"], &[]);
    let img = t.p("s.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let m = img.metadata().unwrap();
    let alloc = m.blocks() * 512;
    assert!(
        (16 << 20..=40 << 20).contains(&alloc),
        "image allocates {} bytes on disk (apparent size {}); expected 16..40 MiB",
        alloc,
        m.len()
    );
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(0);
    assert_text(
        &r.stdout(),
        "restarted\nfirst part OK\nsecond part OK\nuntouched pages zero OK\nnew page OK\ndone\n",
        "sparse memory after restart",
    );
}
