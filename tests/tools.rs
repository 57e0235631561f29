//! The tools around images and the runtime's interface: `rckpt info`,
//! `rckpt restart`, `rckpt-loader --check`, gdb on an image,
//! `-_condor_debug_wait`, debug output, flag handling, warnings.

#[macro_use]
mod common;

use common::*;
use std::path::PathBuf;

/// A checkpoint of the counter taken with SIGTSTP; the gate is left open
/// so a restart runs to the end. Returns (program, image, uninterrupted
/// output, output before the checkpoint).
fn counter_image(t: &T) -> (PathBuf, PathBuf, String, String) {
    let (prog, want) = counter(t, &[]);
    let img = t.p("counter.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    t.touch(t.p("gate"));
    (prog, img, want, p.stdout())
}

fn run_rckpt(t: &T, args: &[&str]) -> std::process::Output {
    let mut v = vec![s(&product().rckpt)];
    v.extend(args.iter().map(|a| a.to_string()));
    t.run_tool(&v)
}

/// `rckpt info FILE` names the program and the architecture.
fn info_text(arch: Arch) {
    let t = T::new("info", arch);
    let (_, img, _, _) = counter_image(&t);
    let o = run_rckpt(&t, &["info", &s(&img)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "rckpt info failed: {}{}", out, String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("counter"), "rckpt info does not name the program:\n{out}");
    assert!(out.contains(arch.name()), "rckpt info does not name the architecture ({}):\n{out}", arch.name());
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            json_strings(x, out)
        }),
        _ => {}
    }
}

/// `rckpt info --json FILE` is JSON naming the program and architecture.
fn info_json(arch: Arch) {
    let t = T::new("infojson", arch);
    let (_, img, _, _) = counter_image(&t);
    let o = run_rckpt(&t, &["info", "--json", &s(&img)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "rckpt info --json failed: {}{}", out, String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("rckpt info --json is not JSON ({e}):\n{out}"));
    let mut strings = vec![];
    json_strings(&v, &mut strings);
    assert!(strings.iter().any(|x| x.contains("counter")), "no string mentions the program:\n{out}");
    assert!(strings.iter().any(|x| x.contains(arch.name())), "no string mentions {}:\n{out}", arch.name());
}

/// `rckpt info` verifies the image like the loader does: a corrupt segment
/// is reported and the exit status is non-zero.
fn info_rejects_corrupt(arch: Arch) {
    let t = T::new("infobad", arch);
    let (_, img, _, _) = counter_image(&t);
    let mut b = std::fs::read(&img).unwrap();
    let segs = image::segments(&b);
    let (i, at) = image::first_data_byte(&b);
    b[at] ^= 0x5a;
    let bad = t.p("bad.ckpt");
    std::fs::write(&bad, &b).unwrap();
    for json in [false, true] {
        let mut args = vec!["info"];
        if json {
            args.push("--json");
        }
        let bs = s(&bad);
        args.push(&bs);
        let o = run_rckpt(&t, &args);
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!o.status.success(), "rckpt {args:?} accepted a corrupt image:\n{all}");
        assert!(
            all.contains(&format!("corrupt image: segment {i} (0x{:x}) fails its checksum", segs[i].vaddr)),
            "rckpt {args:?}: no checksum message:\n{all}"
        );
    }
    // Truncated: refused with the loader's words.
    let orig = std::fs::read(&img).unwrap();
    std::fs::write(&bad, &orig[..10]).unwrap();
    let o = run_rckpt(&t, &["info", &s(&bad)]);
    assert!(!o.status.success());
    assert_text(
        &String::from_utf8_lossy(&o.stderr),
        &format!("rckpt: {}: truncated image: only 10 bytes\n", bad.display()),
        "rckpt info on a truncated image",
    );
}

/// `rckpt-loader --check` on a good image, then the image still restarts.
fn loader_check(arch: Arch) {
    let t = T::new("check", arch);
    let (prog, img, want, before) = counter_image(&t);
    let nseg = image::header(&std::fs::read(&img).unwrap()).nseg;
    let c = t.run("check", &[t.loader(), "--check".into(), s(&img)]);
    assert_eq!(c.status().unwrap().code(), Some(0), "{}", c.describe());
    assert_text(&c.stderr(), &format!("rckpt-loader: {}: OK, {nseg} segments verified\n", img.display()), "--check");
    assert_eq!(c.stdout(), "");
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(0);
    assert_text(&format!("{before}{}", r.stdout()), &want, "restart after --check");
}

/// `rckpt restart FILE` (the command's restart subcommand).
fn rckpt_restart_command(arch: Arch) {
    let t = T::new("rckptrestart", arch);
    let (_, img, want, before) = counter_image(&t);
    let mut r = t.spawn("restart", &[s(&product().rckpt), "restart".into(), s(&img)]);
    r.expect_exit(0);
    assert_text(&format!("{before}{}", r.stdout()), &want, "rckpt restart");
}

