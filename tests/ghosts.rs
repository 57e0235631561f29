//! Ghost files: files a program deleted while it kept them open
//! (`tmpfile()`, an unlinked scratch file, an unlinked file mapped shared, a
//! memfd) are saved in the image and recreated on restart; checkpoints that
//! no restart could use fail, keeping the previous image.
//!
//! The fixture (`ghost.c`) prints the state of every file in two phases;
//! runs interrupted by checkpoints and restarts must print what an
//! uninterrupted run prints.

#[macro_use]
mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The fixture and the directory its scratch files go to.
fn setup(t: &T) -> (PathBuf, PathBuf) {
    let prog = t.compile("ghost", &["ghost.c"], &[]);
    let dir = t.mkdir("scratch");
    (prog, dir)
}

fn readies(o: &str) -> usize {
    o.lines().filter(|l| *l == "ready").count()
}

fn wait_readies(p: &mut Proc, n: usize) {
    p.wait_until(&format!("{n} \"ready\" lines"), move |o, _| readies(o) >= n);
}

/// An uninterrupted run (told to go on twice): the reference output.
fn control(t: &T, argv: &[String]) -> String {
    let mut c = t.spawn("control", argv);
    wait_readies(&mut c, 1);
    c.signal(SIGWINCH);
    wait_readies(&mut c, 2);
    c.signal(SIGWINCH);
    c.expect_exit(0);
    let out = c.stdout();
    assert!(out.contains("set up\nready\ngo\nphase 1\n") && out.contains("\nready\ngo\nphase 2\n"), "{}", c.describe());
    assert!(out.ends_with("done\n") && out.contains("memfd: 'memfd phase 1'"), "{}", c.describe());
    out
}

