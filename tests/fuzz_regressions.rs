//! Regression tests for what the fuzz harness (`tests/fuzz.rs`) found.
//! Each builds its mutant from a fresh image of the counter with a recipe
//! (`common::mutate`), and asserts that `rckpt info` and `rckpt-loader
//! --check` both refuse it: exit status 1, no signal, no "internal error"
//! or panic, one line on stderr ("rckpt: ..." / "rckpt-loader: ..."; a
//! segment checksum failure in `rckpt info` may instead be its JSON
//! verdict with an empty stderr). The messages are not pinned: the fixes
//! choose them.

#[macro_use]
mod common;

use common::mutate::{seed, EhdrField, HeaderField, Layout, Mutant, Mutation, NoteField, SegField, SpanField};
use common::*;
use rckpt_rt_core::format::*;
use std::os::unix::process::ExitStatusExt;

/// Both readers refuse the mutant `recipe` makes of a fresh image.
fn assert_refused(arch: Arch, name: &str, recipe: impl FnOnce(&Layout, &[u8]) -> Mutant) {
    let t = T::new(name, arch);
    let sd = seed(&t);
    let m = recipe(&sd.layout, &sd.bytes);
    let what = m.describe(&sd.layout);
    let img = t.p(&format!("{name}.ckpt"));
    std::fs::write(&img, m.apply(&sd.bytes, &sd.layout)).unwrap();

    let mut info = t.spawn("info", &[s(&product().rckpt), "info".into(), "--json".into(), s(&img)]);
    let st = info.wait();
    let err = info.stderr();
    let json_verdict = err.is_empty()
        && serde_json::from_str::<serde_json::Value>(&info.stdout()).is_ok_and(|v| v["integrity"].as_str().is_some_and(|i| i != "ok"));
    let one_line = err.lines().count() == 1 && err.starts_with("rckpt: ");
    let info_ok = st.signal().is_none() && st.code() == Some(1) && !err.contains("panicked") && (one_line || json_verdict);

    let mut check = t.spawn("check", &[s(arch.loader()), "--check".into(), "--relocatable".into(), s(&img)]);
    let st = check.wait();
    let err = check.stderr();
    let check_ok = st.signal().is_none()
        && st.code() == Some(1)
        && err.lines().count() == 1
        && err.starts_with("rckpt-loader: ")
        && !err.contains("internal error");
    assert!(
        info_ok && check_ok,
        "{what}: rckpt info and rckpt-loader --check must both refuse it with exit 1 and one line \
         (info {}, --check {}):\n{}\n{}",
        if info_ok { "does" } else { "does not" },
        if check_ok { "does" } else { "does not" },
        info.describe(),
        check.describe()
    );
}

/// The first segment that stores data and is not the vDSO.
fn data_seg(l: &Layout) -> usize {
    l.segs.iter().position(|d| d.stored > 0 && d.kind != seg_kind::VDSO).unwrap()
}

/// An address no process can have: kernel space (x86_64) or the top page
/// of the 4 GiB a 32-bit process gets.
fn past_the_top(l: &Layout) -> u64 {
    if l.elf64 {
        0xffff_8000_0000_0000
    } else {
        0xffff_e000
    }
}

fn reseal(m: Mutation) -> Mutant {
    Mutant::new(m, true)
}

// --- Arithmetic on ELF fields from the file

/// `rckpt info` panicked (SIGABRT), the loader exited 3.
fn pt_note_offset_near_2_64(arch: Arch) {
    assert_refused(arch, "note-off", |_, _| Mutant::new(Mutation::NoteSpan { field: SpanField::Offset, value: u64::MAX - 0xfff }, false));
}

fn pt_note_filesz_near_2_64(arch: Arch) {
    assert_refused(arch, "note-filesz", |_, _| reseal(Mutation::NoteSpan { field: SpanField::Filesz, value: u64::MAX - 11 }));
}

/// The i386 loader exited 3 ("internal error").
fn note_namesz_near_2_32(arch: Arch) {
    assert_refused(arch, "namesz", |l, _| {
        let note = l.notes.iter().position(|n| n.ty == NT_RCKPT_HEADER).unwrap();
        Mutant::new(Mutation::NoteSize { note, field: NoteField::Namesz, value: 0xffff_fff4 }, false)
    });
}

fn phoff_near_2_64(arch: Arch) {
    assert_refused(arch, "phoff", |_, _| reseal(Mutation::Ehdr { field: EhdrField::Phoff, value: u64::MAX - 0xfff }));
}

// --- info and --check disagree

/// `--check` accepted it, `rckpt info` failed the vDSO copy's checksum.
fn vdso_copy_flipped(arch: Arch) {
    assert_refused(arch, "vdso-flip", |l, b| {
        let seg = l.seg_of_kind(seg_kind::VDSO).expect("no vDSO segment");
        let at = (0..l.segs[seg].stored).find(|&k| l.data_pos(seg, k).is_some_and(|p| b[p] != 0)).unwrap();
        Mutant::new(Mutation::FlipDataByte { seg, at, mask: 0x10 }, false)
    });
}

