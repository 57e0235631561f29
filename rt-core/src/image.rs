//! Reading and validating an image. Used by the loader (before it changes
//! anything) and by `rckpt info`, so both agree on what a valid image is.
//!
//! No allocation: the caller reads the head of the file (ELF header, program
//! headers, notes) into a buffer and [`Image::parse`] borrows from it.

use crate::elf::{self, Class, Note, Notes, Phdr};
use crate::format::*;
use crate::hash::{self, SegSum};
use crate::line::Line;
use crate::sys::{self, Errno, Fd};

#[derive(Clone, Copy, Debug)]
pub enum ImageError {
    Io(&'static str, Errno),
    TooSmall(u64),
    NotElf,
    NotCore,
    /// The file ends before `need` bytes.
    Truncated {
        need: u64,
        have: u64,
    },
    HeaderTooLarge(u64),
    Malformed(&'static str),
    NotRckpt,
    Version(u32),
    Seal,
    SegMismatch(usize),
    /// A segment says something no process could have had.
    BadSegment {
        seg: usize,
        vaddr: u64,
        what: &'static str,
    },
    Checksum {
        seg: usize,
        vaddr: u64,
    },
    /// Ghost file `i`'s data fails its checksum.
    GhostChecksum(usize),
}

impl ImageError {
    pub fn describe(&self, l: &mut Line) {
        match *self {
            ImageError::Io(what, e) => l.t(what).t(": ").e(e),
            ImageError::TooSmall(n) => l.t("truncated image: only ").u(n).t(" bytes"),
            ImageError::NotElf => l.t("not a checkpoint image (not an ELF file)"),
            ImageError::NotCore => l.t("not a checkpoint image (an ELF file, but not a core file)"),
            ImageError::Truncated { need, have } => l.t("truncated image: needs ").u(need).t(" bytes, the file has ").u(have),
            ImageError::HeaderTooLarge(n) => l.t("corrupt image: headers and notes of ").u(n).t(" bytes (at most ").u(MAX_HEAD).t(")"),
            ImageError::Malformed(what) => l.t("corrupt image: ").t(what),
            ImageError::NotRckpt => l.t("not an rckpt image (an ELF core file without rckpt notes)"),
            ImageError::Version(v) => {
                l.t("image format version ").u(v as u64).t(" is not supported (this rckpt reads version ").u(FORMAT_VERSION as u64).t(")")
            }
            ImageError::Seal => l.t("corrupt image: the headers and notes fail their checksum"),
            ImageError::SegMismatch(i) => {
                l.t("corrupt image: program header of segment ").u(i as u64).t(" disagrees with the segment table")
            }
            ImageError::BadSegment { seg, vaddr, what } => l.t("corrupt image: segment ").u(seg as u64).t(" (").x(vaddr).t(") ").t(what),
            ImageError::Checksum { seg, vaddr } => l.t("corrupt image: segment ").u(seg as u64).t(" (").x(vaddr).t(") fails its checksum"),
            ImageError::GhostChecksum(i) => l.t("corrupt image: saved deleted file ").u(i as u64).t(" fails its checksum"),
        };
    }
}

/// The most bytes of headers and notes any reader accepts (the loader's
/// buffer): `rckpt info` and the loader refuse the same images.
pub const MAX_HEAD: u64 = 8 << 20;
/// The most segments an image may have.
pub const MAX_SEGS: usize = 8192;
/// The lowest address a segment or an mm field may have: Linux's default
/// `vm.mmap_min_addr`; nothing a process maps lies below it.
pub const MIN_ADDR: u64 = 0x10000;

/// The end of user address space for processes of an image's class (x86
/// with 4-level paging; a 32-bit process on a 64-bit kernel).
pub fn user_max(class: Class) -> u64 {
    match class {
        Class::Elf64 => 0x7fff_ffff_f000,
        Class::Elf32 => 0xffff_e000,
    }
}

/// The checkpoint handler's signal frame around `uc_addr` that the restore
/// tail's `rt_sigreturn` reads: bytes below the ucontext (return address,
/// and on i386 the signal number, pointers and siginfo) and the kernel's
/// `struct ucontext` itself.
fn sigframe(class: Class, uc: u64) -> Option<(u64, u64)> {
    let (below, size) = match class {
        Class::Elf64 => (8, 304),
        Class::Elf32 => (144, 116),
    };
    Some((uc.checked_sub(below)?, uc.checked_add(size)?))
}

/// How many bytes of the restore code at `tail_addr` the loader compares
/// with its own copy before it jumps there (else it runs its own copy).
pub const TAIL_CMP: usize = 32;

/// Where the interrupted code's instruction pointer, stack pointer and FPU
/// state pointer sit in the kernel's `struct ucontext` (offsets from the
/// ucontext's start), and the word size.
fn frame_fields(class: Class) -> ([usize; 3], usize) {
    match class {
        // uc_mcontext at 40: rsp is its 16th word, rip the 17th; fpstate
        // after flags, four selectors, err, trapno, oldmask, cr2.
        Class::Elf64 => ([40 + 16 * 8, 40 + 15 * 8, 40 + 23 * 8], 8),
        // uc_mcontext at 20: four selectors, di si bp sp bx dx cx ax,
        // trapno err ip cs flags sp_at_signal ss fpstate.
        Class::Elf32 => ([20 + 14 * 4, 20 + 7 * 4, 20 + 19 * 4], 4),
    }
}

/// Largest `/proc/self/auxv` the kernel takes back (`PR_SET_MM_MAP` checks
/// against `mm->saved_auxv`, AT_VECTOR_SIZE words of 8 bytes on x86_64).
const MAX_AUXV: usize = 52 * 8;

/// A parsed image head.
pub struct Image<'a> {
    pub head: &'a [u8],
    pub class: Class,
    pub machine: u16,
    pub header: ImageHeader,
    pub file_size: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    notes_off: usize,
    notes_len: usize,
    /// Where the runs' data starts: the end of the head, page aligned.
    pub data_start: u64,
    /// The trailer: where it starts (right after the runs) and its length.
    pub trailer_off: u64,
    pub trailer_len: u64,
    /// The head's seal (the trailer's seal is seeded with it).
    pub seal: u64,
    segs: &'a [u8],
    runs: &'a [u8],
    fds: &'a [u8],
    sigs: &'a [u8],
    pub cwd: &'a [u8],
    /// `NT_RCKPT_TIMERS` (empty if the image has none).
    timers: &'a [u8],
    /// `NT_RCKPT_MAPFILES` (empty if the image has none).
    mapfiles: &'a [u8],
    /// `NT_RCKPT_GHOSTS` (empty if the image has none).
    ghosts: &'a [u8],
    pub auxv: &'a [u8],
}

/// How many bytes of the head [`Image::parse`] needs, from the ELF header
/// alone: through the program headers and the note area (checked
/// arithmetic; an image whose head would pass [`MAX_HEAD`] is refused).
pub fn head_len(first: &[u8]) -> Result<u64, ImageError> {
    let e = elf::read_ehdr(first).ok_or(ImageError::NotElf)?;
    let ph_len = e.phnum as u64 * e.phentsize as u64;
    let ph_end = e.phoff.checked_add(ph_len).ok_or(ImageError::Malformed("program header offset"))?;
    if ph_end > MAX_HEAD {
        return Err(ImageError::HeaderTooLarge(ph_end));
    }
    let Some(p) = elf::read_phdr(first, e.class, e.phoff as usize).filter(|p| p.p_type == elf::PT_NOTE) else {
        return Ok(ph_end);
    };
    let notes_end = p.offset.checked_add(p.filesz).ok_or(ImageError::Malformed("note area offset"))?;
    if notes_end > MAX_HEAD {
        return Err(ImageError::HeaderTooLarge(notes_end));
    }
    Ok(ph_end.max(notes_end))
}

/// The notes rckpt reads, by kind.
#[derive(Default)]
struct Found<'a> {
    header: Option<ImageHeader>,
    seal: Option<Note<'a>>,
}

