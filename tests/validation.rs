//! Images that lie. A seal only proves that the headers and notes are what
//! some writer wrote; these images are resealed after the lie, so only the
//! reader's checks of what the notes *say* can catch them. Every one must be
//! refused with one line by every reader, before anything is restored:
//! `rckpt info`, `rckpt-loader --check`, `rckpt-loader IMAGE` and
//! `prog -_condor_restart IMAGE` give the same verdict and the same reason.

#[macro_use]
mod common;

use common::mutate::{Layout, Mutant, Mutation, SegField};
use common::*;
use rckpt_rt_core::format::{seg_kind, ImageHeader, SegDesc};
use std::path::{Path, PathBuf};

/// A relinked counter and a good SIGTSTP image of it (its bytes too).
fn good(t: &T) -> (PathBuf, Vec<u8>) {
    let prog = t.compile("counter", &["counter.c"], &[]);
    let img = t.p("good.ckpt");
    let mut p = t.spawn("orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), t.ps("gate")]);
    p.wait_ready();
    p.checkpoint_and_stop();
    t.touch(t.p("gate"));
    let b = std::fs::read(&img).unwrap();
    (prog, b)
}

/// Write `bytes` as `name` and check that every reader refuses it with
/// `msg`: the loader and the program's restart (exit 1, nothing run),
/// `--check` (exit 1), and `rckpt info` (exit 1; the reason on stderr, or
/// as the integrity line when only segment data is wrong).
fn refused(t: &T, prog: &Path, name: &str, bytes: &[u8], msg: &str) {
    let bad = t.p(name);
    std::fs::write(&bad, bytes).unwrap();
    let want = format!("rckpt-loader: {}: {msg}\n", bad.display());
    for via in [Via::Loader, Via::Program] {
        let mut r = t.spawn(&format!("{name}-{via:?}"), &t.restart_argv(prog, &bad, via, false));
        r.expect_exit(1);
        assert_eq!(r.stdout(), "", "a refused image ran:\n{}", r.describe());
        assert_text(&r.stderr(), &want, &format!("{via:?} restart of {name}"));
    }
    let mut c = t.spawn(&format!("{name}-check"), &[t.loader(), "--check".into(), s(&bad)]);
    c.expect_exit(1);
    assert_text(&c.stderr(), &want, &format!("rckpt-loader --check {name}"));
    let mut i = t.spawn(&format!("{name}-info"), &[s(&product().rckpt), "info".into(), s(&bad)]);
    i.expect_exit(1);
    let parse_msg = format!("rckpt: {}: {msg}\n", bad.display());
    let data_msg = format!("\n  integrity    {msg}\n");
    assert!(i.stderr() == parse_msg || (i.stderr().is_empty() && i.stdout().contains(&data_msg)), "rckpt info {name}:\n{}", i.describe());
}

// ---------------------------------------------------------------------------
// Editing images

fn is64(b: &[u8]) -> bool {
    b[4] == 2
}

fn phoff(b: &[u8]) -> usize {
    if is64(b) {
        u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize
    } else {
        u32::from_le_bytes(b[28..32].try_into().unwrap()) as usize
    }
}

/// Set field `k` of program header `i` (0 offset, 1 vaddr, 2 filesz, 3
/// memsz) in the image's own word size.
fn set_phdr(b: &mut [u8], i: usize, k: usize, v: u64) {
    let (size, offs) = if is64(b) { (56, [8, 16, 32, 40]) } else { (32, [4, 8, 16, 20]) };
    let at = phoff(b) + i * size + offs[k];
    if is64(b) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    } else {
        b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
    }
}

/// Change segment `i` in the segment table and in its program headers
/// alike (so only the checks of what they say can object), and reseal.
fn set_seg(b: &mut [u8], i: usize, f: impl FnOnce(&mut SegDesc)) {
    let mut m = Mutant::new(Mutation::FlipHeadBit { at: 0, bit: 0 }, true);
    let lay = Layout::of(b);
    let old = lay.segs[i];
    let mut d = old;
    f(&mut d);
    // One field at a time, through the fuzz harness's editor, which moves
    // the segment's PT_LOADs with it.
    let changes = [
        (SegField::Vaddr, d.vaddr, old.vaddr),
        (SegField::Len, d.len, old.len),
        (SegField::Prot, d.prot as u64, old.prot as u64),
        (SegField::Kind, d.kind as u64, old.kind as u64),
        (SegField::Stored, d.stored, old.stored),
    ];
    for (field, new, was) in changes {
        if new != was {
            m.m = Mutation::Seg { seg: i, field, value: new, phdr: true, resum: false };
            let out = m.apply(b, &Layout::of(b));
            let n = b.len();
            b.copy_from_slice(&out[..n]);
        }
    }
    image::reseal(b);
}