/// gdb reads an image: the backtrace shows the fixture's functions.
fn gdb_backtrace(arch: Arch) {
    if !require_tool("gdb") {
        return;
    }
    let t = T::new("gdb", arch);
    let prog = t.compile("nested", &["nested_main.c", "nested_work.c"], &["-g", "-O1"]);
    let img = t.p("nested.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let o = t.run_tool(&["gdb".into(), "-nx".into(), "-batch".into(), "-ex".into(), "bt".into(), s(&prog), s(&img)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    let pos = |f: &str| out.find(&format!(" {f} (")).or_else(|| out.find(&format!(" {f}(")));
    let (i, m, mn) = (pos("inner_work"), pos("outer_work"), pos("main"));
    assert!(
        i.is_some() && m.is_some() && mn.is_some() && i < m && m < mn,
        "gdb bt does not show inner_work, outer_work, main in order:\n{out}\n--- stderr ---\n{err}"
    );
}

/// `-_condor_debug_wait`: the program waits before main (printing the gdb
/// hint) until a debugger clears rckpt_debug_wait, then runs normally.
fn debug_wait(arch: Arch) {
    if !require_tool("gdb") {
        return;
    }
    let t = T::new("debugwait", arch);
    let (prog, want) = counter(&t, &[]);
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_debug_wait".into(), N.into(), t.ps("open-gate")]);
    p.wait_stderr("\n");
    let hint = format!(
        "rckpt: -_condor_debug_wait: waiting for a debugger: gdb -p {} -ex 'set language c' -ex 'set var *(int*)&rckpt_debug_wait = 0' -ex continue\n",
        p.pid
    );
    assert_text(&p.stderr(), &hint, "debug_wait hint");
    assert_eq!(p.stdout(), "", "the program ran before the debugger released it");
    assert!(p.status().is_none());
    let o = t.run_tool(&[
        "gdb".into(),
        "-nx".into(),
        "-batch".into(),
        "-p".into(),
        p.pid.to_string(),
        "-ex".into(),
        "set language c".into(),
        "-ex".into(),
        "set var *(int*)&rckpt_debug_wait = 0".into(),
    ]);
    assert!(o.status.success(), "gdb failed: {}", String::from_utf8_lossy(&o.stderr));
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "output after the debugger released the program");
}

/// `-_condor_D_<LEVEL>`: debug lines for writing and restoring.
fn debug_output(arch: Arch) {
    let t = T::new("debugout", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("d.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_D_CKPT".into(), "-_condor_ckpt".into(), s(&img), N.into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let nseg = image::header(&std::fs::read(&img).unwrap()).nseg;
    let err = p.stderr();
    let wrote = format!("rckpt: D_CKPT: wrote {}: {nseg} segments, ", img.display());
    assert!(
        err.lines().any(|l| l.starts_with(&wrote) && l.contains(" KiB stored, ") && l.ends_with(" ms of it)")),
        "no {wrote:?}... KiB stored, N ms (fsync M ms of it) line:\n{err}"
    );
    t.touch(t.p("gate"));
    let mut r = t.spawn("restart", &[s(&prog), "-_condor_restart".into(), s(&img), "-_condor_D_ALL".into()]);
    r.expect_exit(0);
    let err = r.stderr();
    let restored = format!("rckpt: D_CKPT: restored {nseg} segments, generation 1, read and verified ");
    assert!(
        err.lines().any(|l| l.starts_with(&restored) && l.contains(" KiB in ") && l.contains(" ms, commit took ")),
        "no {restored:?}... line:\n{err}"
    );
    assert_text(&format!("{}{}", p.stdout(), r.stdout()), &want, "output with debug flags");
}

/// Run `rckpt ARGS` with its stdout on a pipe whose read end is already
/// closed: its first write finds no reader, whatever the size of the output.
fn rckpt_into_closed_pipe(t: &T, args: &[&str]) -> std::process::Output {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned only here.
    let (r, w) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    drop(r);
    std::process::Command::new(&product().rckpt)
        .args(args)
        .current_dir(&t.dir)
        .stdin(std::process::Stdio::null())
        .stdout(w)
        .output()
        .unwrap()
}

/// A closed stdout ends every printing form of `rckpt` (info text and
/// JSON, clap's help and version) quietly, by SIGPIPE as `cat` would: no
/// "Broken pipe" panic, nothing on stderr. A real `| head -n 1` pipeline
/// shows the first line and no message.
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let t = T::new("sigpipe", Arch::X86_64);
    let (_, img, _, _) = counter_image(&t);
    let img = s(&img);
    for args in [vec!["info", &img], vec!["info", "--json", &img], vec!["--help"], vec!["info", "--help"], vec!["--version"]] {
        let o = rckpt_into_closed_pipe(&t, &args);
        assert_eq!(
            (o.status.signal(), String::from_utf8_lossy(&o.stderr).into_owned()),
            (Some(libc::SIGPIPE), String::new()),
            "rckpt {args:?} with stdout closed: expected death by SIGPIPE and no message, got {}",
            o.status
        );
    }
    // Through a shell pipeline: whether rckpt's output fits in the pipe
    // before head exits is a race (status 0 or SIGPIPE), the silence is not.
    for (json, first) in [(true, "{\n".to_string()), (false, format!("rckpt image {img}\n"))] {
        let script = format!(
            "'{}' info {} '{img}' | head -n 1; echo \"${{PIPESTATUS[0]}}\" >&2",
            s(&product().rckpt),
            if json { "--json" } else { "" }
        );
        let o = t.run_tool(&["bash".into(), "-c".into(), script]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(String::from_utf8_lossy(&o.stdout), first, "rckpt info (json: {json}) | head -n 1");
        assert!(err == "0\n" || err == "141\n", "rckpt info (json: {json}) | head -n 1: stderr is not just rckpt's status:\n{err}");
    }
}

arch_tests!(info_text, info_json, info_rejects_corrupt, loader_check, rckpt_restart_command, gdb_backtrace, debug_wait, debug_output,);

/// Flags anywhere on the command line are removed before main; the others
/// stay, in order.
#[test]
fn flags_removed_before_main() {
    let t = T::new("flags", Arch::X86_64);
    let prog = t.compile("args", &["args.c"], &[]);
    let r = t.run(
        "args",
        &[
            s(&prog),
            "a".into(),
            "-_condor_nowarn".into(),
            "b".into(),
            "-_condor_D_FULLDEBUG".into(),
            "-_condor_warning".into(),
            "UNSUP".into(),
            "ONCE".into(),
            "c".into(),
            "-_condor_relocatable".into(),
            "-_condor_aggravate_bugs".into(),
            "-_condor_ckpt".into(),
            "x.ckpt".into(),
            "-_condor_D_CKPT".into(),
            "d with space".into(),
            "--not-a-condor-flag".into(),
        ],
    );
    assert_eq!(r.status().unwrap().code(), Some(0), "{}", r.describe());
    assert_text(
        &r.stdout(),
        "argc 6\nargv[1] = a\nargv[2] = b\nargv[3] = c\nargv[4] = d with space\nargv[5] = --not-a-condor-flag\ndone\n",
        "arguments seen by main",
    );
    assert!(!t.p("x.ckpt").exists());
}

/// Without -_condor_ckpt the image is the program's basename + ".ckpt" in
/// the working directory (not next to the program). A restart from
/// elsewhere returns to the checkpointed working directory, unless it is
/// relocatable.
#[test]
fn default_checkpoint_name_and_cwd() {
    let t = T::new("defname", Arch::X86_64);
    let prog = t.compile("args", &["args.c"], &[]);
    let work = t.mkdir("work");
    let mut p = t.spawn_in("orig", &[s(&prog), "wait".into()], &work);
    p.wait_ready();
    p.signal(SIGUSR2);
    let img = work.join("args.ckpt");
    wait_file(&mut p, &img);
    p.signal(SIGWINCH);
    p.expect_exit(0);
    assert!(!t.p("args.ckpt").exists(), "the image went next to the program, not into the working directory");
    let w = work.display();
    assert_text(&p.stdout(), &format!("argc 2\nargv[1] = wait\nready\ngo\nwas not restarted\ncwd {w}\ndone\n"), "default name run");
    let mut r = t.spawn("restart", &[s(&prog), "-_condor_restart".into(), s(&img)]);
    r.expect_exit(0);
    assert_text(&r.stdout(), &format!("restarted\nwas restarted\ncwd {w}\ndone\n"), "plain restart from another directory");
    let mut r = t.spawn("reloc", &[s(&prog), "-_condor_restart".into(), s(&img), "-_condor_relocatable".into()]);
    r.expect_exit(0);
    assert_text(
        &r.stdout(),
        &format!("restarted\nwas restarted\ncwd {}\ndone\n", t.dir.display()),
        "relocatable restart from another directory",
    );
}

/// Warning controls: -_condor_nowarn silences the reserved-signal notices,
/// -_condor_warning NOTICE ONCE prints only the first.
#[test]
fn warning_modes() {
    let t = T::new("warn", Arch::X86_64);
    let prog = t.compile("state", &["state.c"], &[]);
    let notices = |p: &Proc| p.stderr().lines().filter(|l| l.starts_with("rckpt: notice: ")).count();
    for (label, flags, want) in [
        ("default", vec![], 4),
        ("nowarn", vec!["-_condor_nowarn"], 0),
        ("once", vec!["-_condor_warning", "NOTICE", "ONCE"], 1),
        ("off", vec!["-_condor_warning", "ALL", "OFF"], 0),
    ] {
        let mut argv = vec![s(&prog)];
        argv.extend(flags.iter().map(|f| f.to_string()));
        let mut p = t.spawn(label, &argv);
        p.wait_ready();
        p.signal(SIGWINCH);
        p.expect_exit(0);
        // Twice 4 refused calls (before and after the wait).
        let want = if want == 4 { 8 } else { want };
        assert_eq!(notices(&p), want, "{label}: wrong number of notices:\n{}", p.describe());
    }
}

/// A restart with `-_condor_warning UNSUP OFF` (or `rckpt-loader --warning
/// UNSUP OFF`) does not warn about the pipes it cannot restore.
#[test]
fn restart_warning_off() {
    let t = T::new("warnoff", Arch::X86_64);
    let prog = t.compile("state", &["state.c"], &[]);
    let img = t.p("s.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let copy = t.p("s2.ckpt");
    std::fs::copy(&img, &copy).unwrap();
    let runs: [(&str, Vec<String>); 2] = [
        ("self", vec![s(&prog), "-_condor_restart".into(), s(&img), "-_condor_warning".into(), "UNSUP".into(), "OFF".into()]),
        ("loader", vec![t.loader(), "--warning".into(), "UNSUP".into(), "OFF".into(), s(&copy)]),
    ];
    for (label, argv) in runs {
        let mut r = t.spawn(label, &argv);
        r.expect_exit(0);
        assert!(r.stdout().ends_with("done\n"), "{}", r.describe());
        assert!(!r.stderr().contains("rckpt: warning:"), "{label}: warning printed despite UNSUP OFF:\n{}", r.describe());
    }
}

/// A pipe the launching environment leaked at fd 251 (README, "Descriptors
/// inherited from the launching environment"): the image records it, not
/// restored; every restart and `--check` warns once, unless told `UNSUP
/// OFF`; the restarted process has no fd 251, not even one its own
/// restarting environment leaked.
#[test]
fn leaked_pipe_fd() {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let t = T::new("leakedfd", Arch::X86_64);
    let (prog, want) = counter(&t, &[]);
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned only here.
    let (r, _w) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    let leak = r.as_raw_fd();
    let leak_251 = move |c: &mut std::process::Command| {
        // SAFETY: dup2 is async-signal-safe; the copy at 251 is not close-on-exec.
        unsafe {
            c.pre_exec(move || if libc::dup2(leak, 251) == 251 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
    };
    let img = t.p("c.ckpt");
    let gate = t.p("gate");
    let mut p = t.spawn_with("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)], &t.dir, leak_251);
    p.wait_ready();
    p.checkpoint_and_stop();
    let before = p.stdout();

    let o = run_rckpt(&t, &["info", "--json", &s(&img)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pipe = format!("pipe:[{}]", r.metadata().unwrap().ino());
    let f = v["open_files"].as_array().unwrap().iter().find(|f| f["fd"] == 251).cloned();
    assert_eq!(
        f.map(|f| (f["kind"].clone(), f["path"].clone(), f["restored"].clone())),
        Some((serde_json::json!("other"), serde_json::json!(pipe), serde_json::json!(false))),
        "rckpt info --json on fd 251:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let warning = format!("rckpt: warning: fd 251 ({pipe}) cannot be restored (not a file); it stays closed\n");
    let ok = format!("rckpt-loader: {}: OK, {} segments verified\n", img.display(), image::header(&std::fs::read(&img).unwrap()).nseg);
    for (label, quiet) in [("check", false), ("check-quiet", true)] {
        let mut argv = vec![t.loader(), "--check".into()];
        if quiet {
            argv.extend(["--warning".into(), "UNSUP".into(), "OFF".into()]);
        }
        argv.push(s(&img));
        let c = t.run(label, &argv);
        assert_eq!(c.status().unwrap().code(), Some(0), "{}", c.describe());
        assert_text(&c.stderr(), &if quiet { ok.clone() } else { format!("{warning}{ok}") }, &format!("rckpt-loader {argv:?}"));
    }

    // Restarted in an environment that leaks a pipe at 251 too.
    let mut r1 = t.spawn_with("restart", &t.restart_argv(&prog, &img, Via::Loader, false), &t.dir, leak_251);
    r1.wait_until("the restarted program's first line", |o, _| !o.is_empty());
    let fd251 = PathBuf::from(format!("/proc/{}/fd/251", r1.pid));
    assert!(!fd251.exists(), "the restarted process has an fd 251: {:?}", std::fs::read_link(&fd251));
    t.touch(&gate);
    r1.expect_exit(0);
    assert_text(&r1.stderr(), &warning, "the restart's stderr");
    assert_text(&format!("{before}{}", r1.stdout()), &want, "output across the restart");
}