impl<'a> Image<'a> {
    /// The one validation every reader (`rckpt info`, `rckpt-loader
    /// --check`, the loader) runs before it trusts anything: ELF structure,
    /// rckpt header and version, the seal over headers and notes, and then
    /// what the sealed notes say (a seal only proves the bytes are what a
    /// writer wrote): segments inside the address space, in order, not
    /// overlapping, their data inside the file; the addresses the restore
    /// jumps through inside stored segments that can hold them; mm fields,
    /// the vDSO block, descriptor and mapped-file tables, working directory
    /// and auxv as the kernel will take them. Segment data is checked by
    /// [`verify_stream`] (or by the loader as it reads it).
    pub fn parse(head: &'a [u8], file_size: u64) -> Result<Image<'a>, ImageError> {
        let mut img = Self::layout(head, file_size)?;
        let found = img.read_notes()?;
        let Some(seal) = found.seal else { return Err(ImageError::Malformed("no seal note")) };
        let s: Seal = pod_read(seal.desc, 0).ok_or(ImageError::Malformed("seal note"))?;
        let sealed = img.notes_off + seal.header_at;
        if hash::xxh64(&head[..sealed], SEAL_SEED) != s.hash {
            return Err(ImageError::Seal);
        }
        img.seal = s.hash;
        // From here on the notes are what a writer wrote; check what they say.
        img.header = found.header.ok_or(ImageError::NotRckpt)?;
        img.check_tables()?;
        img.check_segments()?;
        img.check_ghosts()?;
        (img.trailer_off, img.trailer_len) = img.check_runs()?;
        img.check_addresses()?;
        img.check_mm()?;
        img.check_vdso()?;
        img.check_fds()?;
        img.check_mapfiles()?;
        img.check_cwd_auxv()?;
        Ok(img)
    }

    /// ELF header, program header table and note area: where they are,
    /// and that they lie inside both the file and `head`.
    fn layout(head: &'a [u8], file_size: u64) -> Result<Image<'a>, ImageError> {
        if file_size < 64 || head.len() < 52 {
            return Err(ImageError::TooSmall(file_size));
        }
        let e = elf::read_ehdr(head).ok_or(ImageError::NotElf)?;
        if e.e_type != elf::ET_CORE {
            return Err(ImageError::NotCore);
        }
        if e.phentsize as usize != e.class.phdr_size() {
            return Err(ImageError::Malformed("program header size"));
        }
        let need = head_len(head)?;
        if need > file_size {
            return Err(ImageError::Truncated { need, have: file_size });
        }
        if need > head.len() as u64 {
            return Err(ImageError::HeaderTooLarge(need));
        }
        // Both ranges are inside `head` (need <= head.len()), so the casts
        // below lose nothing.
        let note = elf::read_phdr(head, e.class, e.phoff as usize).filter(|p| p.p_type == elf::PT_NOTE).ok_or(ImageError::NotRckpt)?;
        Ok(Image {
            head,
            class: e.class,
            machine: e.machine,
            header: ImageHeader::default(),
            file_size,
            phoff: e.phoff as usize,
            phentsize: e.phentsize as usize,
            phnum: e.phnum as usize,
            notes_off: note.offset as usize,
            notes_len: note.filesz as usize,
            data_start: page_up(need),
            trailer_off: 0,
            trailer_len: 0,
            seal: 0,
            segs: &[],
            runs: &[],
            fds: &[],
            sigs: &[],
            cwd: &[],
            timers: &[],
            mapfiles: &[],
            ghosts: &[],
            auxv: &[],
        })
    }

    /// Walk the notes once, keeping the ones rckpt reads; the seal must be
    /// the last.
    fn read_notes(&mut self) -> Result<Found<'a>, ImageError> {
        let mut found = Found::default();
        let mut notes = Notes::new(self.notes());
        for n in &mut notes {
            if found.seal.is_some() {
                return Err(ImageError::Malformed("notes after the seal"));
            }
            match (n.name, n.ty) {
                (NOTE_RCKPT, NT_RCKPT_HEADER) => {
                    if n.desc.get(..8) != Some(&IMAGE_MAGIC[..]) {
                        return Err(ImageError::NotRckpt);
                    }
                    let h: ImageHeader = pod_read(n.desc, 0).ok_or(ImageError::Malformed("header note"))?;
                    if h.version != FORMAT_VERSION {
                        return Err(ImageError::Version(h.version));
                    }
                    found.header = Some(h);
                }
                (NOTE_RCKPT, NT_RCKPT_SEGS) => self.segs = n.desc,
                (NOTE_RCKPT, NT_RCKPT_RUNS) => self.runs = n.desc,
                (NOTE_RCKPT, NT_RCKPT_FDS) => self.fds = n.desc,
                (NOTE_RCKPT, NT_RCKPT_SIGS) => self.sigs = n.desc,
                (NOTE_RCKPT, NT_RCKPT_CWD) => self.cwd = n.desc,
                (NOTE_RCKPT, NT_RCKPT_TIMERS) => self.timers = n.desc,
                (NOTE_RCKPT, NT_RCKPT_MAPFILES) => self.mapfiles = n.desc,
                (NOTE_RCKPT, NT_RCKPT_GHOSTS) => self.ghosts = n.desc,
                (NOTE_RCKPT, NT_RCKPT_SEAL) => found.seal = Some(n),
                (NOTE_CORE, NT_AUXV) => self.auxv = n.desc,
                _ => {}
            }
        }
        if notes.malformed {
            return Err(if found.header.is_some() { ImageError::Seal } else { ImageError::Malformed("note table") });
        }
        if found.header.is_none() {
            return Err(ImageError::NotRckpt);
        }
        Ok(found)
    }

    /// Table sizes agree with the header and with each other.
    fn check_tables(&self) -> Result<(), ImageError> {
        let h = &self.header;
        let nseg = h.nseg as usize;
        if h.machine != self.machine as u32 {
            return Err(ImageError::Malformed("the header's architecture differs from the ELF header's"));
        }
        if nseg > MAX_SEGS {
            return Err(ImageError::Malformed("too many segments"));
        }
        if self.segs.len() != nseg * core::mem::size_of::<SegDesc>()
            || !self.runs.len().is_multiple_of(core::mem::size_of::<RunDesc>())
            || self.phnum < 2
            || self.sigs.len() != 64 * core::mem::size_of::<SigDesc>()
            || !(self.timers.is_empty() || self.timers.len() == 3 * core::mem::size_of::<TimerDesc>())
        {
            return Err(ImageError::Malformed("segment, signal or timer table size"));
        }
        Ok(())
    }

    /// Every segment inside user space, page aligned, in address order
    /// without overlap, with a known kind and protection; its runs inside
    /// it, in order; and the `PT_LOAD`s gdb reads exactly the pieces its
    /// runs and gaps make.
    fn check_segments(&self) -> Result<(), ImageError> {
        let top = user_max(self.class);
        let mut prev_end = 0u64;
        let mut vdsos = 0;
        let mut next_run = 0usize;
        let mut ph = 2usize;
        for i in 0..self.nseg() {
            let d = self.seg(i);
            let bad = |what| ImageError::BadSegment { seg: i, vaddr: d.vaddr, what };
            if d.len == 0 || !d.vaddr.is_multiple_of(PAGE_SIZE) || !d.len.is_multiple_of(PAGE_SIZE) {
                return Err(bad("is not page aligned"));
            }
            let end = d.vaddr.checked_add(d.len).ok_or(bad("ends past the address space"))?;
            if d.vaddr < MIN_ADDR {
                return Err(bad("lies below the lowest address a process can map"));
            }
            if end > top {
                return Err(bad("lies outside user address space"));
            }
            if d.vaddr < prev_end {
                return Err(bad("overlaps the segment before it"));
            }
            prev_end = end;
            if d.prot & !(sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC) != 0 {
                return Err(bad("has unknown protection bits"));
            }
            if !seg_kind::known(d.kind) {
                return Err(bad("has an unknown kind"));
            }
            if d.kind == seg_kind::VDSO {
                vdsos += 1;
            }
            if d.kind == seg_kind::SHARED_FILE && d.nrun != 0 {
                return Err(bad("maps a file but has data in the image"));
            }
            if d.first_run as usize != next_run {
                return Err(bad("has runs out of order"));
            }
            next_run = self.check_owner_runs(i as u32, d.first_run, d.nrun, d.len, d.stored).ok_or(bad("has runs outside it"))?;
            for p in load_pieces(d.vaddr, d.len, self.runs_of(d.first_run, d.nrun)) {
                let h = self.phdr(ph).ok_or(ImageError::SegMismatch(i))?;
                if h.p_type != elf::PT_LOAD || (h.vaddr, h.filesz, h.memsz, h.offset) != p {
                    return Err(ImageError::SegMismatch(i));
                }
                ph += 1;
            }
        }
        if vdsos > 1 {
            return Err(ImageError::Malformed("more than one vDSO segment"));
        }
        if ph != self.phnum {
            return Err(ImageError::Malformed("program headers beyond the segments'"));
        }
        Ok(())
    }

    /// The runs `first..first+n` all belong to `owner`, are page aligned,
    /// in order without overlap, inside `[0, len)`, and add up to `stored`.
    /// Returns the index after them.
    fn check_owner_runs(&self, owner: u32, first: u32, n: u32, len: u64, stored: u64) -> Option<usize> {
        let end = (first as usize).checked_add(n as usize)?;
        if end > self.nrun() {
            return None;
        }
        let mut pos = 0u64;
        let mut total = 0u64;
        for r in self.runs_of(first, n) {
            let r_end = r.offset.checked_add(r.len)?;
            let aligned = r.offset.is_multiple_of(PAGE_SIZE) && r.len.is_multiple_of(PAGE_SIZE);
            if r.owner != owner || !aligned || r.len == 0 || r.offset < pos || r_end > len {
                return None;
            }
            pos = r_end;
            total += r.len;
        }
        (total == stored).then_some(end)
    }

    /// The runs in file order: the first at the end of the head, each
    /// right after the one before, the segments' before the ghosts', every
    /// run owned; then the trailer right after them, of the size its sums
    /// need, inside the file.
    fn check_runs(&self) -> Result<(u64, u64), ImageError> {
        let bad = ImageError::Malformed("run table");
        let owned = (0..self.nseg()).map(|i| self.seg(i).nrun as usize).sum::<usize>()
            + (0..self.nghosts()).filter_map(|g| self.ghost(g)).map(|(d, _)| d.nrun as usize).sum::<usize>();
        if owned != self.nrun() {
            return Err(bad);
        }
        let mut off = self.data_start;
        for k in 0..self.nrun() {
            let r = self.run(k);
            if r.file_off != off {
                return Err(bad);
            }
            off = off.checked_add(r.len).ok_or(bad)?;
        }
        let t = self.phdr(1).ok_or(bad)?;
        let want = trailer_len(self.nseg() + self.nghosts());
        if t.p_type != elf::PT_NOTE || t.offset != off || t.filesz != want {
            return Err(ImageError::Malformed("trailer"));
        }
        let end = off.checked_add(want).ok_or(bad)?;
        if end > self.file_size {
            return Err(ImageError::Truncated { need: end, have: self.file_size });
        }
        Ok((off, want))
    }

    /// The index of the segment holding all of `[s, e)`, if one does.
    pub fn seg_holding(&self, s: u64, e: u64) -> Option<usize> {
        (0..self.nseg()).find(|&i| {
            let d = self.seg(i);
            d.vaddr <= s && e <= d.vaddr + d.len
        })
    }

    /// `[s, e)` lies in one segment that has data in the image and the
    /// protection bits `prot` (not the vDSO's copy, which is never restored).
    fn stored_with(&self, s: u64, e: u64, prot: u32) -> bool {
        self.seg_holding(s, e).is_some_and(|i| {
            let d = self.seg(i);
            d.prot & prot == prot && self.stored_range(i, s, e) && d.kind != seg_kind::VDSO
        })
    }

    /// `[s, e)` (addresses inside segment `i`) lies in one of its runs.
    pub fn stored_range(&self, i: usize, s: u64, e: u64) -> bool {
        let d = self.seg(i);
        self.runs_of(d.first_run, d.nrun).any(|r| d.vaddr + r.offset <= s && e <= d.vaddr + r.offset + r.len)
    }

    /// What the loader and the restore tail write or jump through: the
    /// signal frame, the restart patch block, glibc's rseq area (written),
    /// and the restore tail (executed).
    fn check_addresses(&self) -> Result<(), ImageError> {
        let h = &self.header;
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let frame = sigframe(self.class, h.uc_addr).ok_or(ImageError::Malformed("signal frame address"))?;
        if !self.stored_with(frame.0, frame.1, rw) {
            return Err(ImageError::Malformed("the signal frame is not in a stored writable segment"));
        }
        let patch_end = h.patch_addr.checked_add(core::mem::size_of::<RestartPatch>() as u64);
        if !patch_end.is_some_and(|e| self.stored_with(h.patch_addr, e, rw)) {
            return Err(ImageError::Malformed("the restart block is not in a stored writable segment"));
        }
        if !h.tail_addr.checked_add(TAIL_CMP as u64).is_some_and(|e| self.stored_with(h.tail_addr, e, sys::PROT_READ | sys::PROT_EXEC)) {
            return Err(ImageError::Malformed("the restore code is not in a stored executable segment"));
        }
        // TLS: x86_64 keeps the FS and GS bases, i386 the %gs descriptor
        // (`[entry | base << 32, limit | flags << 32]`); a base the kernel
        // would refuse is a lie.
        let bases = match self.class {
            Class::Elf64 => [h.tls[0], h.tls[1]],
            Class::Elf32 => [h.tls[0] >> 32, 0],
        };
        if bases.iter().any(|&b| b >= user_max(self.class)) {
            return Err(ImageError::Malformed("the TLS state points outside user address space"));
        }
        // An i386 descriptor must be one set_thread_area takes: a present
        // 32-bit data segment (`struct user_desc` flag bits).
        let flags = h.tls[1] >> 32;
        let entry = h.tls[0] as u32; // a TLS slot of the GDT: 6-8 (32-bit kernel), 12-14 (64-bit)
        let slot = (6..=8).contains(&entry) || (12..=14).contains(&entry);
        if self.class == Class::Elf32 && h.tls != [0, 0] && (!slot || flags & 1 == 0 || flags & 0x20 != 0 || (flags >> 1) & 3 == 3) {
            return Err(ImageError::Malformed("the TLS descriptor is not a present 32-bit data segment"));
        }
        if h.rseq_len != 0 {
            let end = h.rseq_addr.checked_add(h.rseq_len as u64);
            if h.rseq_len < 32
                || h.rseq_len > 4096
                || !h.rseq_addr.is_multiple_of(32)
                || !end.is_some_and(|e| self.stored_with(h.rseq_addr, e, rw))
            {
                return Err(ImageError::Malformed("the rseq area is not in a stored writable segment"));
            }
            // glibc keeps it in the thread's control block, next to the
            // thread pointer.
            let tp = bases[0];
            if tp == 0 || h.rseq_addr.abs_diff(tp) > 64 << 10 {
                return Err(ImageError::Malformed("the rseq area is not next to the thread pointer"));
            }
        }
        Ok(())
    }

    /// The address-space fields as `PR_SET_MM_MAP` will check them: inside
    /// user space and in order (the loader also tries them before the point
    /// of no return, against this kernel's own limits).
    fn check_mm(&self) -> Result<(), ImageError> {
        let m = &self.header.mm;
        let top = user_max(self.class);
        let all = [
            m.start_code,
            m.end_code,
            m.start_data,
            m.end_data,
            m.start_brk,
            m.brk,
            m.start_stack,
            m.arg_start,
            m.arg_end,
            m.env_start,
            m.env_end,
        ];
        let ordered = m.start_code < m.end_code
            && m.start_data <= m.end_data
            && m.start_brk <= m.brk
            && m.arg_start <= m.arg_end
            && m.env_start <= m.env_end;
        if all.iter().any(|&v| !(MIN_ADDR..top).contains(&v)) || !ordered {
            return Err(ImageError::Malformed("the address-space layout (mm fields) is impossible"));
        }
        Ok(())
    }

    /// The vDSO block: page aligned inside user space, the vDSO inside it,
    /// no segment but the vDSO's copy inside it, and that copy exactly
    /// where the vDSO was.
    fn check_vdso(&self) -> Result<(), ImageError> {
        let h = &self.header;
        let copy = (0..self.nseg()).map(|i| self.seg(i)).find(|d| d.kind == seg_kind::VDSO);
        if h.vdso_block_len == 0 {
            return if copy.is_none() { Ok(()) } else { Err(ImageError::Malformed("a vDSO segment but no vDSO block")) };
        }
        let bad = Err(ImageError::Malformed("the vDSO block cannot be moved into place"));
        let Some(end) = h.vdso_block.checked_add(h.vdso_block_len) else { return bad };
        let vdso_end = h.vdso_off.checked_add(h.vdso_len);
        let aligned = [h.vdso_block, h.vdso_block_len, h.vdso_off, h.vdso_len].iter().all(|v| v.is_multiple_of(PAGE_SIZE));
        if !aligned
            || h.vdso_block < MIN_ADDR
            || end > user_max(self.class)
            || h.vdso_len == 0
            || vdso_end.is_none_or(|e| e > h.vdso_block_len)
        {
            return bad;
        }
        for i in 0..self.nseg() {
            let d = self.seg(i);
            if d.kind != seg_kind::VDSO && d.vaddr < end && d.vaddr + d.len > h.vdso_block {
                return Err(ImageError::BadSegment { seg: i, vaddr: d.vaddr, what: "overlaps the vDSO block" });
            }
        }
        match copy {
            Some(d) if d.vaddr != h.vdso_block + h.vdso_off || d.len != h.vdso_len => bad,
            _ => Ok(()),
        }
    }

    /// The descriptor table: well-formed entries exactly filling the note,
    /// as many as the header says, in increasing fd order, known kinds,
    /// paths of sane length without NUL bytes.
    fn check_fds(&self) -> Result<(), ImageError> {
        let bad = Err(ImageError::Malformed("descriptor table"));
        let mut n = 0u32;
        let mut last = -1i64;
        for e in entries::<FdDesc>(self.fds, |d| d.path_len) {
            let Some((d, path)) = e else { return bad };
            let fd = d.fd as i64;
            if fd <= last || fd >= 1 << 30 || !fd_kind::known(d.kind) || !sane_path(path, d.kind != fd_kind::OTHER) {
                return bad;
            }
            last = fd;
            n += 1;
        }
        if n != self.header.nfd {
            return bad;
        }
        Ok(())
    }

    /// The mapped-file table: one entry per `SHARED_FILE` segment, in
    /// segment order, absolute paths, page-aligned offsets.
    fn check_mapfiles(&self) -> Result<(), ImageError> {
        let bad = Err(ImageError::Malformed("mapped-file table"));
        let mut want = (0..self.nseg()).filter(|&i| self.seg(i).kind == seg_kind::SHARED_FILE);
        for e in entries::<MapFileDesc>(self.mapfiles, |d| d.path_len) {
            let Some((d, path)) = e else { return bad };
            if want.next() != Some(d.seg as usize) || !d.offset.is_multiple_of(PAGE_SIZE) || !sane_path(path, true) {
                return bad;
            }
        }
        if want.next().is_some() {
            return Err(ImageError::Malformed("a shared file mapping without its file"));
        }
        Ok(())
    }

    fn check_cwd_auxv(&self) -> Result<(), ImageError> {
        if !sane_path(self.cwd, true) {
            return Err(ImageError::Malformed("working directory"));
        }
        let pair = 2 * self.class.word();
        if self.auxv.is_empty() || !self.auxv.len().is_multiple_of(pair) || self.auxv.len() > MAX_AUXV {
            return Err(ImageError::Malformed("auxiliary vector"));
        }
        Ok(())
    }

    /// The ghost table, entry by entry: (descriptor, path, offset of the
    /// next entry). Checked arithmetic only; `None` ends it (or marks it
    /// malformed, which [`Image::check_ghosts`] tells apart).
    fn ghost_at(&self, pos: usize) -> Option<(GhostDesc, &'a [u8], usize)> {
        let b = self.ghosts;
        let d: GhostDesc = pod_read(b, pos)?;
        let start = pos.checked_add(core::mem::size_of::<GhostDesc>())?;
        let end = start.checked_add(d.path_len as usize)?;
        let path = b.get(start..end)?;
        let next = end.checked_add(7)? & !7;
        Some((d, path, next))
    }

    pub fn nghosts(&self) -> usize {
        let mut pos = 0;
        let mut n = 0;
        while let Some((_, _, next)) = self.ghost_at(pos) {
            n += 1;
            pos = next;
        }
        n
    }

    /// Ghost file `i`: its descriptor and original path.
    pub fn ghost(&self, i: usize) -> Option<(GhostDesc, &'a [u8])> {
        let mut pos = 0;
        for _ in 0..i {
            pos = self.ghost_at(pos)?.2;
        }
        self.ghost_at(pos).map(|(d, p, _)| (d, p))
    }

    /// The ghost table says what it may: well-formed entries that exactly
    /// fill the note, bounded paths, each data area page aligned, after the
    /// headers and inside the file, no more stored than the file's size;
    /// and every ghost fd and ghost mapping names an existing entry.
    fn check_ghosts(&self) -> Result<(), ImageError> {
        let bad = ImageError::Malformed("ghost file table");
        let mut pos = 0;
        let mut n = 0;
        // The ghosts' runs follow the segments'.
        let mut next_run = (0..self.nseg()).map(|i| self.seg(i).nrun as usize).sum::<usize>();
        while pos < self.ghosts.len() {
            let (d, path, next) = self.ghost_at(pos).ok_or(bad)?;
            if path.is_empty()
                || path.len() >= sys::PATH_MAX
                || path.contains(&0)
                || d.flags & !ghost_flags::ALL != 0
                || next > self.ghosts.len()
                || d.first_run as usize != next_run
            {
                return Err(bad);
            }
            let owner = (self.nseg() + n) as u32;
            if d.size > u64::MAX - PAGE_SIZE {
                return Err(bad);
            }
            next_run = self.check_owner_runs(owner, d.first_run, d.nrun, page_up(d.size), d.stored).ok_or(bad)?;
            n += 1;
            pos = next;
        }
        if pos != self.ghosts.len() || n > MAX_GHOSTS {
            return Err(bad);
        }
        let ghost_ok = |g: u32| (g as usize) < n;
        if self.fds().any(|(d, _)| d.kind == fd_kind::GHOST && !ghost_ok(d.ghost)) {
            return Err(bad);
        }
        let mut pos = 0;
        while let Some(d) = pod_read::<MapFileDesc>(self.mapfiles, pos) {
            if d.ghost != NO_GHOST && !ghost_ok(d.ghost) {
                return Err(bad);
            }
            let start = pos.checked_add(core::mem::size_of::<MapFileDesc>()).ok_or(bad)?;
            pos = start.checked_add(d.path_len as usize).and_then(|e| e.checked_add(7)).ok_or(bad)? & !7;
        }
        Ok(())
    }

    fn notes(&self) -> &'a [u8] {
        &self.head[self.notes_off..self.notes_off + self.notes_len]
    }