fn phdr_filesz(b: &[u8], i: usize) -> u64 {
    let lay = Layout::of(b);
    let at = lay.phdr_at(lay.first_piece[i]);
    if is64(b) {
        u64::from_le_bytes(b[at + 32..at + 40].try_into().unwrap())
    } else {
        u32::from_le_bytes(b[at + 16..at + 20].try_into().unwrap()) as u64
    }
}

fn edit(orig: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = orig.to_vec();
    f(&mut b);
    b
}

fn header_lie(orig: &[u8], f: impl FnOnce(&mut ImageHeader)) -> Vec<u8> {
    edit(orig, |b| image::patch_header(b, f))
}

fn segs(b: &[u8]) -> Vec<SegDesc> {
    image::segments(b)
}

/// Index of the first segment matching `f`.
fn seg_where(b: &[u8], f: impl Fn(&SegDesc) -> bool) -> usize {
    segs(b).iter().position(f).expect("no such segment in the image")
}

// ---------------------------------------------------------------------------
// The lies

/// Offsets and sizes near the top of their type: checked arithmetic, a
/// clean refusal, never a panic (SIGABRT) or "internal error".
fn overflowing_sizes(arch: Arch) {
    let t = T::new("overflow", arch);
    let (prog, orig) = good(&t);
    let (too_far, far) = if is64(&orig) {
        ("corrupt image: note area offset".to_string(), u64::MAX - 10)
    } else {
        (
            format!("corrupt image: headers and notes of {} bytes (at most 8388608)", 0xffff_fff5u64 + image::notes_area(&orig).1 as u64),
            0xffff_fff5,
        )
    };
    refused(&t, &prog, "note-offset.ckpt", &edit(&orig, |b| set_phdr(b, 0, 0, far)), &too_far);
    let huge_len = if is64(&orig) { "corrupt image: note area offset".to_string() } else { too_far_len(&orig) };
    refused(&t, &prog, "note-size.ckpt", &edit(&orig, |b| set_phdr(b, 0, 2, far)), &huge_len);
    // A note name size near 2^32 in the first note (the walk stops there).
    let (off, _) = image::notes_area(&orig);
    let b = edit(&orig, |b| b[off..off + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes()));
    refused(&t, &prog, "namesz.ckpt", &b, "corrupt image: note table");
    // Program headers far out.
    let b = edit(&orig, |b| {
        if is64(b) {
            b[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes())
        } else {
            b[28..32].copy_from_slice(&0xffff_fff0u32.to_le_bytes())
        }
    });
    let msg = if is64(&orig) {
        "corrupt image: program header offset".to_string()
    } else {
        format!(
            "corrupt image: headers and notes of {} bytes (at most 8388608)",
            0xffff_fff0u64 + 32 * u16::from_le_bytes([orig[44], orig[45]]) as u64
        )
    };
    refused(&t, &prog, "phoff.ckpt", &b, &msg);
}

fn too_far_len(orig: &[u8]) -> String {
    let (off, _) = image::notes_area(orig);
    format!("corrupt image: headers and notes of {} bytes (at most 8388608)", off as u64 + 0xffff_fff5)
}

