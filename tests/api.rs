//! The program's own checkpoint calls (`rckpt.h`): `ckpt()`,
//! `ckpt_and_exit()`, `init_image_with_file_name()`,
//! `_condor_ckpt_disable()`/`_condor_ckpt_enable()`, from C, C++ and Fortran
//! (fixtures `api.c`, `api.cpp`, `api.f90`, which include `<rckpt.h>`
//! with no flag but what `rckpt compile` adds).

#[macro_use]
mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// The part of `out` from the line `from` (included) on; panics if absent.
fn from_line<'a>(out: &'a str, from: &str) -> &'a str {
    let line = format!("{from}\n");
    let i = if out.starts_with(&line) { Some(0) } else { out.find(&format!("\n{line}")).map(|i| i + 1) };
    &out[i.unwrap_or_else(|| panic!("no line {from:?} in:\n{out}"))..]
}

/// The part of `out` up to the line `to` (included).
fn up_to<'a>(out: &'a str, to: &str) -> &'a str {
    let rest = from_line(out, to);
    &out[..out.len() - rest.len() + to.len() + 1]
}

/// The computation's lines ("i STATE", "done STATE"), without the API's.
fn steps(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) || l.starts_with("done")).collect()
}

/// The line a failed checkpoint to `img` prints.
fn failure_line(img: &Path, tstp: bool) -> String {
    format!(
        "rckpt: checkpoint to {} failed: creating the temporary file: No such file or directory; the previous checkpoint is kept{}\n",
        img.display(),
        if tstp { ", the program keeps running" } else { "" }
    )
}

