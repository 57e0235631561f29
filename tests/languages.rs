//! Other languages, compilers and ways of linking: C++ (exceptions, the
//! standard library), Fortran, clang, relinking existing objects.

#[macro_use]
mod common;

use common::*;
use std::path::Path;

const N: &str = "20000";

/// Run `argv + [N, gate]` uninterrupted, then again with a SIGTSTP after
/// "ready" and a restart; the two outputs must agree.
fn counter_like_roundtrip(t: &T, prog: &Path, via: Via) {
    let open = t.p("open-gate");
    t.touch(&open);
    let mut u = t.run("uninterrupted", &[s(prog), N.into(), s(&open)]);
    u.expect_exit(0);
    let want = u.stdout();
    assert!(want.contains("\nready\n") && want.lines().last().unwrap_or("").starts_with("done"), "{}", u.describe());

    let img = t.p("prog.ckpt");
    let gate = t.p("gate");
    let mut p = t.spawn("orig", &[s(prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let before = p.stdout();
    assert!(!before.contains("done"), "finished before the checkpoint:\n{}", p.describe());
    t.touch(&gate);
    let mut r = t.spawn("restart", &t.restart_argv(prog, &img, via, false));
    r.expect_exit(0);
    assert_text(&format!("{before}{}", r.stdout()), &want, "original + restarted output");
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

const CXX_AFTER: &str = "after: caught boom at depth 4
after: caught std::out_of_range
vector<string> and map OK
string length 290
grown to 100000
done
destructor of global object
";

/// C++: iostream, std::string/vector/map, an exception thrown and caught
/// after the restart, static destructors at exit.
fn cxx(arch: Arch) {
    if !require_tool("g++") {
        return;
    }
    let t = T::new("cxx", arch);
    let prog = t.compile_with("g++", "cxx", &["cxx.cpp"], &[]);
    fixture_roundtrip(&t, &prog, "before: caught boom at depth 4\nready\n", CXX_AFTER, &[Via::Program]);
}

/// Fortran (gfortran): a counter over a REAL array.
fn fortran(arch: Arch) {
    if !require_tool("gfortran") {
        return;
    }
    let t = T::new("fortran", arch);
    let prog = t.compile_with("gfortran", "fcounter", &["fcounter.f90"], &[]);
    counter_like_roundtrip(&t, &prog, Via::Loader);
}

/// The counter compiled by clang.
fn clang(arch: Arch) {
    if !require_tool("clang") {
        return;
    }
    let t = T::new("clang", arch);
    let prog = t.compile_with("clang", "counter", &["counter.c"], &[]);
    counter_like_roundtrip(&t, &prog, Via::Program);
}

/// `cc -c a.c b.c` then `rckpt compile cc -o prog a.o b.o`: nothing is
/// recompiled, the objects are relinked with the runtime.
fn relink_objects(arch: Arch) {
    let t = T::new("relink", arch);
    let fx = fixtures_dir();
    let mut cc = vec!["cc".to_string(), "-c".into(), "-O2".into(), format!("-I{}", fx.display())];
    cc.extend(arch.cflags().iter().map(|x| x.to_string()));
    cc.push(s(fx.join("nested_main.c")));
    cc.push(s(fx.join("nested_work.c")));
    let o = t.run_tool(&cc);
    assert!(o.status.success(), "cc -c failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(t.p("nested_main.o").exists() && t.p("nested_work.o").exists());
    // `rckpt compile` of a command that does not link runs it unchanged.
    let o = t.run_tool(&[
        s(&product().rckpt),
        "compile".into(),
        "cc".into(),
        "-c".into(),
        "-O2".into(),
        format!("-I{}", fx.display()),
        "-o".into(),
        t.ps("again.o"),
        s(fx.join("nested_work.c")),
    ]);
    assert!(o.status.success() && t.p("again.o").exists(), "rckpt compile cc -c failed: {}", String::from_utf8_lossy(&o.stderr));

    let prog = t.compile("nested", &["nested_main.o", "nested_work.o"], &[]);
    let img = t.p("n.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "x".into(), "-_condor_ckpt".into(), s(&img), "y".into()]);
    p.wait_ready();
    p.checkpoint_and_stop();
    assert_eq!(p.stdout(), "main: argc 3\ninner_work: depth 4\nready\n", "{}", p.describe());
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(0);
    assert_text(
        &r.stdout(),
        "restarted\ninner_work: local 28, restarted\nouter_work: inner_work returned 29\nmain: outer_work returned 58\ndone\n",
        "relinked program after the restart",
    );
}

arch_tests!(cxx, fortran, clang, relink_objects);
