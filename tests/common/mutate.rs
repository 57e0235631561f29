//! Mutations of checkpoint images, for the fuzz harness (`tests/fuzz.rs`)
//! and the regression tests it feeds (`tests/fuzz_regressions.rs`).
//!
//! A [`Layout`] is read once from a good image (where the program headers,
//! notes, segment table, fd and mapfile entries and the seal are); a
//! [`Mutant`] is one [`Mutation`] plus whether the seal is recomputed
//! afterwards, and [`Mutant::apply`] turns the good bytes into the damaged
//! ones. [`Mutant::random`] draws one from an RNG; a regression test writes
//! its mutant out as a literal recipe instead.

use super::image::{self, NoteAt};
use rckpt_rt_core::format::*;
use rckpt_rt_core::hash::xxh64;
use std::mem::{offset_of, size_of};

/// Where things are in a good image.
#[derive(Clone, Debug)]
pub struct Layout {
    pub elf64: bool,
    pub phoff: usize,
    pub phentsize: usize,
    pub phnum: usize,
    /// End of the note area: ELF header, program headers and notes are
    /// all before it.
    pub head_end: usize,
    pub notes: Vec<NoteAt>,
    pub seal: NoteAt,
    pub header: NoteAt,
    pub segs: Vec<SegDesc>,
    pub segs_at: usize,
    /// The run table and where it sits; each segment's first `PT_LOAD`.
    pub runs: Vec<RunDesc>,
    pub runs_at: usize,
    pub first_piece: Vec<usize>,
    /// Absolute offsets of the `FdDesc` / `MapFileDesc` entries.
    pub fd_entries: Vec<usize>,
    pub mapfile_entries: Vec<usize>,
}

fn rd<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().unwrap()
}

/// Offsets of the variable-length entries of a note (`hdr` bytes of
/// header whose `u32` at `len_at` is the path length, then padding to 8).
fn entries(b: &[u8], n: Option<NoteAt>, hdr: usize, len_at: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let Some(n) = n else { return v };
    let mut pos = 0;
    while pos + hdr <= n.len {
        v.push(n.desc + pos);
        let plen = u32::from_le_bytes(rd(b, n.desc + pos + len_at)) as usize;
        pos = (pos + hdr + plen + 7) & !7;
    }
    v
}

impl Layout {
    pub fn of(b: &[u8]) -> Layout {
        let elf64 = b[4] == 2;
        let (phoff, phentsize, phnum) = if elf64 {
            (u64::from_le_bytes(rd(b, 32)) as usize, u16::from_le_bytes(rd(b, 54)) as usize, u16::from_le_bytes(rd(b, 56)) as usize)
        } else {
            (u32::from_le_bytes(rd(b, 28)) as usize, u16::from_le_bytes(rd(b, 42)) as usize, u16::from_le_bytes(rd(b, 44)) as usize)
        };
        let (off, len) = image::notes_area(b);
        let notes: Vec<NoteAt> = image::notes(b).into_iter().map(|(_, a)| a).collect();
        let find = |ty| image::find_note(b, NOTE_RCKPT, ty);
        Layout {
            elf64,
            phoff,
            phentsize,
            phnum,
            head_end: off + len,
            notes,
            seal: find(NT_RCKPT_SEAL).expect("no seal"),
            header: find(NT_RCKPT_HEADER).expect("no header"),
            segs: image::segments(b),
            segs_at: find(NT_RCKPT_SEGS).expect("no segment table").desc,
            runs: image::runs(b),
            runs_at: find(NT_RCKPT_RUNS).expect("no run table").desc,
            first_piece: {
                let segs = image::segments(b);
                let runs = image::runs(b);
                let mut k = 2;
                segs.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let first = k;
                        let own = runs.iter().copied().filter(|r| r.owner as usize == i);
                        k += rckpt_rt_core::image::load_pieces(d.vaddr, d.len, own).count();
                        first
                    })
                    .collect()
            },
            fd_entries: entries(b, find(NT_RCKPT_FDS), size_of::<FdDesc>(), offset_of!(FdDesc, path_len)),
            mapfile_entries: entries(b, find(NT_RCKPT_MAPFILES), size_of::<MapFileDesc>(), offset_of!(MapFileDesc, path_len)),
        }
    }

    /// Offset of program header `i` (0 and 1 are the PT_NOTEs).
    pub fn phdr_at(&self, i: usize) -> usize {
        self.phoff + i * self.phentsize
    }

    /// The file offset of byte `at` of segment `seg`'s stored data (its
    /// runs one after the other), if it has that many.
    pub fn data_pos(&self, seg: usize, mut at: u64) -> Option<usize> {
        for r in self.runs.iter().filter(|r| r.owner as usize == seg) {
            if at < r.len {
                return Some((r.file_off + at) as usize);
            }
            at -= r.len;
        }
        None
    }

    /// Index of the first segment of `kind`.
    pub fn seg_of_kind(&self, kind: u32) -> Option<usize> {
        self.segs.iter().position(|d| d.kind == kind)
    }

    /// Index of the first segment that stores data and whose protection
    /// is exactly `prot`.
    pub fn stored_seg_with_prot(&self, prot: u32) -> Option<usize> {
        self.segs.iter().position(|d| d.stored > 0 && d.prot == prot)
    }
}