    /// All notes (for `rckpt info`).
    pub fn all_notes(&self) -> Notes<'a> {
        Notes::new(self.notes())
    }

    pub fn phdr(&self, i: usize) -> Option<Phdr> {
        elf::read_phdr(self.head, self.class, self.phoff.checked_add(i.checked_mul(self.phentsize)?)?)
    }

    pub fn nseg(&self) -> usize {
        self.header.nseg as usize
    }

    pub fn seg(&self, i: usize) -> SegDesc {
        pod_read(self.segs, i * core::mem::size_of::<SegDesc>()).unwrap_or_default()
    }

    /// Whether segment `i` has data in the file.
    pub fn seg_has_data(&self, i: usize) -> bool {
        self.seg(i).nrun != 0
    }

    pub fn nrun(&self) -> usize {
        self.runs.len() / core::mem::size_of::<RunDesc>()
    }

    pub fn run(&self, k: usize) -> RunDesc {
        pod_read(self.runs, k * core::mem::size_of::<RunDesc>()).unwrap_or_default()
    }

    /// Runs `first..first+n` (those inside the table).
    pub fn runs_of(&self, first: u32, n: u32) -> impl Iterator<Item = RunDesc> + '_ {
        let end = (first as usize).saturating_add(n as usize).min(self.nrun());
        (first as usize..end).map(|k| self.run(k))
    }

    /// The interval timers at the checkpoint (all disarmed if the image
    /// does not say).
    pub fn timers(&self) -> [TimerDesc; 3] {
        let mut t = [TimerDesc::default(); 3];
        for (k, slot) in t.iter_mut().enumerate() {
            if let Some(d) = pod_read(self.timers, k * core::mem::size_of::<TimerDesc>()) {
                *slot = d;
            }
        }
        t
    }

    pub fn sig(&self, signo: usize) -> SigDesc {
        pod_read(self.sigs, (signo - 1) * core::mem::size_of::<SigDesc>()).unwrap_or_default()
    }

    /// The file and offset a `SHARED_FILE` segment maps.
    pub fn mapfile(&self, seg: usize) -> Option<(MapFileDesc, &'a [u8])> {
        entries::<MapFileDesc>(self.mapfiles, |d| d.path_len).map_while(|e| e).find(|(d, _)| d.seg as usize == seg)
    }

    /// The recorded file descriptors with their paths.
    pub fn fds(&self) -> impl Iterator<Item = (FdDesc, &'a [u8])> {
        entries::<FdDesc>(self.fds, |d| d.path_len).map_while(|e| e)
    }
}