/// The two readers used to disagree on these: a byte of the stored vDSO
/// copy, and a segment that claims to map a file the image does not name.
fn readers_agree(arch: Arch) {
    let t = T::new("agree", arch);
    let (prog, orig) = good(&t);
    let v = seg_where(&orig, |d| d.kind == seg_kind::VDSO && d.stored > 0);
    let d = segs(&orig)[v];
    let r = image::runs_of(&orig, v)[0];
    let b = edit(&orig, |b| b[r.file_off as usize + 100] ^= 0x20);
    refused(&t, &prog, "vdso-byte.ckpt", &b, &format!("corrupt image: segment {v} (0x{:x}) fails its checksum", d.vaddr));

    let a = seg_where(&orig, |d| d.kind == seg_kind::ANON && d.stored > 0);
    let b = edit(&orig, |b| set_seg(b, a, |d| d.kind = seg_kind::SHARED_FILE));
    refused(
        &t,
        &prog,
        "shfile-data.ckpt",
        &b,
        &format!("corrupt image: segment {a} (0x{:x}) maps a file but has data in the image", segs(&orig)[a].vaddr),
    );
    if let Some(g) = segs(&orig).iter().enumerate().position(|(i, d)| d.kind == seg_kind::ANON && phdr_filesz(&orig, i + 1) == 0) {
        let b = edit(&orig, |b| set_seg(b, g, |d| d.kind = seg_kind::SHARED_FILE));
        refused(&t, &prog, "shfile-nofile.ckpt", &b, "corrupt image: a shared file mapping without its file");
    }
}

/// Segments where no process could have had them.
fn impossible_segments(arch: Arch) {
    let t = T::new("segs", arch);
    let (prog, orig) = good(&t);
    let all = segs(&orig);
    let last = all.len() - 1;
    let b = edit(&orig, |b| set_seg(b, 1, |d| d.vaddr = all[0].vaddr));
    refused(&t, &prog, "overlap.ckpt", &b, &format!("corrupt image: segment 1 (0x{:x}) overlaps the segment before it", all[0].vaddr));
    let b = edit(&orig, |b| set_seg(b, 0, |d| d.vaddr = 0));
    refused(&t, &prog, "zero.ckpt", &b, "corrupt image: segment 0 (0x0) lies below the lowest address a process can map");
    let kernel = if is64(&orig) { 0xffff_8000_0000_0000u64 } else { 0xffff_f000 };
    let b = edit(&orig, |b| set_seg(b, last, |d| d.vaddr = kernel));
    refused(&t, &prog, "kernel.ckpt", &b, &format!("corrupt image: segment {last} (0x{kernel:x}) lies outside user address space"));
    let b = edit(&orig, |b| set_seg(b, 0, |d| d.prot |= 0x10));
    refused(&t, &prog, "prot.ckpt", &b, &format!("corrupt image: segment 0 (0x{:x}) has unknown protection bits", all[0].vaddr));
    let b = edit(&orig, |b| set_seg(b, 0, |d| d.kind = 77));
    refused(&t, &prog, "kind.ckpt", &b, &format!("corrupt image: segment 0 (0x{:x}) has an unknown kind", all[0].vaddr));
    // A run's data claimed at another place in the file (program header
    // moved to match): the run table no longer runs back to back.
    let with: Vec<usize> = (0..all.len()).filter(|&i| all[i].nrun > 0).collect();
    let j = with[1];
    let at = image::runs(&orig)[all[j].first_run as usize].file_off;
    let b = edit(&orig, |b| {
        let lay = Layout::of(b);
        let out = Mutant::new(Mutation::Seg { seg: j, field: SegField::FileOff, value: at - 4096, phdr: true, resum: false }, true)
            .apply(b, &lay);
        let n = b.len();
        b.copy_from_slice(&out[..n]);
        image::reseal(b);
    });
    refused(&t, &prog, "data-overlap.ckpt", &b, "corrupt image: run table");
}

/// The addresses the restore writes to or jumps through, moved out of
/// stored segments that could hold them.
fn restore_addresses(arch: Arch) {
    let t = T::new("addrs", arch);
    let (prog, orig) = good(&t);
    let h = image::header(&orig);
    let b = header_lie(&orig, |h| h.uc_addr = 0x100);
    refused(&t, &prog, "uc.ckpt", &b, "corrupt image: the signal frame is not in a stored writable segment");
    let b = header_lie(&orig, |h| h.uc_addr = h.tail_addr);
    refused(&t, &prog, "uc-text.ckpt", &b, "corrupt image: the signal frame is not in a stored writable segment");
    let b = header_lie(&orig, |h| h.tail_addr = h.uc_addr);
    refused(&t, &prog, "tail.ckpt", &b, "corrupt image: the restore code is not in a stored executable segment");
    let b = header_lie(&orig, |h| h.patch_addr = h.tail_addr);
    refused(&t, &prog, "patch.ckpt", &b, "corrupt image: the restart block is not in a stored writable segment");
    let b = header_lie(&orig, |h| h.patch_addr = u64::MAX - 16);
    refused(&t, &prog, "patch-wrap.ckpt", &b, "corrupt image: the restart block is not in a stored writable segment");
    // Moved inside the stack: writable and stored, but no signal frame.
    let k = seg_where(&orig, |d| d.kind == seg_kind::STACK);
    let top = image::runs_of(&orig, k).last().map(|r| segs(&orig)[k].vaddr + r.offset + r.len).unwrap();
    let b = header_lie(&orig, |h| h.uc_addr = top - 1024);
    refused(&t, &prog, "uc-moved.ckpt", &b, "corrupt image: the signal frame does not describe this image's memory");
    if h.rseq_len != 0 {
        let b = header_lie(&orig, |h| h.rseq_addr = h.tail_addr & !31);
        refused(&t, &prog, "rseq.ckpt", &b, "corrupt image: the rseq area is not in a stored writable segment");
    }
}