/// Write the low `n` bytes of `v` at `at` (little-endian), if in bounds.
fn put(b: &mut [u8], at: usize, n: usize, v: u64) {
    if let Some(dst) = b.get_mut(at..at + n) {
        dst.copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EhdrField {
    Phoff,
    Phentsize,
    Phnum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanField {
    Offset,
    Filesz,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteField {
    Namesz,
    Descsz,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegField {
    Vaddr,
    Len,
    FileOff,
    Stored,
    Prot,
    Kind,
}

/// Fields of [`ImageHeader`] worth lying about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderField {
    UcAddr,
    TailAddr,
    PatchAddr,
    RseqAddr,
    /// `mm` field by index (start_code .. env_end).
    Mm(usize),
    VdsoBlock,
    VdsoBlockLen,
    VdsoOff,
    VdsoLen,
    Nseg,
    Nfd,
    XsaveLen,
    Tls(usize),
}

impl HeaderField {
    pub const ALL: [HeaderField; 13] = [
        HeaderField::UcAddr,
        HeaderField::TailAddr,
        HeaderField::PatchAddr,
        HeaderField::RseqAddr,
        HeaderField::Mm(0),
        HeaderField::VdsoBlock,
        HeaderField::VdsoBlockLen,
        HeaderField::VdsoOff,
        HeaderField::VdsoLen,
        HeaderField::Nseg,
        HeaderField::Nfd,
        HeaderField::XsaveLen,
        HeaderField::Tls(0),
    ];

    fn slot(self, h: &mut ImageHeader) -> Slot<'_> {
        let mm = &mut h.mm;
        let mm: [&mut u64; 11] = [
            &mut mm.start_code,
            &mut mm.end_code,
            &mut mm.start_data,
            &mut mm.end_data,
            &mut mm.start_brk,
            &mut mm.brk,
            &mut mm.start_stack,
            &mut mm.arg_start,
            &mut mm.arg_end,
            &mut mm.env_start,
            &mut mm.env_end,
        ];
        match self {
            HeaderField::UcAddr => Slot::U64(&mut h.uc_addr),
            HeaderField::TailAddr => Slot::U64(&mut h.tail_addr),
            HeaderField::PatchAddr => Slot::U64(&mut h.patch_addr),
            HeaderField::RseqAddr => Slot::U64(&mut h.rseq_addr),
            HeaderField::Mm(k) => Slot::U64(mm.into_iter().nth(k % 11).unwrap()),
            HeaderField::VdsoBlock => Slot::U64(&mut h.vdso_block),
            HeaderField::VdsoBlockLen => Slot::U64(&mut h.vdso_block_len),
            HeaderField::VdsoOff => Slot::U64(&mut h.vdso_off),
            HeaderField::VdsoLen => Slot::U64(&mut h.vdso_len),
            HeaderField::Nseg => Slot::U32(&mut h.nseg),
            HeaderField::Nfd => Slot::U32(&mut h.nfd),
            HeaderField::XsaveLen => Slot::U32(&mut h.xsave_len),
            HeaderField::Tls(k) => Slot::U64(&mut h.tls[k % 2]),
        }
    }
}

enum Slot<'a> {
    U64(&'a mut u64),
    U32(&'a mut u32),
}

/// One change to a good image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flip bit `bit` of byte `at` of the head (ELF header, program
    /// headers, notes).
    FlipHeadBit { at: usize, bit: u8 },
    /// XOR byte `at` of segment `seg`'s stored data with `mask`.
    FlipDataByte { seg: usize, at: u64, mask: u8 },
    /// Cut the file to `len` bytes.
    Truncate { len: usize },
    /// An ELF header field.
    Ehdr { field: EhdrField, value: u64 },
    /// The PT_NOTE program header's `p_offset` or `p_filesz`.
    NoteSpan { field: SpanField, value: u64 },
    /// Note `note`'s `namesz` or `descsz`.
    NoteSize { note: usize, field: NoteField, value: u32 },
    /// A segment descriptor field; with `phdr` its program header is
    /// changed to match (so only the contents lie), with `resum` the
    /// segment checksum is recomputed over what the descriptor now names.
    Seg { seg: usize, field: SegField, value: u64, phdr: bool, resum: bool },
    /// An rckpt header field.
    Header { field: HeaderField, value: u64 },
    /// `path_len` of fd entry `entry`.
    FdPathLen { entry: usize, value: u32 },
    /// `path_len` of mapfile entry `entry`.
    MapFilePathLen { entry: usize, value: u32 },
}

/// A mutation, and whether the seal is recomputed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mutant {
    pub m: Mutation,
    pub reseal: bool,
}

impl Mutant {
    pub fn new(m: Mutation, reseal: bool) -> Mutant {
        Mutant { m, reseal }
    }

    /// A structural lie: the seal is right, the contents are wrong. The
    /// kinds a restart check applies to.
    pub fn is_lie(&self) -> bool {
        self.reseal
            && matches!(
                self.m,
                Mutation::Seg { .. } | Mutation::Header { .. } | Mutation::FdPathLen { .. } | Mutation::MapFilePathLen { .. }
            )
    }

    /// Whether a validator can tell from the image alone that a restart
    /// of this lie cannot work: an address the loader itself uses
    /// (uc/tail/patch/rseq), a vDSO layout, a segment below 64 KiB, past
    /// `limit` (the top of the address space), wrapping or overlapping
    /// another, or an unknown prot bit or kind. Other lies (a segment
    /// moved to free space, a writable heap made read-only, a TLS base)
    /// describe a process that may well crash, and a restart that
    /// faithfully restores it is not the loader's fault.
    pub fn detectable(&self, lay: &Layout, limit: u64) -> bool {
        match self.m {
            Mutation::Header { field, .. } => !matches!(field, HeaderField::Tls(_) | HeaderField::Mm(_)),
            Mutation::Seg { seg, field, value, .. } => {
                let mut d = lay.segs[seg];
                match field {
                    SegField::Vaddr => d.vaddr = value,
                    SegField::Len => d.len = value,
                    SegField::Prot => return value & !7 != 0,
                    SegField::Kind => return value > 6,
                    _ => return false,
                }
                let Some(end) = d.vaddr.checked_add(d.len) else { return true };
                let overlaps = lay.segs.iter().enumerate().any(|(i, o)| i != seg && o.vaddr < end && d.vaddr < o.vaddr + o.len);
                d.vaddr < 0x10000 || end > limit || overlaps
            }
            _ => true,
        }
    }

    /// A short name of the mutation kind (for grouping failures).
    pub fn kind(&self) -> String {
        let k = match self.m {
            Mutation::FlipHeadBit { .. } => "flip-head-bit".to_string(),
            Mutation::FlipDataByte { .. } => "flip-data-byte".to_string(),
            Mutation::Truncate { .. } => "truncate".to_string(),
            Mutation::Ehdr { field, .. } => format!("ehdr-{field:?}"),
            Mutation::NoteSpan { field, .. } => format!("pt-note-{field:?}"),
            Mutation::NoteSize { field, .. } => format!("note-{field:?}"),
            Mutation::Seg { field, phdr, resum, .. } => {
                format!("seg-{field:?}{}{}", if phdr { "+phdr" } else { "" }, if resum { "+sum" } else { "" })
            }
            Mutation::Header { field, .. } => format!("header-{field:?}"),
            Mutation::FdPathLen { .. } => "fd-path-len".to_string(),
            Mutation::MapFilePathLen { .. } => "mapfile-path-len".to_string(),
        };
        format!("{k}{}", if self.reseal { " (resealed)" } else { "" })
    }

    /// The mutation in words.
    pub fn describe(&self, lay: &Layout) -> String {
        let kind = |i: usize| lay.segs.get(i).map(|d| seg_kind::name(d.kind)).unwrap_or("?");
        let what = match self.m {
            Mutation::FlipHeadBit { at, bit } => format!("flip bit {bit} of head byte {at:#x}"),
            Mutation::FlipDataByte { seg, at, mask } => format!("xor byte {at:#x} of segment {seg} ({}) data with {mask:#04x}", kind(seg)),
            Mutation::Truncate { len } => format!("truncate the file to {len} bytes"),
            Mutation::Ehdr { field, value } => format!("ELF header {field:?} := {value:#x}"),
            Mutation::NoteSpan { field, value } => {
                format!("PT_NOTE p_{} := {value:#x}", if field == SpanField::Offset { "offset" } else { "filesz" })
            }
            Mutation::NoteSize { note, field, value } => {
                format!("note {note} {} := {value:#x}", if field == NoteField::Namesz { "namesz" } else { "descsz" })
            }
            Mutation::Seg { seg, field, value, phdr, resum } => format!(
                "segment {seg} ({}) {field:?} := {value:#x}{}{}",
                kind(seg),
                if phdr { ", program header changed to match" } else { "" },
                if resum { ", segment checksum recomputed" } else { "" }
            ),
            Mutation::Header { field, value } => format!("rckpt header {field:?} := {value:#x}"),
            Mutation::FdPathLen { entry, value } => format!("fd entry {entry} path_len := {value:#x}"),
            Mutation::MapFilePathLen { entry, value } => format!("mapfile entry {entry} path_len := {value:#x}"),
        };
        format!("{what}{}", if self.reseal { ", seal recomputed" } else { "" })
    }

    /// The damaged bytes.
    pub fn apply(&self, good: &[u8], lay: &Layout) -> Vec<u8> {
        let mut b = good.to_vec();
        let w = if lay.elf64 { 8 } else { 4 };
        match self.m {
            Mutation::FlipHeadBit { at, bit } => b[at] ^= 1 << (bit % 8),
            Mutation::FlipDataByte { seg, at, mask } => {
                if let Some(p) = lay.data_pos(seg, at) {
                    b[p] ^= mask;
                }
            }
            Mutation::Truncate { len } => b.truncate(len),
            Mutation::Ehdr { field, value } => {
                let (at, n) = match (field, lay.elf64) {
                    (EhdrField::Phoff, true) => (32, 8),
                    (EhdrField::Phoff, false) => (28, 4),
                    (EhdrField::Phentsize, true) => (54, 2),
                    (EhdrField::Phentsize, false) => (42, 2),
                    (EhdrField::Phnum, true) => (56, 2),
                    (EhdrField::Phnum, false) => (44, 2),
                };
                put(&mut b, at, n, value);
            }
            Mutation::NoteSpan { field, value } => {
                let at = lay.phdr_at(0) + phdr_off(lay.elf64, if field == SpanField::Offset { "offset" } else { "filesz" });
                put(&mut b, at, w, value);
            }
            Mutation::NoteSize { note, field, value } => {
                let n = lay.notes[note];
                put(&mut b, n.header + if field == NoteField::Namesz { 0 } else { 4 }, 4, value as u64);
            }
            Mutation::Seg { seg, field, value, phdr, resum } => set_seg(&mut b, lay, seg, field, value, phdr, resum),
            Mutation::Header { field, value } => {
                let mut h: ImageHeader = pod_read(&b, lay.header.desc).unwrap();
                match field.slot(&mut h) {
                    Slot::U64(p) => *p = value,
                    Slot::U32(p) => *p = value as u32,
                }
                b[lay.header.desc..lay.header.desc + core::mem::size_of::<ImageHeader>()].copy_from_slice(pod_bytes(&h));
            }
            Mutation::FdPathLen { entry, value } => put(&mut b, lay.fd_entries[entry] + offset_of!(FdDesc, path_len), 4, value as u64),
            Mutation::MapFilePathLen { entry, value } => {
                put(&mut b, lay.mapfile_entries[entry] + offset_of!(MapFileDesc, path_len), 4, value as u64)
            }
        }
        if self.reseal && b.len() >= lay.seal.desc + 8 {
            // The seal where the good image has it, over everything before
            // it: mutations that move notes around are sealed too.
            let h = xxh64(&b[..lay.seal.header], SEAL_SEED);
            put(&mut b, lay.seal.desc, 8, h);
        }
        b
    }
}

/// Offset of a field in a program header.
fn phdr_off(elf64: bool, field: &str) -> usize {
    match (field, elf64) {
        ("offset", true) => 8,
        ("vaddr", true) => 16,
        ("filesz", true) => 32,
        ("memsz", true) => 40,
        ("offset", false) => 4,
        ("vaddr", false) => 8,
        ("filesz", false) => 16,
        ("memsz", false) => 20,
        _ => unreachable!("{field}"),
    }
}

fn set_seg(b: &mut [u8], lay: &Layout, seg: usize, field: SegField, value: u64, phdr: bool, resum: bool) {
    let at = lay.segs_at + seg * core::mem::size_of::<SegDesc>();
    let mut d: SegDesc = pod_read(b, at).unwrap();
    let old = d;
    let w = if lay.elf64 { 8 } else { 4 };
    // The segment's PT_LOADs: its runs and gaps.
    let first = lay.first_piece[seg];
    let npiece = lay.first_piece.get(seg + 1).copied().unwrap_or(lay.phnum) - first;
    let rd_ph = |b: &[u8], k: usize, f: &str| {
        let o = lay.phdr_at(k) + phdr_off(lay.elf64, f);
        if lay.elf64 {
            u64::from_le_bytes(rd(b, o))
        } else {
            u32::from_le_bytes(rd(b, o)) as u64
        }
    };
    match field {
        SegField::Vaddr => {
            d.vaddr = value;
            if phdr {
                for k in first..first + npiece {
                    let v = rd_ph(b, k, "vaddr").wrapping_sub(old.vaddr).wrapping_add(value);
                    put(b, lay.phdr_at(k) + phdr_off(lay.elf64, "vaddr"), w, v);
                }
            }
        }
        SegField::Len => {
            d.len = value;
            if phdr && npiece > 0 {
                let k = first + npiece - 1;
                let memsz = rd_ph(b, k, "memsz").wrapping_add(value).wrapping_sub(old.len);
                put(b, lay.phdr_at(k) + phdr_off(lay.elf64, "memsz"), w, memsz);
                if rd_ph(b, k, "filesz") != 0 {
                    put(b, lay.phdr_at(k) + phdr_off(lay.elf64, "filesz"), w, memsz);
                }
            }
        }
        SegField::FileOff => {
            // The file offset of the segment's first run.
            if d.nrun > 0 {
                let r_at = lay.runs_at + d.first_run as usize * core::mem::size_of::<RunDesc>() + offset_of!(RunDesc, file_off);
                put(b, r_at, 8, value);
                if phdr {
                    let k = (first..first + npiece).find(|&k| rd_ph(b, k, "filesz") != 0).unwrap_or(first);
                    put(b, lay.phdr_at(k) + phdr_off(lay.elf64, "offset"), w, value);
                }
            }
        }
        SegField::Stored => d.stored = value,
        SegField::Prot => d.prot = value as u32,
        SegField::Kind => d.kind = value as u32,
    }
    b[at..at + core::mem::size_of::<SegDesc>()].copy_from_slice(pod_bytes(&d));
    if resum && d.nrun > 0 {
        let v = image::compute_sum(b, seg);
        image::set_sum(b, seg, v);
    }
}

/// Values that break arithmetic and bounds: edges of 32- and 64-bit
/// ranges, pages, kernel space.
pub const EDGES: [u64; 16] = [
    0,
    1,
    0xfff,
    0x1000,
    0x7fff_ffff,
    0x8000_0000,
    0xc000_0000,
    0xffff_f000,
    0xffff_ffff,
    1 << 32,
    1 << 47,
    0x7fff_ffff_f000,
    0xffff_8000_0000_0000,
    u64::MAX - 0xfff,
    u64::MAX - 11,
    u64::MAX,
];

/// A value for a field whose good value is `orig`: an edge, near the
/// original, another segment's start or end (overlaps), or random.
fn value(rng: &mut fastrand::Rng, lay: &Layout, orig: u64) -> u64 {
    match rng.u32(0..6) {
        0 | 1 => EDGES[rng.usize(..EDGES.len())],
        2 => orig.wrapping_add(rng.i64(-4..=4) as u64 * PAGE_SIZE),
        3 => {
            let d = lay.segs[rng.usize(..lay.segs.len())];
            [d.vaddr, d.vaddr + d.len, d.vaddr + PAGE_SIZE, d.vaddr.wrapping_sub(PAGE_SIZE)][rng.usize(..4)]
        }
        4 => rng.u64(..) & !(PAGE_SIZE - 1),
        _ => rng.u64(..),
    }
}

impl Mutant {
    /// One random mutant of the image `good` laid out as `lay`; with
    /// `lies_only`, a structural lie (seal recomputed).
    pub fn random(rng: &mut fastrand::Rng, good: &[u8], lay: &Layout, lies_only: bool) -> Mutant {
        let nseg = lay.segs.len();
        let pick = if lies_only { rng.u32(6..10) } else { rng.u32(0..10) };
        let m = match pick {
            0 => Mutation::FlipHeadBit { at: rng.usize(..lay.head_end), bit: rng.u8(0..8) },
            1 => {
                let stored: Vec<usize> = (0..nseg).filter(|&i| lay.segs[i].stored > 0).collect();
                let seg = stored[rng.usize(..stored.len())];
                let d = lay.segs[seg];
                // A non-zero byte if we can find one quickly (a flipped
                // zero in a hole would extend the file's data, not damage it).
                let mut at = rng.u64(0..d.stored);
                for _ in 0..64 {
                    if lay.data_pos(seg, at).and_then(|p| good.get(p)).is_some_and(|&x| x != 0) {
                        break;
                    }
                    at = rng.u64(0..d.stored);
                }
                Mutation::FlipDataByte { seg, at, mask: 1 << rng.u8(0..8) }
            }
            2 => Mutation::Truncate { len: if rng.bool() { rng.usize(..lay.head_end + 64) } else { rng.usize(..good.len()) } },
            3 => {
                let field = [EhdrField::Phoff, EhdrField::Phentsize, EhdrField::Phnum][rng.usize(..3)];
                Mutation::Ehdr { field, value: value(rng, lay, lay.phoff as u64) }
            }
            4 => {
                let field = if rng.bool() { SpanField::Offset } else { SpanField::Filesz };
                Mutation::NoteSpan { field, value: value(rng, lay, lay.head_end as u64) }
            }
            5 => {
                let field = if rng.bool() { NoteField::Namesz } else { NoteField::Descsz };
                let v = [u32::MAX, u32::MAX - 3, u32::MAX - 11, 0x8000_0000, 0, 1, rng.u32(..), rng.u32(..4096)][rng.usize(..8)];
                Mutation::NoteSize { note: rng.usize(..lay.notes.len()), field, value: v }
            }
            6 | 7 => {
                let seg = rng.usize(..nseg);
                let d = lay.segs[seg];
                let field =
                    [SegField::Vaddr, SegField::Len, SegField::FileOff, SegField::Stored, SegField::Prot, SegField::Kind][rng.usize(..6)];
                let v = match field {
                    SegField::Vaddr => value(rng, lay, d.vaddr),
                    SegField::Len => value(rng, lay, d.len),
                    SegField::FileOff => value(rng, lay, lay.runs.get(d.first_run as usize).map_or(0, |r| r.file_off)),
                    SegField::Stored => value(rng, lay, d.stored),
                    SegField::Prot => rng.u64(0..8) | if rng.u32(0..8) == 0 { 1 << rng.u32(3..32) } else { 0 },
                    SegField::Kind => rng.u64(0..8),
                };
                Mutation::Seg { seg, field, value: v, phdr: rng.u32(0..4) != 0, resum: rng.bool() }
            }
            8 => {
                let mut field = HeaderField::ALL[rng.usize(..HeaderField::ALL.len())];
                if let HeaderField::Mm(_) = field {
                    field = HeaderField::Mm(rng.usize(0..11));
                }
                if let HeaderField::Tls(_) = field {
                    field = HeaderField::Tls(rng.usize(0..2));
                }
                let mut h: ImageHeader = pod_read(good, lay.header.desc).unwrap();
                let orig = match field.slot(&mut h) {
                    Slot::U64(p) => *p,
                    Slot::U32(p) => *p as u64,
                };
                let v = match field {
                    HeaderField::Nseg | HeaderField::Nfd | HeaderField::XsaveLen => {
                        [0, 1, orig + 1, orig.wrapping_sub(1), u32::MAX as u64, rng.u64(..)][rng.usize(..6)]
                    }
                    _ => value(rng, lay, orig),
                };
                Mutation::Header { field, value: v }
            }
            _ => {
                let v = [u32::MAX, u32::MAX - 7, 0x8000_0000, 0, rng.u32(..4096)][rng.usize(..5)];
                if !lay.mapfile_entries.is_empty() && rng.bool() {
                    Mutation::MapFilePathLen { entry: rng.usize(..lay.mapfile_entries.len()), value: v }
                } else if !lay.fd_entries.is_empty() {
                    Mutation::FdPathLen { entry: rng.usize(..lay.fd_entries.len()), value: v }
                } else {
                    Mutation::Header { field: HeaderField::UcAddr, value: value(rng, lay, 0) }
                }
            }
        };
        let reseal = match m {
            Mutation::Seg { .. } | Mutation::Header { .. } | Mutation::FdPathLen { .. } | Mutation::MapFilePathLen { .. } => true,
            Mutation::FlipDataByte { .. } | Mutation::Truncate { .. } => false,
            _ => rng.bool(),
        };
        Mutant { m, reseal }
    }
}

/// A good image of the counter fixture to mutate, with what a restart of
/// it must print.
pub struct Seed {
    pub arch: super::Arch,
    pub prog: std::path::PathBuf,
    pub img: std::path::PathBuf,
    pub bytes: Vec<u8>,
    pub layout: Layout,
    /// The uninterrupted output, and what the original run printed before
    /// its checkpoint.
    pub want: String,
    pub before: String,
}

/// Compile the counter for `t.arch`, stop it with SIGTSTP at "ready" (as
/// [`super::counter_roundtrip`] does) and open its gate, so that a restart
/// of the image (or of a mutant) runs to the end at full speed.
pub fn seed(t: &super::T) -> Seed {
    use super::*;
    let (prog, want) = counter(t, &[]);
    let img = t.p("seed.ckpt");
    let gate = t.p("seed.gate");
    let mut p = t.spawn("seed-orig", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    t.touch(&gate);
    let before = p.stdout();
    assert!(want.starts_with(&before) && !before.contains("done"), "{}", p.describe());
    let bytes = std::fs::read(&img).unwrap();
    let layout = Layout::of(&bytes);
    Seed { arch: t.arch, prog, img, bytes, layout, want, before }
}
