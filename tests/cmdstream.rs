//! The command stream (`-_condor_cmd_fd`, `-_condor_cmd_file`): a test
//! starter drives relinked jobs through a pipe at fd 3 or a command file.
//! Setup before `end` (iwd, fd redirections, ckpt, restart), SIGTSTP
//! batches (interim checkpoints, ckpt + exit, the plain behaviour at the
//! end of the stream), and every error with its exact message, checking
//! that nothing was lost.

#[macro_use]
mod common;

use common::*;
use std::fs::File;
use std::io::Read;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// A pipe, both ends close-on-exec (the write end must not leak into the
/// job, or it would never see the end of the stream).
fn pipe() -> (OwnedFd, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0, "pipe2: {}", std::io::Error::last_os_error());
        (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
    }
}

/// `at_fd3(c, fd)`: the child gets `fd` at descriptor 3 (not close-on-exec),
/// and umask `mask`.
fn child_setup(c: &mut Command, fd: i32, mask: u32) {
    // SAFETY: dup2, fcntl and umask are async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            if fd >= 0 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd >= 0 && libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::umask(mask as libc::mode_t);
            Ok(())
        });
    }
}

/// Start `prog -_condor_cmd_fd 3 ARGS` with a new pipe's read end at fd 3;
/// `setup` is in it already (a job that refuses its flags exits without
/// reading). Returns the job and the write end.
fn spawn_piped(t: &T, label: &str, prog: &Path, args: &[String], setup: &str) -> (Proc, File) {
    let (r, mut w) = pipe();
    w.write_all(setup.as_bytes()).unwrap();
    let mut argv = vec![s(prog), "-_condor_cmd_fd".into(), "3".into()];
    argv.extend(args.iter().cloned());
    let rfd = r.as_raw_fd();
    let p = t.spawn_with(label, &argv, &t.dir, |c| child_setup(c, rfd, 0o022));
    drop(r);
    (p, w)
}

/// The counter's arguments: N lines, a gate file.
fn counter_args(t: &T, gate: &str) -> Vec<String> {
    vec![N.into(), t.ps(gate)]
}

/// The counter's output after a restart: a suffix of the uninterrupted
/// output, starting at a line, without main's "ready", finished.
#[track_caller]
fn assert_resumed(after: &str, want: &str, what: &str) {
    assert!(!after.is_empty() && want.ends_with(after), "{what}: not a suffix of the uninterrupted output:\n{}", tail(after, 1500));
    let start = want.len() - after.len();
    assert!(start > 0 && want.as_bytes()[start - 1] == b'\n', "{what}: does not start at a line");
    assert!(!after.contains("ready"), "{what}: main ran again");
    assert!(after.lines().last().unwrap().starts_with("done "), "{what}: did not finish");
}

// ---------------------------------------------------------------------------
// Setup before `end`

/// iwd + fd 0/1/2 + ckpt + end: the program runs in the iwd with those
/// files, created 0666 less the umask; through a pipe and through a file.
fn setup_redirects(arch: Arch) {
    let t = T::new("cmdsetup", arch);
    let prog = t.compile("stdio", &["stdio.c"], &[]);
    for (k, via_file) in [false, true].into_iter().enumerate() {
        let job = t.mkdir(&format!("job{k}"));
        std::fs::write(job.join("in.txt"), "hello from stdin\n").unwrap();
        // A previous stdout is truncated.
        std::fs::write(job.join("out.txt"), "old contents, longer than the new ones\n".repeat(10)).unwrap();
        let cmds = format!(
            "iwd {}\n\n  fd 0 in.txt O_RDONLY\nfd 1 out.txt\tO_WRONLY|O_CREAT|O_TRUNC\nfd 2 err.txt 0x241\nckpt job.ckpt\nend\n",
            job.display()
        );
        let mut p = if via_file {
            let f = t.p("cmds.txt");
            std::fs::write(&f, &cmds).unwrap();
            let argv = vec![s(&prog), "-_condor_cmd_file".into(), s(&f)];
            let mut p = t.spawn_with(&format!("file{k}"), &argv, &t.dir, |c| child_setup(c, -1, 0o027));
            p.expect_exit(0);
            p
        } else {
            let (r, mut w) = pipe();
            w.write_all(cmds.as_bytes()).unwrap();
            let rfd = r.as_raw_fd();
            let argv = vec![s(&prog), "-_condor_cmd_fd".into(), "3".into()];
            let mut p = t.spawn_with(&format!("pipe{k}"), &argv, &t.dir, |c| child_setup(c, rfd, 0o027));
            drop(r);
            p.expect_exit(0);
            p
        };
        assert_eq!((p.stdout(), p.stderr()), (String::new(), String::new()), "{}", p.describe());
        assert_text(&std::fs::read_to_string(job.join("out.txt")).unwrap(), &format!("hello from stdin\ncwd job{k}\n"), "stdout file");
        assert_text(&std::fs::read_to_string(job.join("err.txt")).unwrap(), "to stderr\n", "stderr file");
        // out.txt existed (truncated, its mode kept); err.txt is new.
        let mode = job.join("err.txt").metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "err.txt: created 0666 & ~umask (027)");
        p.wait();
    }
}