/// `--check` refused ("shared file mapping without its file"), `rckpt
/// info` accepted.
fn kind_shared_file(arch: Arch) {
    assert_refused(arch, "shfile", |l, _| {
        reseal(Mutation::Seg { seg: data_seg(l), field: SegField::Kind, value: seg_kind::SHARED_FILE as u64, phdr: false, resum: false })
    });
}

/// A path length that shifts the next fd entry: `--check` refused
/// ("moving the image fd: Invalid argument"), `rckpt info` accepted.
fn fd_path_len_shifted(arch: Arch) {
    assert_refused(arch, "fdlen", |l, _| reseal(Mutation::FdPathLen { entry: 1.min(l.fd_entries.len() - 1), value: 0x17 }));
}

// --- Accepted by --check, crashed or failed on restart

fn header_addr(arch: Arch, name: &str, field: HeaderField) {
    assert_refused(arch, name, |l, _| reseal(Mutation::Header { field, value: past_the_top(l) }));
}

/// The restarted process died by SIGSEGV.
fn uc_addr_outside_segments(arch: Arch) {
    header_addr(arch, "uc", HeaderField::UcAddr)
}

fn tail_addr_outside_segments(arch: Arch) {
    header_addr(arch, "tail", HeaderField::TailAddr)
}

fn patch_addr_outside_segments(arch: Arch) {
    header_addr(arch, "patch", HeaderField::PatchAddr)
}

fn rseq_addr_outside_segments(arch: Arch) {
    header_addr(arch, "rseq", HeaderField::RseqAddr)
}

/// A segment (program header changed to match) at 0x1000, below
/// `vm.mmap_min_addr`: the restarted process died by SIGSEGV.
fn segment_at_page_one(arch: Arch) {
    assert_refused(arch, "page1", |l, _| {
        reseal(Mutation::Seg { seg: data_seg(l), field: SegField::Vaddr, value: 0x1000, phdr: true, resum: false })
    });
}

fn segment_past_the_top(arch: Arch) {
    assert_refused(arch, "top", |l, _| {
        reseal(Mutation::Seg { seg: data_seg(l), field: SegField::Vaddr, value: past_the_top(l), phdr: true, resum: false })
    });
}

/// Two segments at the same address.
fn segments_overlap(arch: Arch) {
    assert_refused(arch, "overlap", |l, _| {
        let i = data_seg(l);
        let next = l.segs[(i + 1) % l.segs.len()].vaddr;
        reseal(Mutation::Seg { seg: i, field: SegField::Vaddr, value: next, phdr: true, resum: false })
    });
}

/// Unknown prot bits: "restore failed after the point of no return:
/// protecting a segment: Invalid argument".
fn prot_unknown_bits(arch: Arch) {
    assert_refused(arch, "prot", |l, _| {
        reseal(Mutation::Seg { seg: data_seg(l), field: SegField::Prot, value: 0x40003, phdr: false, resum: true })
    });
}

/// A vDSO block the kernel's cannot be moved to (address 0).
fn vdso_block_at_zero(arch: Arch) {
    assert_refused(arch, "vdso0", |_, _| reseal(Mutation::Header { field: HeaderField::VdsoBlock, value: 0 }));
}

/// The vDSO block moved onto a stored segment: "restore failed after the
/// point of no return: protecting a segment: Permission denied".
fn vdso_block_over_a_segment(arch: Arch) {
    assert_refused(arch, "vdso-over", |l, _| reseal(Mutation::Header { field: HeaderField::VdsoBlock, value: l.segs[data_seg(l)].vaddr }));
}

arch_tests!(
    pt_note_offset_near_2_64,
    pt_note_filesz_near_2_64,
    note_namesz_near_2_32,
    phoff_near_2_64,
    vdso_copy_flipped,
    kind_shared_file,
    fd_path_len_shifted,
    uc_addr_outside_segments,
    tail_addr_outside_segments,
    patch_addr_outside_segments,
    rseq_addr_outside_segments,
    segment_at_page_one,
    segment_past_the_top,
    segments_overlap,
    prot_unknown_bits,
    vdso_block_at_zero,
    vdso_block_over_a_segment,
);

/// x86_64: a non-canonical GS base (`tls[1]`): "restore failed after the
/// point of no return: setting the TLS base: Operation not permitted".
#[test]
fn tls_base_non_canonical_x86_64() {
    assert_refused(Arch::X86_64, "tls", |_, _| reseal(Mutation::Header { field: HeaderField::Tls(1), value: 0xffff_ffff_ffff_f000 }));
}

/// i386: a %gs descriptor (`tls[1]`) at 0xc0000000: "restore failed after
/// the point of no return: setting the TLS base: Invalid argument".
#[test]
fn tls_descriptor_kernel_base_i386() {
    if Arch::I386.available() {
        assert_refused(Arch::I386, "tls", |_, _| reseal(Mutation::Header { field: HeaderField::Tls(1), value: 0xc000_0000 }));
    }
}
