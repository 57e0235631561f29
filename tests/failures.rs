//! Failures, with their messages checked and nothing lost: checkpoints
//! that cannot be written (disk full, file size limit, permission denied,
//! threads), images the loader must refuse before restoring anything, and
//! malformed command-line flags.

#[macro_use]
mod common;

use common::*;
use std::path::{Path, PathBuf};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Wait until stderr holds `n` lines.
fn wait_stderr_lines(p: &mut Proc, n: usize) {
    p.wait_until(&format!("{n} lines on stderr"), move |_, e| e.matches('\n').count() >= n);
}

/// Assert the one-line message of a failed checkpoint.
#[track_caller]
fn assert_ckpt_failure(line: &str, img: &Path, errno_text: &str, after_tstp: bool) {
    let prefix = format!("rckpt: checkpoint to {} failed: ", img.display());
    let suffix = format!(": {errno_text}; the previous checkpoint is kept{}", if after_tstp { ", the program keeps running" } else { "" });
    assert!(
        line.starts_with(&prefix) && line.ends_with(&suffix),
        "checkpoint failure message:\n  got:      {line:?}\n  expected: {prefix:?} ... {suffix:?}"
    );
}

/// Phase 2 of the grow fixture: after SIGUSR2 and SIGTSTP failed, the
/// program must still be running and finish normally.
fn finish_grow(p: &mut Proc) {
    p.signal(SIGWINCH);
    p.expect_exit(0);
    let out = p.stdout();
    assert!(out.ends_with("small OK\nbig OK\ndone\n"), "the program did not finish normally:\n{}", p.describe());
}

/// Send SIGUSR2 then SIGTSTP to a program whose checkpoint cannot be
/// written; each must print one failure line, keep `img` as it was, leave
/// no `.tmp`, and the program keeps running.
fn two_failed_checkpoints(p: &mut Proc, img_seen: &Path, img_named: &Path, errno_text: &str) {
    let before = std::fs::read(img_seen).ok();
    let tmp = PathBuf::from(format!("{}.tmp", img_seen.display()));
    let base = p.stderr().lines().count();
    for (k, (sig, tstp)) in [(SIGUSR2, false), (SIGTSTP, true)].into_iter().enumerate() {
        p.signal(sig);
        wait_stderr_lines(p, base + k + 1);
        let err = p.stderr();
        let l = lines(&err);
        assert_ckpt_failure(l[base + k], img_named, errno_text, tstp);
        assert!(!tmp.exists(), "{} left behind after a failed checkpoint", tmp.display());
        assert_eq!(std::fs::read(img_seen).ok(), before, "the previous checkpoint changed after a failed one");
        assert!(p.status().is_none(), "the program died after a failed checkpoint:\n{}", p.describe());
    }
}

/// Disk full: a first checkpoint fits on a small tmpfs (in a private mount
/// namespace); after the program grows, the next ones do not.
#[test]
fn disk_full() {
    if !require_mount_ns() {
        return;
    }
    let t = T::new("diskfull", Arch::X86_64);
    let prog = t.compile("grow", &["grow.c"], &[]);
    let full = t.mkdir("full");
    let img = full.join("g.ckpt");
    let script =
        format!("mount -t tmpfs -o size=24m none '{}' && exec '{}' -_condor_ckpt '{}' 64", full.display(), prog.display(), img.display());
    let mut p = t.spawn("orig", &["unshare".into(), "-m".into(), "sh".into(), "-c".into(), script]);
    p.wait_ready();
    // The tmpfs is visible through the process's own root.
    let seen = PathBuf::from(format!("/proc/{}/root{}", p.pid, img.display()));
    p.signal(SIGUSR2);
    wait_file(&mut p, &seen);
    assert!(!img.exists(), "the tmpfs is not private to the namespace");
    let first = std::fs::read(&seen).unwrap();
    assert_eq!(p.stderr(), "", "{}", p.describe());
    p.signal(SIGWINCH);
    p.wait_stdout("grown 64 MiB\nready\n");
    two_failed_checkpoints(&mut p, &seen, &img, "No space left on device");
    assert!(std::fs::read(&seen).unwrap() == first, "the first checkpoint changed");
    finish_grow(&mut p);

    // The previous checkpoint is still good: restart it.
    let saved = t.p("first.ckpt");
    std::fs::write(&saved, &first).unwrap();
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &saved, Via::Loader, false));
    r.wait_stdout("grown 64 MiB\nready\n");
    finish_grow(&mut r);
    assert!(r.stdout().starts_with("restarted\n"), "{}", r.describe());
}