/// A restore-code address that points at other code is not jumped to: the
/// loader compares the bytes there with its own restore code and, when
/// they differ, runs its own copy; the restart still works.
fn tail_elsewhere(arch: Arch) {
    let t = T::new("tail", arch);
    let (prog, orig) = good(&t);
    let b = header_lie(&orig, |h| h.tail_addr += 64);
    let img = t.p("tail.ckpt");
    std::fs::write(&img, &b).unwrap();
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Loader, false));
    r.expect_exit(0);
    assert!(r.stdout().lines().last().unwrap_or("").starts_with("done "), "{}", r.describe());
    assert_eq!(r.stderr(), "", "{}", r.describe());
}

/// The kernel's view of the address space, and the vDSO block.
fn layout_fields(arch: Arch) {
    let t = T::new("layout", arch);
    let (prog, orig) = good(&t);
    let mm = "corrupt image: the address-space layout (mm fields) is impossible";
    refused(&t, &prog, "brk.ckpt", &header_lie(&orig, |h| h.mm.start_brk = h.mm.brk + 4096), mm);
    refused(&t, &prog, "code0.ckpt", &header_lie(&orig, |h| h.mm.start_code = 0), mm);
    refused(&t, &prog, "stack.ckpt", &header_lie(&orig, |h| h.mm.start_stack = u64::MAX), mm);
    let vdso = "corrupt image: the vDSO block cannot be moved into place";
    refused(&t, &prog, "vdso-off.ckpt", &header_lie(&orig, |h| h.vdso_off = h.vdso_block_len), vdso);
    refused(&t, &prog, "vdso-wrap.ckpt", &header_lie(&orig, |h| h.vdso_block = u64::MAX - 4095), vdso);
    refused(&t, &prog, "vdso-odd.ckpt", &header_lie(&orig, |h| h.vdso_block += 12), vdso);
    // The vDSO block moved onto the program's own memory.
    let first = segs(&orig)[0];
    let b = header_lie(&orig, |h| h.vdso_block = first.vaddr);
    refused(&t, &prog, "vdso-over.ckpt", &b, &format!("corrupt image: segment 0 (0x{:x}) overlaps the vDSO block", first.vaddr));
    let b = header_lie(&orig, |h| h.nseg += 1);
    refused(&t, &prog, "nseg.ckpt", &b, "corrupt image: segment, signal or timer table size");
    let b = header_lie(&orig, |h| h.nfd += 1);
    refused(&t, &prog, "nfd.ckpt", &b, "corrupt image: descriptor table");
}

arch_tests!(overflowing_sizes, readers_agree, impossible_segments, restore_addresses, tail_elsewhere, layout_fields);

/// The good image itself passes every reader (the checks above refuse
/// lies, not images).
fn good_passes(arch: Arch) {
    let t = T::new("goodpass", arch);
    let (prog, orig) = good(&t);
    let img = t.p("good.ckpt");
    assert_eq!(std::fs::read(&img).unwrap(), orig);
    let mut c = t.spawn("check", &[t.loader(), "--check".into(), s(&img)]);
    c.expect_exit(0);
    let mut i = t.spawn("info", &[s(&product().rckpt), "info".into(), s(&img)]);
    i.expect_exit(0);
    assert!(i.stdout().contains("\n  integrity    ok\n"), "{}", i.describe());
    let mut r = t.spawn("restart", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    assert!(r.stdout().ends_with('\n') && r.stdout().lines().last().unwrap().starts_with("done "), "{}", r.describe());
}

arch_tests!(good_passes);