// ---------------------------------------------------------------------------
// SIGTSTP batches

/// `ckpt P` + `end` on SIGTSTP: P appears, the program goes on to the same
/// output; a restart of P resumes from that point to the same end.
fn interim_checkpoint(arch: Arch) {
    let t = T::new("cmdinterim", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("interim.ckpt");
    let (mut p, mut w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), "ckpt first.ckpt\nend\n");
    p.wait_ready();
    w.write_all(format!("ckpt {}\nend\n", img.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    wait_file(&mut p, &img);
    p.wait_lines(10);
    assert!(p.status().is_none(), "the program stopped after an interim checkpoint:\n{}", p.describe());
    t.touch(t.p("gate"));
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "the program after an interim checkpoint");
    assert_eq!(p.stderr(), "", "{}", p.describe());
    assert!(!t.p("first.ckpt").exists(), "a checkpoint went to the setup's file");
    drop(w);

    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_resumed(&r.stdout(), &want, "the restart of the interim checkpoint");
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

/// `ckpt P` + `exit 0`: exit status 0, and P restarts to the right end.
fn ckpt_and_exit(arch: Arch) {
    let t = T::new("cmdexit", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("job.ckpt");
    let (mut p, mut w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), "end\n");
    p.wait_ready();
    w.write_all(format!("ckpt {}\nexit 0\n", img.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    p.expect_exit(0);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    let before = p.stdout();
    assert!(want.starts_with(&before) && !before.contains("done"), "{}", p.describe());
    drop(w);

    t.touch(t.p("gate"));
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_text(&format!("{before}{}", r.stdout()), &want, "original + restarted output");
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

/// SIGTSTP at the end of the stream, with no command: the plain
/// behaviour, a checkpoint to the current file (the setup's `ckpt`) and
/// death by SIGUSR2.
fn eof_plain(arch: Arch) {
    let t = T::new("cmdeof", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("setup.ckpt");
    let (mut p, w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), &format!("ckpt {}\nend\n", img.display()));
    p.wait_ready();
    drop(w);
    p.checkpoint_and_stop();
    assert!(img.exists(), "no image at the stream's checkpoint file:\n{}", p.describe());
    assert_eq!(p.stderr(), "", "{}", p.describe());
    let before = p.stdout();

    t.touch(t.p("gate"));
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_text(&format!("{before}{}", r.stdout()), &want, "original + restarted output");
}

/// `restart P` + `end` before main, the stream kept: a later SIGTSTP with
/// `ckpt Q` + `exit 0` on the same stream works in the restarted job.
fn restart_keeps_stream(arch: Arch) {
    let t = T::new("cmdrestart", arch);
    let (prog, want) = counter(&t, &[]);
    let a = t.p("a.ckpt");
    let q = t.p("q.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&a), N.into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let first = p.stdout();

    let (mut r, mut w) = spawn_piped(&t, "restart1", &prog, &[], &format!("restart {}\nend\n", a.display()));
    r.wait_lines(5);
    w.write_all(format!("ckpt {}\nexit 0\n", q.display()).as_bytes()).unwrap();
    r.signal(SIGTSTP);
    r.expect_exit(0);
    assert_eq!(r.stderr(), "", "{}", r.describe());
    assert!(q.exists(), "no image at Q:\n{}", r.describe());
    let second = r.stdout();
    drop(w);

    t.touch(t.p("gate"));
    let mut r2 = t.spawn("restart2", &t.restart_argv(&prog, &q, Via::Program, false));
    r2.expect_exit(0);
    assert_text(&format!("{first}{second}{}", r2.stdout()), &want, "three runs' output");
    assert_eq!(r2.stderr(), "", "{}", r2.describe());
}

/// `-_condor_cmd_file` with `restart`: the file the runtime opened
/// survives the exec of the loader and the restore (the loader refuses a
/// `--cmd-fd` that is not open); at its end, SIGTSTP is plain again, into
/// the restarted image's file (`restart` implies `ckpt`).
fn restart_from_cmd_file(arch: Arch) {
    let t = T::new("cmdfilerestart", arch);
    let (prog, want) = counter(&t, &[]);
    let a = t.p("a.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&a), N.into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let first = p.stdout();

    let cmds = t.p("cmds.txt");
    std::fs::write(&cmds, "restart a.ckpt\nend\n").unwrap();
    let mut r = t.spawn("restart1", &[s(&prog), "-_condor_cmd_file".into(), s(&cmds)]);
    r.wait_lines(5);
    let stream = std::fs::read_dir(format!("/proc/{}/fd", r.pid))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .any(|target| target == cmds);
    assert!(stream, "the command file is not open in the restarted job:\n{}", r.describe());
    let old = ino(&a);
    r.checkpoint_and_stop();
    assert_eq!(r.stderr(), "", "{}", r.describe());
    assert_ne!(ino(&a), old, "the plain SIGTSTP did not write the restarted image's file");
    let second = r.stdout();

    t.touch(t.p("gate"));
    let mut r2 = t.spawn("restart2", &t.restart_argv(&prog, &a, Via::Program, false));
    r2.expect_exit(0);
    assert_text(&format!("{first}{second}{}", r2.stdout()), &want, "three runs' output");
}

/// The image has a file at the number the new stream arrives on: the
/// loader reopens the file there and moves the stream to another number,
/// which the restarted runtime reads; the file stays the program's.
fn restart_stream_renumbered(arch: Arch) {
    let t = T::new("cmdrenumber", arch);
    let (prog, want) = counter(&t, &[]);
    let a = t.p("a.ckpt");
    let q = t.p("q.ckpt");
    let held = t.p("held.txt");
    std::fs::write(&held, "held\n").unwrap();
    let file = File::open(&held).unwrap();
    let argv = vec![s(&prog), "-_condor_ckpt".into(), s(&a), N.into(), t.ps("gate")];
    let hfd = file.as_raw_fd();
    let mut p = t.spawn_with("orig", &argv, &t.dir, |c| child_setup(c, hfd, 0o022));
    drop(file);
    p.wait_ready();
    p.checkpoint_and_stop();
    let first = p.stdout();

    let (mut r, mut w) = spawn_piped(&t, "restart1", &prog, &[], &format!("restart {}\nend\n", a.display()));
    r.wait_lines(5);
    let fd3 = std::fs::read_link(format!("/proc/{}/fd/3", r.pid)).unwrap();
    assert_eq!(fd3, held, "fd 3 of the restarted job");
    w.write_all(format!("ckpt {}\nexit 0\n", q.display()).as_bytes()).unwrap();
    r.signal(SIGTSTP);
    r.expect_exit(0);
    assert_eq!(r.stderr(), "", "{}", r.describe());
    let second = r.stdout();
    drop(w);

    t.touch(t.p("gate"));
    let mut r2 = t.spawn("restart2", &t.restart_argv(&prog, &q, Via::Program, false));
    r2.wait_lines(1);
    let fd3 = std::fs::read_link(format!("/proc/{}/fd/3", r2.pid)).unwrap();
    assert_eq!(fd3, held, "fd 3 after the second restart");
    r2.expect_exit(0);
    assert_text(&format!("{first}{second}{}", r2.stdout()), &want, "three runs' output");
}

// ---------------------------------------------------------------------------
// Failures

/// Run `prog ARGS` with `stream` on a pipe at fd 3 (closed after it);
/// expect exit status 2, main not run, and exactly `msg` on stderr.
#[track_caller]
fn refused(t: &T, label: &str, prog: &Path, args: &[&str], stream: &str, msg: &str) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (mut p, w) = spawn_piped(t, label, prog, &args, stream);
    drop(w);
    p.expect_exit(2);
    assert_eq!(p.stdout(), "", "main ran despite a bad stream:\n{}", p.describe());
    assert_text(&p.stderr(), &format!("{msg}\n"), &format!("message for {stream:?}"));
}

/// Every error before the first `end`: one line naming the line, exit 2.
fn setup_errors(arch: Arch) {
    let t = T::new("cmderrors", arch);
    let prog = t.compile("args", &["args.c"], &[]);
    let l = "rckpt: command stream line";
    refused(
        &t,
        "verb",
        &prog,
        &[],
        "frob x\nend\n",
        &format!("{l} 1: unknown command 'frob' (expected iwd, fd, ckpt, restart, migrate_to, migrate_from, exit or end)"),
    );
    refused(&t, "count", &prog, &[], "iwd .\nfd 1 out\nend\n", &format!("{l} 2: wrong number of words for fd (expected: fd N PATH MODE)"));
    refused(
        &t,
        "mode",
        &prog,
        &[],
        "\nfd 1 out O_WRONLY|O_CRAET\nend\n",
        &format!(
            "{l} 2: fd: bad MODE 'O_WRONLY|O_CRAET': unknown flag 'O_CRAET' \
             (expected open(2) flag names joined by |, e.g. O_WRONLY|O_CREAT|O_TRUNC, or a number)"
        ),
    );
    refused(&t, "noend", &prog, &[], "iwd .\n", "rckpt: command stream ended after line 1 without 'end'; the job does not start");
    refused(&t, "iwd", &prog, &[], "iwd /nonexistent/dir\nend\n", &format!("{l} 1: iwd /nonexistent/dir: No such file or directory"));
    refused(
        &t,
        "fd",
        &prog,
        &[],
        "iwd .\n\nfd 1 /nonexistent/out O_WRONLY|O_CREAT\nend\n",
        &format!("{l} 3: fd 1 /nonexistent/out O_WRONLY|O_CREAT: No such file or directory"),
    );
    refused(&t, "stream", &prog, &[], "fd 3 x O_RDONLY\nend\n", &format!("{l} 1: fd 3 x O_RDONLY: descriptor 3 is the command stream"));
    refused(
        &t,
        "both",
        &prog,
        &["-_condor_cmd_file", "cmds.txt"],
        "end\n",
        "rckpt: -_condor_cmd_fd and -_condor_cmd_file cannot both be given (one command stream)",
    );
    // Flags that name no stream.
    for (k, (args, msg)) in [
        (&["-_condor_cmd_fd", "9"][..], "rckpt: -_condor_cmd_fd 9: Bad file number"),
        (&["-_condor_cmd_file", "/nonexistent/cmds"], "rckpt: -_condor_cmd_file /nonexistent/cmds: No such file or directory"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut argv = vec![s(&prog)];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut r = t.run(&format!("flag{k}"), &argv);
        r.expect_exit(2);
        assert_eq!(r.stdout(), "", "{}", r.describe());
        assert_text(&r.stderr(), &format!("{msg}\n"), &format!("message for {args:?}"));
    }
}

/// `exit` after a `ckpt` of the same batch that failed is refused (the
/// batch ends there); the program keeps running and finishes, the previous
/// image untouched.
/// Commands that belong before `end` are reported and ignored.
fn exit_refused(arch: Arch) {
    let t = T::new("cmdrefused", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("good.ckpt");
    let bad = t.p("no/such/dir/x.ckpt");
    let (mut p, mut w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), "end\n");
    p.wait_ready();
    w.write_all(format!("ckpt {}\nend\n", img.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    wait_file(&mut p, &img);
    let good = std::fs::read(&img).unwrap();
    w.write_all(format!("fd 1 x O_RDONLY\nckpt {}\nexit 0\n", bad.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    p.wait_until("3 lines on stderr", |_, e| e.matches('\n').count() >= 3);
    assert_text(
        &p.stderr(),
        &format!(
            "rckpt: command stream line 4: fd is only valid before the first 'end'; ignored\n\
             rckpt: command stream line 5: checkpoint to {} failed: creating the temporary file: No such file or directory; \
             the previous checkpoint is kept\n\
             rckpt: command stream line 6: exit refused: the last checkpoint failed; the program keeps running\n",
            bad.display()
        ),
        "messages",
    );
    assert!(p.status().is_none(), "the job exited after a failed checkpoint:\n{}", p.describe());
    assert!(std::fs::read(&img).unwrap() == good, "the previous image changed");
    t.touch(t.p("gate"));
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "the program after the refused exit");
    drop(w);

    // The previous image still restarts.
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_resumed(&r.stdout(), &want, "the restart of the previous image");
}

// ---------------------------------------------------------------------------
// Migration over TCP (loopback)

/// A listener on a free loopback port.
fn listen() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Start the counter as a migration's sender: its stream ran main; it is
/// at "ready". The test then writes `migrate_to` commands and signals it.
fn sender(t: &T, prog: &Path, env: &[(&str, &str)]) -> (Proc, File) {
    let (r, mut w) = pipe();
    w.write_all(b"end\n").unwrap();
    let mut argv = vec![s(prog), "-_condor_cmd_fd".into(), "3".into()];
    argv.extend(counter_args(t, "gate"));
    let rfd = r.as_raw_fd();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut p = t.spawn_with("sender", &argv, &t.dir, move |c| {
        child_setup(c, rfd, 0o022);
        c.envs(env);
    });
    drop(r);
    p.wait_ready();
    (p, w)
}

/// Start `prog` as a migration's receiver: the connection at fd 3 and a
/// command file `migrate_from 3` + `end`.
fn receiver(t: &T, prog: &Path, conn: &impl AsRawFd) -> Proc {
    let cmd = t.p("receiver.cmd");
    std::fs::write(&cmd, "migrate_from 3\nend\n").unwrap();
    let fd = conn.as_raw_fd();
    t.spawn_with("receiver", &[s(prog), "-_condor_cmd_file".into(), s(&cmd)], &t.dir, move |c| child_setup(c, fd, 0o022))
}

/// `migrate_to 127.0.0.1 PORT` + `exit 0` into a receiver started with
/// `migrate_from`: the sender exits 0 once the receiver acknowledged; the
/// receiver resumes the job; their outputs together are the uninterrupted
/// output.
fn migrate(arch: Arch) {
    let t = T::new("migrate", arch);
    let (prog, want) = counter(&t, &[]);
    let (l, port) = listen();
    let (mut p, mut w) = sender(&t, &prog, &[]);
    w.write_all(format!("migrate_to 127.0.0.1 {port}\nexit 0\n").as_bytes()).unwrap();
    p.signal(SIGTSTP);
    let (conn, _) = l.accept().unwrap();
    let mut r = receiver(&t, &prog, &conn);
    drop(conn);
    p.expect_exit(0);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    t.touch(t.p("gate"));
    r.expect_exit(0);
    assert_eq!(r.stderr(), "", "{}", r.describe());
    assert_text(&format!("{}{}", p.stdout(), r.stdout()), &want, "sender + receiver output");
}

/// The migration failed: one line naming it, `exit` refused, the job runs
/// on here and finishes with the uninterrupted output.
fn assert_migration_failed(t: &T, p: &mut Proc, port: u16, why: &str, want: &str) {
    p.wait_until("2 lines on stderr", |_, e| e.matches('\n').count() >= 2);
    let err = p.stderr();
    let lines: Vec<&str> = err.lines().collect();
    let head = format!("rckpt: command stream line 2: migrate_to 127.0.0.1 {port}: ");
    assert!(
        lines[0].starts_with(&head) && lines[0].contains(why) && lines[0].ends_with("; the program keeps running"),
        "the failure line: {:?}\n{}",
        lines[0],
        p.describe()
    );
    assert_eq!(lines[1], "rckpt: command stream line 3: exit refused: the last checkpoint failed; the program keeps running");
    assert!(p.status().is_none(), "the job exited after a failed migration:\n{}", p.describe());
    t.touch(t.p("gate"));
    p.expect_exit(0);
    assert_text(&p.stdout(), want, "the job that failed to migrate");
}

/// Nobody listens on the port: connection refused.
fn migrate_refused(arch: Arch) {
    let t = T::new("migrefused", arch);
    let (prog, want) = counter(&t, &[]);
    let (l, port) = listen();
    drop(l);
    let (mut p, mut w) = sender(&t, &prog, &[]);
    w.write_all(format!("migrate_to 127.0.0.1 {port}\nexit 0\n").as_bytes()).unwrap();
    p.signal(SIGTSTP);
    assert_migration_failed(&t, &mut p, port, "connecting: Connection refused", &want);
}

/// The receiver reads part of the image and goes away.
fn migrate_receiver_dies(arch: Arch) {
    let t = T::new("migdies", arch);
    let (prog, want) = counter(&t, &[]);
    let (l, port) = listen();
    let (mut p, mut w) = sender(&t, &prog, &[]);
    w.write_all(format!("migrate_to 127.0.0.1 {port}\nexit 0\n").as_bytes()).unwrap();
    p.signal(SIGTSTP);
    let (mut conn, _) = l.accept().unwrap();
    let mut some = [0u8; 100_000];
    conn.read_exact(&mut some).unwrap();
    drop(conn);
    assert_migration_failed(&t, &mut p, port, "", &want);
}

/// The receiver reads the whole image and never answers: after the
/// timeout (RCKPT_MIGRATE_TIMEOUT, 2 s here) the migration failed.
fn migrate_never_acknowledged(arch: Arch) {
    let t = T::new("mignoack", arch);
    let (prog, want) = counter(&t, &[]);
    let (l, port) = listen();
    let (mut p, mut w) = sender(&t, &prog, &[("RCKPT_MIGRATE_TIMEOUT", "2")]);
    w.write_all(format!("migrate_to 127.0.0.1 {port}\nexit 0\n").as_bytes()).unwrap();
    p.signal(SIGTSTP);
    let (mut conn, _) = l.accept().unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_millis(2500))).unwrap();
    let mut image = Vec::new();
    let _ = conn.read_to_end(&mut image); // ends by the timeout: the sender waits for an answer
    assert!(image.len() > 100_000, "the sender sent {} bytes", image.len());
    assert_migration_failed(&t, &mut p, port, "waiting for the receiver's acknowledgement", &want);
    drop(conn);
}

/// A receiver given a truncated stream refuses it with one line before
/// the program runs, and does not acknowledge.
fn migrate_from_truncated(arch: Arch) {
    let t = T::new("migtrunc", arch);
    let (prog, _) = counter(&t, &[]);
    let img = t.p("whole.ckpt");
    let (mut p, mut w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), "end\n");
    p.wait_ready();
    w.write_all(format!("ckpt {}\nexit 0\n", img.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    p.expect_exit(0);
    let bytes = std::fs::read(&img).unwrap();
    let (l, port) = listen();
    let cut = bytes.len() / 2;
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(&bytes[..cut]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        answer
    });
    let (conn, _) = l.accept().unwrap();
    let mut r = receiver(&t, &prog, &conn);
    drop(conn);
    r.expect_exit(1);
    assert_eq!(r.stdout(), "", "{}", r.describe());
    let err = r.stderr();
    assert!(err.lines().count() == 1 && err.starts_with("rckpt-loader: fd 3: truncated image: needs "), "{}", r.describe());
    assert!(feeder.join().unwrap().is_empty(), "a refused image was acknowledged");
}

/// An image streamed through a pipe into `rckpt-loader --fd 0` restarts;
/// `rckpt info -` reads one from standard input.
fn loader_from_pipe(arch: Arch) {
    let t = T::new("fdpipe", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("job.ckpt");
    let (mut p, mut w) = spawn_piped(&t, "orig", &prog, &counter_args(&t, "gate"), "end\n");
    p.wait_ready();
    w.write_all(format!("ckpt {}\nexit 0\n", img.display()).as_bytes()).unwrap();
    p.signal(SIGTSTP);
    p.expect_exit(0);
    t.touch(t.p("gate"));
    let before = p.stdout();
    let sh = |cmd: String| {
        let o = Command::new("bash").args(["-c", &cmd]).current_dir(&t.dir).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, out, err) = sh(format!("cat {} | {} --fd 0", img.display(), t.loader()));
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert_text(&format!("{before}{out}"), &want, "the image restarted from a pipe");
    let (code, out, err) = sh(format!("cat {} | {} info -", img.display(), s(&product().rckpt)));
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert!(out.contains("rckpt image standard input\n") && out.contains("\n  integrity    ok\n"), "{out}");
}

arch_tests!(migrate, migrate_refused, migrate_receiver_dies, migrate_never_acknowledged, migrate_from_truncated, loader_from_pipe);

arch_tests!(
    setup_redirects,
    interim_checkpoint,
    ckpt_and_exit,
    eof_plain,
    restart_keeps_stream,
    restart_stream_renumbered,
    restart_from_cmd_file,
    setup_errors,
    exit_refused
);