/// RLIMIT_FSIZE: "File too large", the previous image kept.
#[test]
fn file_size_limit() {
    let t = T::new("fsize", Arch::X86_64);
    let prog = t.compile("grow", &["grow.c"], &[]);
    let img = t.p("g.ckpt");
    std::fs::write(&img, b"previous image\n").unwrap();
    let mut p = t.spawn_with("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), "1".into()], &t.dir, |c| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: 2 << 20, rlim_max: 2 << 20 };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    p.wait_ready();
    two_failed_checkpoints(&mut p, &img, &img, "File too large");
    assert_eq!(std::fs::read(&img).unwrap(), b"previous image\n");
    p.signal(SIGWINCH);
    p.wait_stdout("grown 1 MiB\nready\n");
    finish_grow(&mut p);
}

/// A directory the (unprivileged) program cannot write: "Permission
/// denied", the previous image kept.
#[test]
fn permission_denied() {
    let t = T::new("eacces", Arch::X86_64);
    if is_root() && !require_tool("setpriv") {
        return;
    }
    let prog = t.compile("grow", &["grow.c"], &[]);
    let ro = t.mkdir("readonly");
    let img = ro.join("g.ckpt");
    std::fs::write(&img, b"previous image\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(if is_root() { 0o755 } else { 0o555 })).unwrap();
    t.open_up();
    let mut p = t.spawn("orig", &as_nobody(vec![s(&prog), "-_condor_ckpt".into(), s(&img), "1".into()]));
    p.wait_ready();
    two_failed_checkpoints(&mut p, &img, &img, "Permission denied");
    assert_eq!(std::fs::read(&img).unwrap(), b"previous image\n");
    p.signal(SIGWINCH);
    p.wait_stdout("grown 1 MiB\nready\n");
    finish_grow(&mut p);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A multi-threaded process: the checkpoint is refused with a message and
/// the program keeps running, for SIGTSTP (written in the handler) and
/// SIGUSR2 (written by a forked copy); once single-threaded again it works.
#[test]
fn threads_refused() {
    let t = T::new("threads", Arch::X86_64);
    let prog = t.compile("threads", &["threads.c"], &["-pthread"]);
    let img = t.p("th.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    let refused = format!(
        "rckpt: checkpoint to {} failed: the process has more than one thread \
         (rckpt checkpoints single-threaded processes only); the previous checkpoint is kept",
        img.display()
    );
    for (k, (sig, name, tail)) in [(SIGTSTP, "SIGTSTP", ", the program keeps running"), (SIGUSR2, "SIGUSR2", "")].into_iter().enumerate() {
        p.signal(sig);
        let i2 = img.clone();
        p.wait_until("a message on stderr or a checkpoint file", move |_, e| e.matches('\n').count() > k || i2.exists());
        assert!(!img.exists(), "{name}: a multi-threaded process was checkpointed to {}:\n{}", img.display(), p.describe());
        let err = p.stderr();
        let line = err.lines().nth(k).unwrap_or("");
        let end = format!("; the previous checkpoint is kept{tail}");
        assert!(
            line.starts_with(&refused) && line.ends_with(&end) && err.lines().count() == k + 1,
            "{name}: expected one line {refused:?} ... {end:?}:\n{}",
            p.describe()
        );
        assert!(!t.p("th.ckpt.tmp").exists());
        assert!(p.status().is_none(), "{name}: the program died:\n{}", p.describe());
    }
    p.signal(SIGWINCH);
    p.wait_stdout("single-threaded\nready\n");
    p.checkpoint_and_stop();
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert_text(&r.stdout(), "restarted\nsecond wait: restarted\ndone\n", "after the restart");
}

// ---------------------------------------------------------------------------
// Images the loader must refuse

/// A good image of the counter (checkpointed with SIGTSTP).
fn good_image(t: &T) -> (PathBuf, PathBuf) {
    let prog = t.compile("counter", &["counter.c"], &[]);
    let img = t.p("good.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), "20000".into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    t.touch(t.p("gate"));
    (prog, img)
}

/// Every way of restarting `bad` must refuse it with exactly
/// "rckpt-loader: BAD: MSG", exit status 1, and run nothing.
fn assert_refused(t: &T, prog: &Path, bad: &Path, msg: &str) {
    let want = format!("rckpt-loader: {}: {msg}\n", bad.display());
    let label = bad.file_name().unwrap().to_str().unwrap().to_string();
    for via in [Via::Loader, Via::Program] {
        let mut r = t.spawn(&format!("{label}-{via:?}"), &t.restart_argv(prog, bad, via, false));
        r.expect_exit(1);
        assert_eq!(r.stdout(), "", "a refused image ran:\n{}", r.describe());
        assert_text(&r.stderr(), &want, &format!("{via:?} restart of {label}"));
    }
    let mut c = t.spawn(&format!("{label}-check"), &[t.loader(), "--check".into(), s(bad)]);
    c.expect_exit(1);
    assert_text(&c.stderr(), &want, &format!("rckpt-loader --check {label}"));
}

fn write_bad(t: &T, name: &str, bytes: &[u8]) -> PathBuf {
    let p = t.p(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// One flipped byte in a segment's data.
fn corrupt_segment(arch: Arch) {
    let t = T::new("badseg", arch);
    let (prog, img) = good_image(&t);
    let mut b = std::fs::read(&img).unwrap();
    let segs = image::segments(&b);
    // The first segment holding data; flip its first non-zero byte.
    let (i, at) = image::first_data_byte(&b);
    b[at] ^= 0x5a;
    let bad = write_bad(&t, "badseg.ckpt", &b);
    assert_refused(&t, &prog, &bad, &format!("corrupt image: segment {i} (0x{:x}) fails its checksum", segs[i].vaddr));
    // The last segment with data too (often the stack).
    let mut b = std::fs::read(&img).unwrap();
    let (j, d) = segs.iter().enumerate().rev().find(|(_, d)| d.stored > 0).unwrap();
    let k = image::last_data_byte(&b, j);
    b[k] ^= 0x01;
    let bad = write_bad(&t, "badseg2.ckpt", &b);
    assert_refused(&t, &prog, &bad, &format!("corrupt image: segment {j} (0x{:x}) fails its checksum", d.vaddr));
}

/// A flipped byte deep inside a large image (8 GiB mapped, 16 MiB stored),
/// whose data the loader reads with two threads: still refused.
#[test]
fn corrupt_large_image() {
    use std::os::unix::fs::FileExt;
    let t = T::new("badlarge", Arch::X86_64);
    let prog = t.compile("sparse", &["sparse.c"], &[]);
    let img = t.p("large.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    // Only the head is read: the file's apparent size is 8 GiB.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let mut head = vec![0u8; 8 << 20];
    let n = f.read_at(&mut head, 0).unwrap();
    head.truncate(n);
    let segs = image::segments(&head);
    let (i, d) = segs.iter().enumerate().max_by_key(|(_, d)| d.len).unwrap();
    assert!(d.len >= 8 << 30, "no 8 GiB segment in the image");
    // sparse.c fills 8 MiB at 5 GiB into the mapping: flip a byte in it
    // (stored as a run; pages never touched are not in the file at all).
    let want = (5u64 << 30) + (3 << 20) + 17;
    let r = image::runs_of(&head, i).into_iter().find(|r| r.offset <= want && want < r.offset + r.len).expect("no run at 5 GiB + 3 MiB");
    let at = r.file_off + (want - r.offset);
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    assert_ne!(byte[0], 0, "expected data at 5 GiB + 3 MiB into the mapping");
    byte[0] ^= 0x20;
    f.write_all_at(&byte, at).unwrap();
    drop(f);
    assert_refused(&t, &prog, &img, &format!("corrupt image: segment {i} (0x{:x}) fails its checksum", d.vaddr));
}

/// 32- and 64-bit images where they cannot be restored: a 64-bit image by
/// the i386 loader and by a 32-bit program, a 32-bit image by a 64-bit
/// program and by a 64-bit loader installed without its i386 companion.
/// (`rckpt-loader` next to the i386 one takes both: the round trips.)
#[test]
fn cross_class_images() {
    if !Arch::I386.available() {
        return;
    }
    let t64 = T::new("cross64", Arch::X86_64);
    let (prog64, img64) = good_image(&t64);
    let t32 = T::new("cross32", Arch::I386);
    let (prog32, img32) = good_image(&t32);
    let refuse = |t: &T, label: &str, argv: Vec<String>, msg: String| {
        let mut r = t.spawn(label, &argv);
        r.expect_exit(1);
        assert_eq!(r.stdout(), "", "a refused image ran:\n{}", r.describe());
        assert_text(&r.stderr(), &format!("{msg}\n"), label);
    };
    let i386_loader = s(&Arch::I386.loader());
    refuse(
        &t64,
        "i386-loader",
        vec![i386_loader, s(&img64)],
        format!("rckpt-loader: {}: image is for x86_64 (64-bit); this loader restores i386 images", img64.display()),
    );
    refuse(
        &t64,
        "prog32",
        t64.restart_argv(&prog32, &img64, Via::Program, false),
        format!("rckpt-loader: {}: image is for x86_64 (64-bit); this loader restores i386 images", img64.display()),
    );
    refuse(
        &t32,
        "prog64",
        t32.restart_argv(&prog64, &img32, Via::Program, false),
        format!(
            "rckpt-loader: {}: image is for a 32-bit program; this program is x86_64: \
             restart it with its own program or with rckpt-loader IMAGE",
            img32.display()
        ),
    );
    let lonely = t32.p("bin/rckpt-loader");
    std::fs::create_dir_all(lonely.parent().unwrap()).unwrap();
    std::fs::copy(Arch::X86_64.loader(), &lonely).unwrap();
    refuse(
        &t32,
        "lonely",
        vec![s(&lonely), s(&img32)],
        format!(
            "rckpt-loader: {}: a 32-bit image needs the i386 loader, which is not installed next to this one \
             (build it with: cargo build --release --target i686-unknown-linux-gnu -p rckpt-loader)",
            img32.display()
        ),
    );
}

/// One flipped byte in the notes, or in the ELF header, without resealing.
fn corrupt_notes(arch: Arch) {
    let t = T::new("badnote", arch);
    let (prog, img) = good_image(&t);
    let orig = std::fs::read(&img).unwrap();
    let msg = "corrupt image: the headers and notes fail their checksum";
    let notes = image::notes(&orig);
    let (_, prstatus) = notes.iter().find(|(n, a)| n == b"CORE" && a.ty == 1).expect("no NT_PRSTATUS note");
    let mut b = orig.clone();
    b[prstatus.desc + prstatus.len / 2] ^= 0x10;
    assert_refused(&t, &prog, &write_bad(&t, "badnote.ckpt", &b), msg);
    let (_, segs) = notes.iter().find(|(n, a)| n == b"RCKPT" && a.ty == 0x5243_0002).expect("no NT_RCKPT_SEGS");
    let mut b = orig.clone();
    b[segs.desc + 33] ^= 0x01; // a segment checksum
    assert_refused(&t, &prog, &write_bad(&t, "badsegtable.ckpt", &b), msg);
    let mut b = orig.clone();
    b[18] = 183; // e_machine, not resealed
    assert_refused(&t, &prog, &write_bad(&t, "badehdr.ckpt", &b), msg);
}

/// Truncated images: inside the segment data, inside the notes, tiny.
fn truncated(arch: Arch) {
    let t = T::new("trunc", arch);
    let (prog, img) = good_image(&t);
    let orig = std::fs::read(&img).unwrap();
    let half = orig.len() / 2;
    let b = write_bad(&t, "half.ckpt", &orig[..half]);
    let segs = image::segments(&orig);
    // The head says how long the whole image is: a shorter file is refused
    // before any data is read.
    let _ = segs;
    assert_refused(&t, &prog, &b, &format!("truncated image: needs {} bytes, the file has {half}", orig.len()));
    let (off, len) = image::notes_area(&orig);
    let cut = off + len / 2;
    let b = write_bad(&t, "cutnotes.ckpt", &orig[..cut]);
    assert_refused(&t, &prog, &b, &format!("truncated image: needs {} bytes, the file has {cut}", off + len));
    assert_refused(&t, &prog, &write_bad(&t, "tiny.ckpt", &orig[..10]), "truncated image: only 10 bytes");
    assert_refused(&t, &prog, &write_bad(&t, "empty.ckpt", b""), "truncated image: only 0 bytes");
}

/// A valid (resealed) image for another architecture.
fn foreign_arch(arch: Arch) {
    let t = T::new("foreign", arch);
    let (prog, img) = good_image(&t);
    let mut b = std::fs::read(&img).unwrap();
    assert_eq!(u16::from_le_bytes([b[18], b[19]]), arch.elf_machine());
    b[18..20].copy_from_slice(&183u16.to_le_bytes());
    image::patch_header(&mut b, |h| h.machine = 183);
    let bits = if b[4] == 2 { 64 } else { 32 };
    let bad = write_bad(&t, "aarch64.ckpt", &b);
    assert_refused(&t, &prog, &bad, &format!("image is for aarch64 ({bits}-bit); this loader restores {} images", arch.name()));
}

#[cfg(target_arch = "x86_64")]
fn xcr0() -> u64 {
    #[target_feature(enable = "xsave")]
    unsafe fn get() -> u64 {
        core::arch::x86_64::_xgetbv(0)
    }
    if !std::arch::is_x86_feature_detected!("xsave") {
        return 0b11;
    }
    // SAFETY: the CPU supports XSAVE (checked above), so xgetbv(0) is valid.
    unsafe { get() }
}

/// A valid image whose FPU state needs a feature this CPU lacks.
fn missing_cpu_feature(arch: Arch) {
    let t = T::new("cpufeat", arch);
    let (prog, img) = good_image(&t);
    let have = xcr0();
    let names = [(17, "AMX-TILECFG"), (18, "AMX-TILEDATA"), (19, "APX"), (9, "PKRU"), (7, "AVX-512-Hi16_ZMM")];
    let Some(&(bit, name)) = names.iter().find(|(b, _)| have & (1u64 << b) == 0) else {
        skip("this CPU has every feature the test knows how to fake");
        return;
    };
    let mut b = std::fs::read(&img).unwrap();
    let h = image::header(&b);
    assert_eq!(h.xfeatures & !have, 0, "the good image already needs features this CPU lacks");
    image::patch_header(&mut b, |h| h.xfeatures |= 1 << bit);
    let bad = write_bad(&t, "needs-feature.ckpt", &b);
    assert_refused(&t, &prog, &bad, &format!("image needs CPU features this machine lacks: {name}"));
}

/// Files that are not images at all, an unsupported format version, a
/// missing file.
fn not_an_image(arch: Arch) {
    let t = T::new("notimage", arch);
    let (prog, img) = good_image(&t);
    let text = write_bad(
        &t,
        "text.ckpt",
        "this is not a checkpoint image, just some text long enough to hold an ELF header\n".repeat(4).as_bytes(),
    );
    assert_refused(&t, &prog, &text, "not a checkpoint image (not an ELF file)");
    assert_refused(&t, &prog, &prog, "not a checkpoint image (an ELF file, but not a core file)");
    let mut b = std::fs::read(&img).unwrap();
    image::patch_header(&mut b, |h| h.version = 99);
    let v = write_bad(&t, "v99.ckpt", &b);
    assert_refused(&t, &prog, &v, "image format version 99 is not supported (this rckpt reads version 3)");
    assert_refused(&t, &prog, &t.p("missing.ckpt"), "cannot open: No such file or directory");
}

/// A file the image had open for reading is gone: refused, naming it.
fn missing_open_file(arch: Arch) {
    let t = T::new("missingfile", arch);
    let prog = t.compile("files", &["files.c"], &[]);
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..3100 {
        a.push_str(&format!("in {i:05}\n"));
        b.push_str(&format!("line {i:05} of in2\n"));
    }
    std::fs::write(t.p("in.dat"), a).unwrap();
    std::fs::write(t.p("in2.dat"), b).unwrap();
    std::fs::write(t.p("app.dat"), "header\n").unwrap();
    let img = t.p("f.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), "3000".into(), "gate".into()]);
    p.wait_ready();
    p.checkpoint_and_stop();
    t.touch(t.p("gate"));
    std::fs::remove_file(t.p("in.dat")).unwrap();
    for via in [Via::Loader, Via::Program] {
        let mut r = t.spawn(&format!("restart-{via:?}"), &t.restart_argv(&prog, &img, via, false));
        r.expect_exit(1);
        assert_eq!(r.stdout(), "", "{}", r.describe());
        let err = r.stderr();
        let l = lines(&err);
        let in_dat = t.p("in.dat");
        assert!(
            l.len() == 1
                && l[0].starts_with(&format!("rckpt-loader: {}: cannot reopen fd ", img.display()))
                && l[0].ends_with(&format!(" ({}): No such file or directory", in_dat.display())),
            "expected one line \"rckpt-loader: IMG: cannot reopen fd N ({}): No such file or directory\":\n{}",
            in_dat.display(),
            r.describe()
        );
    }
}

arch_tests!(corrupt_segment, corrupt_notes, truncated, foreign_arch, missing_cpu_feature, not_an_image, missing_open_file);

// ---------------------------------------------------------------------------
// Flags

/// Malformed `-_condor_` flags: one line, exit status 2, main not run.
#[test]
fn bad_flags() {
    let t = T::new("badflags", Arch::X86_64);
    let prog = t.compile("args", &["args.c"], &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["-_condor_ckpt"], "rckpt: -_condor_ckpt needs a FILE argument"),
        (&["a", "-_condor_restart"], "rckpt: -_condor_restart needs a FILE argument"),
        (
            &["-_condor_warning", "FOO", "ON"],
            "rckpt: -_condor_warning: unknown kind 'FOO' (expected ALL, NOTICE, READWRITE, UNSUP or BADURL)",
        ),
        (&["-_condor_warning", "ALL", "MAYBE"], "rckpt: -_condor_warning: unknown mode 'MAYBE' (expected ON, OFF or ONCE)"),
        (&["-_condor_warning", "ALL"], "rckpt: -_condor_warning needs KIND and MODE arguments"),
        (&["-_condor_D_"], "rckpt: -_condor_D_: expected -_condor_D_<LEVEL>, e.g. -_condor_D_FULLDEBUG"),
        (&["-_condor_D_lower"], "rckpt: -_condor_D_lower: expected -_condor_D_<LEVEL>, e.g. -_condor_D_FULLDEBUG"),
        (&["x", "-_condor_bogus", "y"], "rckpt: unknown flag -_condor_bogus"),
        (&["-_condor_cmd_fd"], "rckpt: -_condor_cmd_fd needs an FD argument"),
        (&["-_condor_cmd_fd", "x3"], "rckpt: -_condor_cmd_fd: bad descriptor 'x3' (expected a number from 0 to 2147483647)"),
        (&["-_condor_cmd_file"], "rckpt: -_condor_cmd_file needs a FILE argument"),
    ];
    for (k, (args, msg)) in cases.iter().enumerate() {
        let mut argv = vec![s(&prog)];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut r = t.run(&format!("case{k}"), &argv);
        r.expect_exit(2);
        assert_eq!(r.stdout(), "", "main ran despite a bad flag:\n{}", r.describe());
        assert_text(&r.stderr(), &format!("{msg}\n"), &format!("message for {args:?}"));
    }
}

/// A checkpoint that cannot even be named does not kill the program either.
#[test]
fn checkpoint_into_missing_directory() {
    let t = T::new("nodir", Arch::X86_64);
    let prog = t.compile("grow", &["grow.c"], &[]);
    let img = t.p("no/such/dir/g.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), "1".into()]);
    p.wait_ready();
    two_failed_checkpoints(&mut p, &img, &img, "No such file or directory");
    p.signal(SIGWINCH);
    p.wait_stdout("grown 1 MiB\nready\n");
    finish_grow(&mut p);
}