/// A path from a table: not empty, shorter than `PATH_MAX`, no NUL bytes,
/// absolute if `absolute`.
fn sane_path(p: &[u8], absolute: bool) -> bool {
    !p.is_empty() && p.len() < sys::PATH_MAX && !p.contains(&0) && (!absolute || p[0] == b'/')
}

/// The entries of a table note: a fixed header `T` whose `len(&T)` bytes
/// of path follow, then zero padding to 8 bytes. Yields `Some(entry)` for
/// each well-formed one, then `None` once if the rest of the note is not a
/// whole entry (and stops).
fn entries<T: Copy>(b: &[u8], len: impl Fn(&T) -> u32) -> impl Iterator<Item = Option<(T, &[u8])>> {
    let mut pos = 0usize;
    core::iter::from_fn(move || {
        if pos >= b.len() {
            return None;
        }
        let one = (|| {
            let d: T = pod_read(b, pos)?;
            let start = pos.checked_add(core::mem::size_of::<T>())?;
            let end = start.checked_add(len(&d) as usize)?;
            let path = b.get(start..end)?;
            Some((d, path, end.checked_add(7)? & !7))
        })();
        match one {
            Some((d, path, next)) => {
                pos = next;
                Some(Some((d, path)))
            }
            None => {
                pos = b.len();
                Some(None)
            }
        }
    })
}