/// `want` with its `go` lines (the control's) up to the `n`th replaced by
/// `restarted`, from the `n`th one on.
fn restarted_from(want: &str, n: usize) -> String {
    let mut k = 0;
    let mut out = String::new();
    let mut started = false;
    for l in want.lines() {
        if l == "go" {
            k += 1;
            if k == n {
                started = true;
                out.push_str("restarted\n");
                continue;
            }
        }
        if started {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn ghost_argv(prog: &Path, img: &Path, dir: &Path) -> Vec<String> {
    vec![s(prog), "-_condor_ckpt".into(), s(img), s(dir)]
}

/// SIGTSTP, restart, SIGTSTP the restarted process, restart again: the
/// pieces together are the uninterrupted output.
fn tstp_restarts(arch: Arch) {
    let t = T::new("ghost-tstp", arch);
    let (prog, dir) = setup(&t);
    let want = control(&t, &[s(&prog), s(&dir)]);
    let img = t.p("g.ckpt");
    let mut p = t.spawn("orig", &ghost_argv(&prog, &img, &dir));
    wait_readies(&mut p, 1);
    p.checkpoint_and_stop();
    assert_text(&p.stdout(), "set up\nready\n", "up to the first checkpoint");

    let mut r1 = t.spawn("restart1", &t.restart_argv(&prog, &img, Via::Program, false));
    wait_readies(&mut r1, 1);
    r1.checkpoint_and_stop();
    let mut r2 = t.spawn("restart2", &t.restart_argv(&prog, &img, Via::Loader, false));
    r2.expect_exit(0);
    let got = format!("{}{}{}", p.stdout(), r1.stdout(), r2.stdout());
    let expect = want.replace("\ngo\n", "\nrestarted\n");
    assert_text(&got, &expect, "original + two restarts");
    for r in [&p, &r1, &r2] {
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

/// SIGUSR2: the program runs on and changes every file; a restart of the
/// image starts from the files as they were at the checkpoint.
fn usr2_checkpoint_with(t: &T, wrap: Wrap, unprivileged: bool) {
    let (prog, dir) = setup(t);
    if unprivileged {
        t.open_up();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let want = control(t, &wrap(t.arch, vec![s(&prog), s(&dir)]));
    let img = t.p("g.ckpt");
    let mut p = t.spawn("orig", &wrap(t.arch, ghost_argv(&prog, &img, &dir)));
    wait_readies(&mut p, 1);
    p.signal(SIGUSR2);
    wait_file(&mut p, &img);
    p.signal(SIGWINCH);
    wait_readies(&mut p, 2);
    p.signal(SIGWINCH);
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "a run with a SIGUSR2 checkpoint");
    assert_eq!(p.stderr(), "", "{}", p.describe());

    for via in [Via::Loader, Via::Program] {
        let mut r = t.spawn(&format!("restart-{via:?}"), &wrap(t.arch, t.restart_argv(&prog, &img, via, false)));
        wait_readies(&mut r, 1);
        r.signal(SIGWINCH);
        r.expect_exit(0);
        assert_text(&r.stdout(), &restarted_from(&want, 1), &format!("restart of the SIGUSR2 image ({via:?})"));
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

fn usr2_checkpoint(arch: Arch) {
    usr2_checkpoint_with(&T::new("ghost-usr2", arch), plain, false);
}

arch_tests!(tstp_restarts, usr2_checkpoint);

/// The same as the unprivileged user.
#[test]
fn usr2_checkpoint_as_nobody() {
    if is_root() && !require_tool("setpriv") {
        return;
    }
    usr2_checkpoint_with(&T::new("ghost-nobody", Arch::X86_64), nobody, true);
}

/// Where a restarted process's fd `fd` leads.
fn fd_target(p: &Proc, fd: i32) -> String {
    s(std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).unwrap())
}

/// A relocatable restart from another directory recreates the deleted
/// files in the new place; with their directory gone, as memfds.
#[test]
fn relocatable() {
    let t = T::new("ghost-reloc", Arch::X86_64);
    let prog = t.compile("ghost", &["ghost.c"], &[]);
    let a = t.mkdir("a");
    std::fs::create_dir(a.join("scratch")).unwrap();
    let b = t.mkdir("b");
    std::fs::create_dir(b.join("scratch")).unwrap();
    let want = {
        let mut c = t.spawn_in("control", &[s(&prog), "scratch".into()], &a);
        wait_readies(&mut c, 1);
        c.signal(SIGWINCH);
        wait_readies(&mut c, 2);
        c.signal(SIGWINCH);
        c.expect_exit(0);
        c.stdout()
    };
    let img = t.p("g.ckpt");
    let mut p = t.spawn_in("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), "scratch".into()], &a);
    wait_readies(&mut p, 1);
    p.checkpoint_and_stop();

    let mut r = t.spawn_in("restart-reloc", &t.restart_argv(&prog, &img, Via::Program, true), &b);
    wait_readies(&mut r, 1);
    // fd 3 is the tmpfile, 4 the scratch file, 5 the mapped one.
    for fd in [4, 5] {
        let to = fd_target(&r, fd);
        assert!(to.starts_with(&format!("{}/scratch/#", b.display())) && to.ends_with(" (deleted)"), "fd {fd} leads to {to}");
    }
    r.signal(SIGWINCH);
    r.expect_exit(0);
    assert_text(&r.stdout(), &restarted_from(&want, 1), "relocatable restart");
    assert_eq!(r.stderr(), "", "{}", r.describe());

    // The directory is gone: memfds instead.
    std::fs::remove_dir(a.join("scratch")).unwrap();
    let mut r = t.spawn_in("restart-nodir", &t.restart_argv(&prog, &img, Via::Loader, false), &b);
    wait_readies(&mut r, 1);
    assert_eq!(fd_target(&r, 4), "/memfd:scratch.dat (deleted)");
    r.signal(SIGWINCH);
    r.expect_exit(0);
    assert_text(&r.stdout(), &restarted_from(&want, 1), "restart with the scratch directory gone");
}

/// Wait until stderr holds `n` lines.
fn wait_stderr_lines(p: &mut Proc, n: usize) {
    p.wait_until(&format!("{n} lines on stderr"), move |_, e| e.matches('\n').count() >= n);
}

/// SIGUSR2 then SIGTSTP must each fail with `msg` (plus the ending for
/// SIGTSTP), leave `img` byte for byte as `good`, leave no `.tmp`, and the
/// program runs on.
fn two_failures(p: &mut Proc, img: &Path, good: &[u8], msg: &str) {
    let base = p.stderr().lines().count();
    for (k, (sig, end)) in [(SIGUSR2, ""), (SIGTSTP, ", the program keeps running")].into_iter().enumerate() {
        // A SIGUSR2 sent while the last writer's exit notice is pending
        // would merge with it (README: Signals): wait for the reaping.
        wait_writer_reaped(p, "before the next checkpoint signal");
        p.signal(sig);
        wait_stderr_lines(p, base + k + 1);
        let err = p.stderr();
        let line = err.lines().nth(base + k).unwrap_or("");
        let expect = format!("rckpt: checkpoint to {} failed: {msg}; the previous checkpoint is kept{end}", img.display());
        assert_eq!(line, expect, "failure message:\n{}", p.describe());
        assert!(!PathBuf::from(format!("{}.tmp", img.display())).exists(), ".tmp left behind");
        assert!(std::fs::read(img).unwrap() == good, "the previous checkpoint changed after a failed one");
        assert!(p.status().is_none(), "the program died after a failed checkpoint:\n{}", p.describe());
    }
}

/// A deleted file over `-_condor_ghost_limit`: the checkpoint fails naming
/// it, the previous image stays good; a restart keeps the image's limit
/// unless the restart command gives another.
#[test]
fn ghost_limit() {
    let t = T::new("ghost-limit", Arch::X86_64);
    let (prog, dir) = setup(&t);
    let want = control(&t, &[s(&prog), s(&dir)]);
    let img = t.p("g.ckpt");
    let mut argv = ghost_argv(&prog, &img, &dir);
    argv.extend(["-_condor_ghost_limit".to_string(), "1M".to_string()]);
    let mut p = t.spawn("orig", &argv);
    wait_readies(&mut p, 1);
    p.signal(SIGUSR2);
    wait_file(&mut p, &img);
    let good = std::fs::read(&img).unwrap();
    p.signal(SIGWINCH);
    wait_readies(&mut p, 2); // the scratch file is 3 MiB + 17 bytes now
    let msg = format!(
        "fd 4 ({}/scratch.dat) is a deleted file of 3145745 bytes, more than the limit of 1048576 bytes \
         for saving deleted files (raise it with -_condor_ghost_limit SIZE)",
        dir.display()
    );
    two_failures(&mut p, &img, &good, &msg);
    p.signal(SIGWINCH);
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "the run whose checkpoints failed");

    // The previous image restarts, with the limit it had. (A recreated
    // deleted file has a new name: O_TMPFILE files are named by inode.)
    let mut r = t.spawn("restart-same-limit", &t.restart_argv(&prog, &img, Via::Loader, false));
    wait_readies(&mut r, 1);
    let now = fd_target(&r, 4);
    let now = now.strip_suffix(" (deleted)").unwrap();
    assert!(now.starts_with(&format!("{}/#", dir.display())), "{now}");
    let msg = msg.replace(&format!("{}/scratch.dat", dir.display()), now);
    two_failures(&mut r, &img, &good, &msg);
    r.signal(SIGWINCH);
    r.expect_exit(0);
    assert_text(&r.stdout(), &restarted_from(&want, 1), "restart of the previous image");

    // A restart with a larger limit checkpoints; through both restart paths.
    for (via, flag) in [(Via::Program, "-_condor_ghost_limit"), (Via::Loader, "--ghost-limit")] {
        std::fs::write(&img, &good).unwrap();
        let mut argv = t.restart_argv(&prog, &img, via, false);
        argv.insert(1, "8M".into());
        argv.insert(1, flag.into());
        let mut r = t.spawn(&format!("restart-8M-{via:?}"), &argv);
        wait_readies(&mut r, 1);
        r.checkpoint_and_stop();
        assert_eq!(r.stderr(), "", "{}", r.describe());
        let mut r2 = t.spawn(&format!("restart-after-8M-{via:?}"), &t.restart_argv(&prog, &img, Via::Loader, false));
        r2.expect_exit(0);
        assert_text(
            &format!("{}{}", r.stdout(), r2.stdout()),
            &restarted_from(&want, 1).replacen("\ngo\n", "\nrestarted\n", 1),
            "restarts with a larger limit",
        );
    }
}

/// An fd whose path now names another file (the file was replaced by a
/// rename; a hard link keeps the old one alive, so it is not a ghost):
/// the checkpoint fails naming the fd, the previous image stays good.
#[test]
fn stale_path() {
    let t = T::new("ghost-stale", Arch::X86_64);
    let (prog, dir) = setup(&t);
    let keep = t.p("keep.txt");
    std::fs::write(&keep, "first version\n").unwrap();
    std::fs::hard_link(&keep, t.p("keep.link")).unwrap();
    let want = control(&t, &[s(&prog), s(&dir), s(&keep)]);
    assert!(want.starts_with("keep: first version\n"), "{want}");
    let img = t.p("g.ckpt");
    let mut argv = ghost_argv(&prog, &img, &dir);
    argv.push(s(&keep));
    let mut p = t.spawn("orig", &argv);
    wait_readies(&mut p, 1);
    p.signal(SIGUSR2);
    wait_file(&mut p, &img);
    let good = std::fs::read(&img).unwrap();
    std::fs::write(t.p("new.txt"), "second version\n").unwrap();
    std::fs::rename(t.p("new.txt"), &keep).unwrap();
    let msg = format!("fd 3 ({} (deleted)): that name no longer leads to the open file", keep.display());
    two_failures(&mut p, &img, &good, &msg);
    p.signal(SIGWINCH);
    wait_readies(&mut p, 2);
    p.signal(SIGWINCH);
    p.expect_exit(0);
    assert_text(&p.stdout(), &want, "the run whose checkpoints failed");

    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    wait_readies(&mut r, 1);
    r.signal(SIGWINCH);
    r.expect_exit(0);
    assert_text(&r.stdout(), &restarted_from(&want, 1), "restart of the previous image");
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

/// `rckpt info` lists the ghosts and verifies them; a flipped byte in a
/// ghost's data is reported by info and refused by the loader.
#[test]
fn info_shows_ghosts() {
    let t = T::new("ghost-info", Arch::X86_64);
    let (prog, dir) = setup(&t);
    let img = t.p("g.ckpt");
    let mut p = t.spawn("orig", &ghost_argv(&prog, &img, &dir));
    wait_readies(&mut p, 1);
    p.checkpoint_and_stop();
    let o = t.run_tool(&[s(&product().rckpt), "info".into(), "--json".into(), s(&img)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = v["ghost_files"].as_array().expect("no ghost_files");
    let row = |i: usize| (g[i]["path"].as_str().unwrap().to_string(), g[i]["size"].as_u64().unwrap(), g[i]["stored"].as_u64().unwrap());
    assert_eq!(g.len(), 4, "{g:?}");
    // Stored data is whole pages (runs); holes are not stored.
    assert!(row(0).0.contains("/#") && row(0).1 == 7 && row(0).2 == 4096, "tmpfile: {:?}", row(0));
    assert_eq!(row(1), (format!("{}/scratch.dat", dir.display()), 524299, 4 * 4096));
    assert_eq!(row(2), (format!("{}/mapped.dat", dir.display()), 8192, 8192));
    assert_eq!(row(3), ("/memfd:ghostmem".to_string(), 113, 4096));
    assert_eq!(g[3]["memfd"], true);
    let fds = v["open_files"].as_array().unwrap();
    for fd in 3..=6 {
        let f = fds.iter().find(|f| f["fd"] == fd).unwrap_or_else(|| panic!("no fd {fd}"));
        assert_eq!((f["kind"].as_str(), f["restored"].as_bool(), f["ghost"].as_u64()), (Some("ghost"), Some(true), Some(fd - 3)));
    }
    assert_eq!(v["integrity"], "ok");
    assert_eq!(v["format_version"], 3);
    let o = t.run_tool(&[s(&product().rckpt), "info".into(), s(&img)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("deleted files (saved in the image") && text.contains("/memfd:ghostmem (memfd)"), "{text}");

    // Flip a byte of the scratch file's saved data.
    let mut b = std::fs::read(&img).unwrap();
    let nseg = image::segments(&b).len();
    let r = image::runs_of(&b, nseg + 1)[0];
    b[r.file_off as usize + 5] ^= 0x40;
    let bad = t.p("bad.ckpt");
    std::fs::write(&bad, &b).unwrap();
    let o = t.run_tool(&[s(&product().rckpt), "info".into(), "--json".into(), s(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["integrity"], "corrupt image: saved deleted file 1 fails its checksum");
    let mut r = t.spawn("restart-bad", &t.restart_argv(&prog, &bad, Via::Loader, false));
    r.expect_exit(1);
    assert_eq!(r.stdout(), "");
    // The same verdict, in the same words, as rckpt info's.
    assert_text(
        &r.stderr(),
        &format!("rckpt-loader: {}: corrupt image: saved deleted file 1 fails its checksum\n", bad.display()),
        "loader on a corrupt ghost",
    );
}