/// Restart `img` of `prog` both ways; each must print `want` and nothing on
/// stderr.
fn restart_prints(t: &T, prog: &Path, img: &Path, want: &str) {
    for via in [Via::Program, Via::Loader] {
        let mut r = t.spawn(&format!("restart-{via:?}"), &t.restart_argv(prog, img, via, false));
        r.expect_exit(0);
        assert_text(&r.stdout(), want, &format!("output after a restart ({via:?})"));
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

/// `ckpt()` at step 9: the run goes on and finishes ("ckpt returned 0");
/// a restart of the image resumes inside that call ("ckpt returned 1") and
/// prints what the first run printed after it. The computation is the
/// failing run's (`ckpt_fails` below) and `ckpt_and_exit`'s.
fn ckpt_continue(arch: Arch) {
    let t = T::new("api-ckpt", arch);
    let prog = t.compile("api", &["api.c"], &[]);
    let img = t.p("a.ckpt");
    let mut p = t.run("orig", &[s(&prog), "ckpt".into(), "-_condor_ckpt".into(), s(&img)]);
    p.expect_exit(0);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    let out = p.stdout();
    assert_eq!(out.lines().nth(10), Some("ckpt returned 0"), "{}", p.describe());
    assert_eq!(steps(&out).len(), 21, "{}", p.describe());
    assert!(img.exists() && !t.p("a.ckpt.tmp").exists(), "{}", p.describe());
    let after = &from_line(&out, "ckpt returned 0")["ckpt returned 0\n".len()..];
    restart_prints(&t, &prog, &img, &format!("ckpt returned 1\n{after}"));
}

/// `ckpt()` whose checkpoint cannot be written (its directory is gone):
/// returns -1 after one line on stderr; no image, no `.tmp`; the program
/// computes on exactly as when it succeeds.
fn ckpt_fails(arch: Arch) {
    let t = T::new("api-fail", arch);
    let prog = t.compile("api", &["api.c"], &[]);
    let ok = t.run("ok", &[s(&prog), "ckpt".into(), "-_condor_ckpt".into(), t.ps("ok.ckpt")]);
    let dir = t.mkdir("gone");
    let img = dir.join("x.ckpt");
    std::fs::remove_dir(&dir).unwrap();
    let mut p = t.run("orig", &[s(&prog), "ckpt".into(), "-_condor_ckpt".into(), s(&img)]);
    p.expect_exit(0);
    assert_eq!(p.stderr(), failure_line(&img, false), "{}", p.describe());
    assert_eq!(p.stdout().lines().nth(10), Some("ckpt returned -1"), "{}", p.describe());
    assert_eq!(steps(&p.stdout()), steps(&ok.stdout()), "the failed checkpoint changed the computation");
    assert!(!dir.exists() && !img.exists(), "{}", p.describe());
}

/// `ckpt_and_exit()`: the process dies by SIGUSR2 with the image written;
/// a restart returns from the call and finishes as a run whose checkpoint
/// failed (and so returned at once) does.
fn ckpt_and_exit(arch: Arch) {
    let t = T::new("api-exit", arch);
    let prog = t.compile("api", &["api.c"], &[]);
    let gone = t.p("gone/x.ckpt");
    let mut reference = t.run("reference", &[s(&prog), "exit".into(), "-_condor_ckpt".into(), s(&gone)]);
    reference.expect_exit(0);
    assert_eq!(reference.stderr(), failure_line(&gone, true), "{}", reference.describe());
    let want = reference.stdout();

    let img = t.p("e.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "exit".into(), "-_condor_ckpt".into(), s(&img)]);
    p.expect_signal(SIGUSR2);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    assert_text(&p.stdout(), up_to(&want, "calling ckpt_and_exit"), "output up to ckpt_and_exit");
    assert!(img.exists() && !t.p("e.ckpt.tmp").exists(), "{}", p.describe());
    restart_prints(&t, &prog, &img, from_line(&want, "ckpt_and_exit returned"));
}

/// `init_image_with_file_name("x.ckpt")`, called in directory `sub`:
/// `ckpt()` writes `sub/x.ckpt` (resolved at the call, like
/// `-_condor_ckpt`), not the default `api.ckpt`. An empty name changes
/// nothing, with one line on stderr.
fn image_file_name(arch: Arch) {
    let t = T::new("api-file", arch);
    let prog = t.compile("api", &["api.c"], &[]);
    t.mkdir("sub");
    let mut p = t.run("orig", &[s(&prog), "file".into(), "sub".into(), "x.ckpt".into()]);
    p.expect_exit(0);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    let img = t.p("sub/x.ckpt");
    assert!(img.exists(), "no {}:\n{}", img.display(), p.describe());
    assert!(!t.p("api.ckpt").exists() && !t.p("x.ckpt").exists(), "{}", p.describe());
    let out = p.stdout();
    let after = &from_line(&out, "ckpt returned 0")["ckpt returned 0\n".len()..];
    restart_prints(&t, &prog, &img, &format!("ckpt returned 1\n{after}"));

    let mut e = t.run("empty", &[s(&prog), "file".into(), "sub".into(), "".into()]);
    e.expect_exit(0);
    let default = t.p("api.ckpt");
    assert_eq!(
        e.stderr(),
        format!("rckpt: init_image_with_file_name(\"\"): the name is empty; checkpoints still go to {}\n", default.display()),
        "{}",
        e.describe()
    );
    assert!(default.exists(), "{}", e.describe());
}

/// Whether `sig` is pending for process `pid` (thread or process set).
fn pending(pid: i32, sig: i32) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
        .any(|l| u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0) & (1 << (sig - 1)) != 0)
}

/// The process runs (not a zombie) and has not written `img`, even after
/// its handler has had `settle` to act on whatever it was sent.
fn still_running_without(p: &Proc, img: &Path, settle: Duration, when: &str) {
    std::thread::sleep(settle);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap_or_default();
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("gone");
    assert!(state != "Z" && state != "gone", "{when}: the program ended (state {state}):\n{}", p.describe());
    assert!(!img.exists(), "{when}: a checkpoint was written inside the disabled section:\n{}", p.describe());
}

/// Checkpoint signals `sigs`, sent while the program is inside
/// disable/disable, are taken only at the outer enable: no image before
/// it (also after the inner enable), the image after it; SIGTSTP among
/// them wins (the program dies by SIGUSR2). A restart resumes after the
/// enable and finishes as an undisturbed run does.
fn disabled_section(arch: Arch, label: &str, sigs: &[i32]) {
    let t = T::new(&format!("api-disabled-{label}"), arch);
    let prog = t.compile("api", &["api.c"], &[]);
    let open = t.p("open");
    t.touch(&open);
    let mut reference = t.run("reference", &[s(&prog), "disabled".into(), s(&open), s(&open)]);
    reference.expect_exit(0);
    let want = reference.stdout();
    assert!(want.contains("\ndisabled\ninner enabled\nenabled\n"), "{}", reference.describe());

    let img = t.p("d.ckpt");
    let (g1, g2) = (t.p("gate1"), t.p("gate2"));
    let mut p = t.spawn("orig", &[s(&prog), "disabled".into(), s(&g1), s(&g2), "-_condor_ckpt".into(), s(&img)]);
    p.wait_stdout("disabled\n");
    for &sig in sigs {
        p.signal(sig);
        let pid = p.pid;
        // Delivered: the handler has seen it (the fixture polls every ms).
        p.wait_until(&format!("signal {sig} to be delivered"), move |_, _| !pending(pid, sig));
    }
    still_running_without(&p, &img, Duration::from_millis(300), "after the signals");
    t.touch(&g1);
    p.wait_stdout("inner enabled\n");
    still_running_without(&p, &img, Duration::from_millis(300), "after the inner enable");
    t.touch(&g2);
    if sigs.contains(&SIGTSTP) {
        p.expect_signal(SIGUSR2);
        assert_text(&p.stdout(), up_to(&want, "inner enabled"), "output up to the outer enable");
    } else {
        wait_file(&mut p, &img);
        p.expect_exit(0);
        assert_text(&p.stdout(), &want, "output of the run checkpointed at the outer enable");
    }
    assert_eq!(p.stderr(), "", "{}", p.describe());
    assert!(img.exists(), "{}", p.describe());
    restart_prints(&t, &prog, &img, from_line(&want, "enabled"));
}

fn disabled_tstp(arch: Arch) {
    disabled_section(arch, "tstp", &[SIGTSTP]);
}

fn disabled_usr2(arch: Arch) {
    disabled_section(arch, "usr2", &[SIGUSR2]);
}

/// Both arrive: one checkpoint, SIGTSTP's (checkpoint and exit).
fn disabled_both(arch: Arch) {
    disabled_section(arch, "both", &[SIGUSR2, SIGTSTP]);
}

/// C++: `#include <rckpt.h>` in a .cpp (g++), `ckpt()` and a restart.
fn cxx(arch: Arch) {
    if !require_tool("g++") {
        return;
    }
    let t = T::new("api-cxx", arch);
    let prog = t.compile_with("g++", "api_cxx", &["api.cpp"], &[]);
    let img = t.p("cxx.ckpt");
    let mut p = t.run("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.expect_exit(0);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    let out = p.stdout();
    assert_eq!(out.lines().nth(10), Some("ckpt returned 0"), "{}", p.describe());
    assert_eq!(out.lines().last(), Some("done 20 13"), "{}", p.describe());
    let after = &from_line(&out, "ckpt returned 0")["ckpt returned 0\n".len()..];
    restart_prints(&t, &prog, &img, &format!("ckpt returned 1\n{after}"));
}

/// Fortran: `r = ckpt()`, `call condor_ckpt_disable()`/`enable()`,
/// `call init_image_with_file_name(name)` with a blank-padded name and
/// `call ckpt_and_exit()`, against a run whose `ckpt_and_exit` failed.
fn fortran(arch: Arch) {
    if !require_tool("gfortran") {
        return;
    }
    let t = T::new("api-fortran", arch);
    let prog = t.compile_with("gfortran", "fapi", &["api.f90"], &[]);
    let gone = t.p("gone/f.ckpt");
    let mut reference = t.run("reference", &[s(&prog), "gone/f.ckpt".into()]);
    reference.expect_exit(0);
    assert_eq!(reference.stderr(), failure_line(&gone, true), "{}", reference.describe());
    let want = reference.stdout();
    assert!(
        want.contains("\nckpt returned 0\n")
            && want.contains("\ncalling ckpt_and_exit\nckpt_and_exit returned\n11 ")
            && want.ends_with("\ndone\n"),
        "{}",
        reference.describe()
    );

    let mut p = t.run("orig", &[s(&prog), "f.ckpt".into()]);
    p.expect_signal(SIGUSR2);
    assert_eq!(p.stderr(), "", "{}", p.describe());
    assert_text(&p.stdout(), up_to(&want, "calling ckpt_and_exit"), "output up to ckpt_and_exit");
    let img = t.p("f.ckpt");
    assert!(img.exists() && t.p("fapi.ckpt").exists(), "{}", p.describe());
    restart_prints(&t, &prog, &img, from_line(&want, "ckpt_and_exit returned"));
}

/// `rckpt compile cc -c` (no link) also finds `<rckpt.h>`.
fn header_without_link(arch: Arch) {
    let t = T::new("api-header", arch);
    let mut argv = vec![s(&product().rckpt), "compile".into(), "cc".into(), "-c".into()];
    argv.extend(arch.cflags().iter().map(|a| a.to_string()));
    argv.extend([format!("-I{}", fixtures_dir().display()), "-o".into(), t.ps("api.o"), s(fixtures_dir().join("api.c"))]);
    let o = t.run_tool(&argv);
    assert!(o.status.success() && t.p("api.o").exists(), "{}", String::from_utf8_lossy(&o.stderr));
}

arch_tests!(
    ckpt_continue,
    ckpt_fails,
    ckpt_and_exit,
    image_file_name,
    disabled_tstp,
    disabled_usr2,
    disabled_both,
    cxx,
    fortran,
    header_without_link
);

/// A program's own `ckpt` wins over the API's (they are weak); an API call
/// before `main` (from a constructor) only prints one line.
fn own_definition_and_early_call(arch: Arch) {
    let t = T::new("api-own", arch);
    let prog = t.compile("api_own", &["api_own.c"], &[]);
    let mut p = t.run("orig", &[s(&prog)]);
    p.expect_exit(0);
    assert_eq!(p.stdout(), "early ckpt_and_exit returned\nown ckpt 42\ndone\n", "{}", p.describe());
    assert_eq!(
        p.stderr(),
        "rckpt: ckpt_and_exit(): the checkpoint runtime has not started yet (called before main); nothing written\n",
        "{}",
        p.describe()
    );
    assert!(!t.p("api_own.ckpt").exists(), "{}", p.describe());
}

arch_tests!(own_definition_and_early_call);