/// The `PT_LOAD` pieces of a segment at `start`, `len` bytes, with its
/// `runs` (in order): `(vaddr, filesz, memsz, offset)` for each run (its
/// data in the file) and each gap (`filesz` 0: zeros). Stops at a run out
/// of order (the validation then finds the pieces wrong).
pub fn load_pieces(start: u64, len: u64, runs: impl IntoIterator<Item = RunDesc>) -> impl Iterator<Item = (u64, u64, u64, u64)> {
    let mut runs = runs.into_iter().peekable();
    let mut pos = 0u64;
    core::iter::from_fn(move || {
        if pos >= len {
            return None;
        }
        match runs.peek().copied() {
            Some(r) if r.offset == pos => {
                runs.next();
                pos = pos.saturating_add(r.len);
                Some((start + r.offset, r.len, r.len, r.file_off))
            }
            Some(r) if r.offset < pos => None,
            next => {
                let to = next.map_or(len, |r| r.offset.min(len));
                let piece = (start + pos, 0, to - pos, 0);
                pos = to;
                Some(piece)
            }
        }
    })
}

/// Bytes of the trailer for `n` sums (segments and ghost files): the sums
/// note and the end note (`RCKPT` notes: a 12-byte header, the name padded
/// to 8).
pub fn trailer_len(n: usize) -> u64 {
    (12 + 8 + 8 * n + 12 + 8 + core::mem::size_of::<Seal>()) as u64
}

/// An image being read front to back from any descriptor.
pub struct Input {
    pub fd: Fd,
    /// Bytes consumed so far (the image's offset).
    pub pos: u64,
}

impl Input {
    /// Exactly `len` bytes into raw memory at `addr`; a short stream is a
    /// truncated image.
    pub fn read_raw(&mut self, addr: usize, len: usize) -> Result<(), ImageError> {
        let mut done = 0;
        while done < len {
            match sys::read_raw(self.fd, addr + done, len - done) {
                Ok(0) => return Err(ImageError::Truncated { need: self.pos + len as u64, have: self.pos + done as u64 }),
                Ok(k) => done += k,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(ImageError::Io("reading the image", e)),
            }
        }
        self.pos += len as u64;
        Ok(())
    }

    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        self.read_raw(buf.as_mut_ptr() as usize, buf.len())
    }

    /// Read and drop bytes up to offset `to`.
    pub fn skip_to(&mut self, to: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        while self.pos < to {
            let k = ((to - self.pos) as usize).min(buf.len());
            self.read(&mut buf[..k])?;
        }
        Ok(())
    }
}

/// Read an image's head (ELF header, program headers, head notes) from
/// `input` into `buf`, no more: what follows stays in the stream. The
/// bytes needed are learnt step by step (the ELF header says where the
/// program headers end, the first of them where the notes end).
pub fn read_head<'b>(input: &mut Input, buf: &'b mut [u8], file_size: u64) -> Result<&'b [u8], ImageError> {
    let first = 64.min(file_size) as usize;
    if first < 52 {
        return Err(ImageError::TooSmall(file_size));
    }
    input.read(&mut buf[..first])?;
    let e = elf::read_ehdr(&buf[..first]).ok_or(ImageError::NotElf)?;
    let ph_end = e.phoff.checked_add(e.phnum as u64 * e.phentsize as u64).ok_or(ImageError::Malformed("program header offset"))?;
    if ph_end > MAX_HEAD {
        return Err(ImageError::HeaderTooLarge(ph_end));
    }
    let mut have = first as u64;
    for need in [ph_end, 0] {
        let need = if need == 0 { head_len(&buf[..have as usize])? } else { need };
        if need > MAX_HEAD || need > buf.len() as u64 {
            return Err(ImageError::HeaderTooLarge(need));
        }
        if need > file_size {
            return Err(ImageError::Truncated { need, have: file_size });
        }
        if need > have {
            input.read(&mut buf[have as usize..need as usize])?;
            have = need;
        }
    }
    Ok(&buf[..have as usize])
}

/// What the restore will return through, caught while the data streams
/// by: the bytes of the signal frame and of the rseq area.
#[derive(Clone, Copy)]
pub struct Catch {
    pub uc: [u8; 256],
    pub rseq: [u8; 8],
}

impl Catch {
    pub const EMPTY: Catch = Catch { uc: [0; 256], rseq: [0; 8] };

    /// Keep what `data`, the bytes at address `at`, holds of either.
    pub fn see(&mut self, img: &Image, at: u64, data: &[u8]) {
        let h = &img.header;
        copy_overlap(&mut self.uc, h.uc_addr, at, data);
        copy_overlap(&mut self.rseq, h.rseq_addr, at, data);
    }
}

/// Copy into `dst` (the bytes at address `d`) what overlaps of `src` (the
/// bytes at address `s`).
fn copy_overlap(dst: &mut [u8], d: u64, s: u64, src: &[u8]) {
    let lo = d.max(s);
    let hi = (d.saturating_add(dst.len() as u64)).min(s.saturating_add(src.len() as u64));
    if lo < hi {
        let n = (hi - lo) as usize;
        dst[(lo - d) as usize..][..n].copy_from_slice(&src[(lo - s) as usize..][..n]);
    }
}

/// Read the data and the trailer that follow the head from `input`
/// (positioned at the head's end), checksumming every run, and check them
/// and the signal frame: with [`Image::parse`], the whole verdict on an
/// image (`rckpt info`; the loader checks the same as it reads the data
/// into place). `sums` has room for every segment and ghost file.
pub fn verify_stream(img: &Image, input: &mut Input, sums: &mut [u64], buf: &mut [u8]) -> Result<(), ImageError> {
    input.skip_to(img.data_start, buf)?;
    let n = img.nseg() + img.nghosts();
    let sums = sums.get_mut(..n).ok_or(ImageError::Malformed("too many segments"))?;
    sums.fill(0);
    let mut catch = Catch::EMPTY;
    for k in 0..img.nrun() {
        let r = img.run(k);
        let owner = r.owner as usize;
        let base = if owner < img.nseg() { Some(img.seg(owner).vaddr) } else { None };
        let mut at = 0;
        while at < r.len {
            let len = ((r.len - at) as usize).min(buf.len());
            input.read(&mut buf[..len])?;
            let mut sum = SegSum(sums[owner]);
            sum.add_pages((r.offset + at) / PAGE_SIZE, &buf[..len]);
            sums[owner] = sum.0;
            if let Some(v) = base {
                catch.see(img, v + r.offset + at, &buf[..len]);
            }
            at += len as u64;
        }
    }
    let t = buf.get_mut(..img.trailer_len as usize).ok_or(ImageError::Malformed("trailer"))?;
    input.read(t)?;
    check_trailer(img, t, sums)?;
    check_frame(img, &catch)
}

/// The trailer: its end seal (seeded with the head's seal), then each
/// segment's and ghost file's checksum against `sums`.
pub fn check_trailer(img: &Image, trailer: &[u8], sums: &[u64]) -> Result<(), ImageError> {
    let bad = ImageError::Malformed("trailer");
    let mut notes = Notes::new(trailer);
    let s = notes.next().filter(|n| n.name == NOTE_RCKPT && n.ty == NT_RCKPT_SUMS).ok_or(bad)?;
    let e = notes.next().filter(|n| n.name == NOTE_RCKPT && n.ty == NT_RCKPT_END).ok_or(bad)?;
    let seal: Seal = pod_read(e.desc, 0).ok_or(bad)?;
    if notes.next().is_some() || hash::xxh64(&trailer[..e.header_at], img.seal) != seal.hash {
        return Err(ImageError::Malformed("the trailer fails its checksum"));
    }
    for (k, &got) in sums.iter().enumerate() {
        let want = elf::rd_u64(s.desc, k * 8).ok_or(bad)?;
        if got != want {
            return Err(if k < img.nseg() {
                ImageError::Checksum { seg: k, vaddr: img.seg(k).vaddr }
            } else {
                ImageError::GhostChecksum(k - img.nseg())
            });
        }
    }
    Ok(())
}

/// The signal frame the restore returns through must describe this
/// image's process: the interrupted instruction in stored executable
/// memory (the program's or the vDSO's), its stack pointer and FPU state
/// in stored writable memory; and the rseq area must hold a registered
/// area's CPU number twice (`cpu_id_start`, `cpu_id`). Catches a `uc_addr`
/// or `rseq_addr` that points at some other writable bytes.
pub fn check_frame(img: &Image, caught: &Catch) -> Result<(), ImageError> {
    let ([ip_at, sp_at, fp_at], w) = frame_fields(img.class);
    let word = |at| elf::rd_word(&caught.uc, at, img.class).unwrap_or(0);
    let (ip, sp, fp) = (word(ip_at), word(sp_at), word(fp_at));
    let holds = |a: u64, len: u64, prot: u32, vdso_ok: bool| {
        img.seg_holding(a, a.saturating_add(len)).is_some_and(|k| {
            let s = img.seg(k);
            s.prot & prot == prot && img.stored_range(k, a, a.saturating_add(len)) && (vdso_ok || s.kind != seg_kind::VDSO)
        })
    };
    let rw = sys::PROT_READ | sys::PROT_WRITE;
    if !holds(ip, 1, sys::PROT_EXEC, true)
        || !holds(sp.saturating_sub(w as u64), w as u64, rw, false)
        || (fp != 0 && !holds(fp, 512, rw, false))
    {
        return Err(ImageError::Malformed("the signal frame does not describe this image's memory"));
    }
    if img.header.rseq_len != 0 {
        let (start, now) = (elf::rd_u32(&caught.rseq, 0).unwrap_or(0), elf::rd_u32(&caught.rseq, 4).unwrap_or(1));
        if start != now || start >= 1 << 16 {
            return Err(ImageError::Malformed("the rseq area does not hold a registered rseq area"));
        }
    }
    Ok(())
}

/// `pread` exactly `buf.len()` bytes at `off`.
pub fn read_exact(fd: Fd, buf: &mut [u8], off: u64) -> Result<(), ImageError> {
    read_exact_raw(fd, buf.as_mut_ptr() as usize, buf.len(), off)
}

/// `pread` exactly `len` bytes at `off` into raw memory at `addr`.
pub fn read_exact_raw(fd: Fd, addr: usize, len: usize, off: u64) -> Result<(), ImageError> {
    let mut done = 0;
    while done < len {
        match sys::pread_raw(fd, addr + done, len - done, off + done as u64) {
            Ok(0) => return Err(ImageError::Truncated { need: off + len as u64, have: off + done as u64 }),
            Ok(k) => done += k,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(ImageError::Io("reading the image", e)),
        }
    }
    Ok(())
}
