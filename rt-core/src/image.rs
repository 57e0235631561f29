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
    /// Where segment data may start: the end of the headers, page aligned.
    data_start: u64,
    segs: &'a [u8],
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
    /// [`verify_segment`] (or by the loader as it reads it).
    pub fn parse(head: &'a [u8], file_size: u64) -> Result<Image<'a>, ImageError> {
        let mut img = Self::layout(head, file_size)?;
        let found = img.read_notes()?;
        let Some(seal) = found.seal else { return Err(ImageError::Malformed("no seal note")) };
        let s: Seal = pod_read(seal.desc, 0).ok_or(ImageError::Malformed("seal note"))?;
        let sealed = img.notes_off + seal.header_at;
        if hash::xxh64(&head[..sealed], SEAL_SEED) != s.hash {
            return Err(ImageError::Seal);
        }
        // From here on the notes are what a writer wrote; check what they say.
        img.header = found.header.ok_or(ImageError::NotRckpt)?;
        img.check_tables()?;
        img.check_segments()?;
        img.check_addresses()?;
        img.check_mm()?;
        img.check_vdso()?;
        img.check_fds()?;
        img.check_mapfiles()?;
        img.check_cwd_auxv()?;
        img.check_ghosts()?;
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
            segs: &[],
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
            || self.phnum != nseg + 1
            || self.sigs.len() != 64 * core::mem::size_of::<SigDesc>()
            || !(self.timers.is_empty() || self.timers.len() == 3 * core::mem::size_of::<TimerDesc>())
        {
            return Err(ImageError::Malformed("segment, signal or timer table size"));
        }
        Ok(())
    }

    /// Each segment against its program header; all of them inside user
    /// space, page aligned, in address order without overlap; their data
    /// after the headers, inside the file, in file order without overlap.
    fn check_segments(&self) -> Result<(), ImageError> {
        let top = user_max(self.class);
        let mut prev_end = 0u64;
        let mut data_end = self.data_start;
        let mut vdsos = 0;
        for i in 0..self.nseg() {
            let d = self.seg(i);
            let p = self.phdr(i + 1).ok_or(ImageError::SegMismatch(i))?;
            let filesz = if p.filesz == 0 { 0 } else { d.len };
            if p.p_type != elf::PT_LOAD || p.vaddr != d.vaddr || p.memsz != d.len || p.filesz != filesz || p.offset != d.file_off {
                return Err(ImageError::SegMismatch(i));
            }
            let bad = |what| ImageError::BadSegment { seg: i, vaddr: d.vaddr, what };
            if d.len == 0 || !d.vaddr.is_multiple_of(PAGE_SIZE) || !d.len.is_multiple_of(PAGE_SIZE) || !d.file_off.is_multiple_of(PAGE_SIZE)
            {
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
            if d.stored > d.len {
                return Err(bad("stores more than its length"));
            }
            if d.kind == seg_kind::VDSO {
                vdsos += 1;
            }
            if d.kind == seg_kind::SHARED_FILE && filesz != 0 {
                return Err(bad("maps a file but has data in the image"));
            }
            if filesz != 0 {
                if d.file_off < data_end {
                    return Err(bad("has its data over the headers or another segment's data"));
                }
                data_end = d.file_off.checked_add(d.len).ok_or(bad("has its data past the end of the file"))?;
                if data_end > self.file_size {
                    return Err(ImageError::Truncated { need: data_end, have: self.file_size });
                }
            }
        }
        if vdsos > 1 {
            return Err(ImageError::Malformed("more than one vDSO segment"));
        }
        Ok(())
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
            d.prot & prot == prot && self.seg_has_data(i) && d.kind != seg_kind::VDSO
        })
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
        let headers_end = self.notes_off.checked_add(self.notes_len).ok_or(bad)? as u64;
        let mut pos = 0;
        let mut n = 0;
        while pos < self.ghosts.len() {
            let (d, path, next) = self.ghost_at(pos).ok_or(bad)?;
            let end = d.file_off.checked_add(d.size).ok_or(bad)?;
            if path.is_empty()
                || path.len() >= sys::PATH_MAX
                || path.contains(&0)
                || d.flags & !ghost_flags::ALL != 0
                || !d.file_off.is_multiple_of(PAGE_SIZE)
                || d.file_off < headers_end
                || d.stored > d.size
                || next > self.ghosts.len()
            {
                return Err(bad);
            }
            if end > self.file_size {
                return Err(ImageError::Truncated { need: end, have: self.file_size });
            }
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
        self.phdr(i + 1).is_some_and(|p| p.filesz != 0)
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

/// Call `f(start, end)` for each page-rounded data extent of
/// `[off, off + len)` in the file (holes are skipped), in order and without
/// overlap.
pub fn for_each_extent(fd: Fd, off: u64, len: u64, mut f: impl FnMut(u64, u64) -> Result<(), ImageError>) -> Result<(), ImageError> {
    let end = off + len;
    let mut pos = off;
    while pos < end {
        let d = match sys::lseek(fd, pos, sys::SEEK_DATA) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(ImageError::Io("seeking image data", e)),
        };
        if d >= end {
            break;
        }
        let h = sys::lseek(fd, d, sys::SEEK_HOLE).map_err(|e| ImageError::Io("seeking image holes", e))?;
        let s = (d & !(PAGE_SIZE - 1)).max(pos);
        let e = page_up(h).min(end);
        if e > s {
            f(s, e)?;
        }
        pos = e.max(pos + 1);
    }
    Ok(())
}

/// Read and checksum segment `i` through `buf`; used where the data is not
/// being read into place (`rckpt info`, and segments the loader cannot map
/// yet).
pub fn verify_segment(img: &Image, fd: Fd, i: usize, buf: &mut [u8]) -> Result<(), ImageError> {
    let d = img.seg(i);
    if !img.seg_has_data(i) {
        return Ok(());
    }
    let mut sum = SegSum::default();
    for_each_extent(fd, d.file_off, d.len, |s, e| {
        let mut p = s;
        while p < e {
            let n = ((e - p) as usize).min(buf.len());
            read_exact(fd, &mut buf[..n], p)?;
            sum.add_pages((p - d.file_off) / PAGE_SIZE, &buf[..n]);
            p += n as u64;
        }
        Ok(())
    })?;
    if sum.0 != d.checksum {
        return Err(ImageError::Checksum { seg: i, vaddr: d.vaddr });
    }
    Ok(())
}

/// Checksum every segment's and ghost file's data through `buf`, then check the signal
/// frame: with [`Image::parse`], the whole verdict on an image (`rckpt
/// info`; the loader checks the same sums as it reads the data into place,
/// and the same frame).
pub fn verify_data(img: &Image, fd: Fd, buf: &mut [u8]) -> Result<(), ImageError> {
    (0..img.nseg()).try_for_each(|i| verify_segment(img, fd, i, buf))?;
    (0..img.nghosts()).try_for_each(|i| verify_ghost(img, fd, i, buf))?;
    check_frame(img, fd)
}

/// The signal frame the restore returns through must describe this
/// image's process: the interrupted instruction in stored executable
/// memory (the program's or the vDSO's), its stack pointer and FPU state
/// in stored writable memory. Catches a `uc_addr` that points at some
/// other writable bytes.
pub fn check_frame(img: &Image, fd: Fd) -> Result<(), ImageError> {
    let h = &img.header;
    let ([ip_at, sp_at, fp_at], w) = frame_fields(img.class);
    let mut uc = [0u8; 256];
    let i = img
        .seg_holding(h.uc_addr, h.uc_addr + uc.len() as u64)
        .ok_or(ImageError::Malformed("the signal frame is not in a stored writable segment"))?;
    let d = img.seg(i);
    read_exact(fd, &mut uc, d.file_off + (h.uc_addr - d.vaddr))?;
    let word = |at| elf::rd_word(&uc, at, img.class).unwrap_or(0);
    let (ip, sp, fp) = (word(ip_at), word(sp_at), word(fp_at));
    let holds = |a: u64, len: u64, prot: u32, vdso_ok: bool| {
        img.seg_holding(a, a.saturating_add(len)).is_some_and(|k| {
            let s = img.seg(k);
            s.prot & prot == prot && img.seg_has_data(k) && (vdso_ok || s.kind != seg_kind::VDSO)
        })
    };
    let rw = sys::PROT_READ | sys::PROT_WRITE;
    if !holds(ip, 1, sys::PROT_EXEC, true)
        || !holds(sp.saturating_sub(w as u64), w as u64, rw, false)
        || (fp != 0 && !holds(fp, 512, rw, false))
    {
        return Err(ImageError::Malformed("the signal frame does not describe this image's memory"));
    }
    check_rseq(img, fd)
}

/// A registered rseq area holds the CPU the thread last ran on twice
/// (`cpu_id_start`, `cpu_id`); other bytes the loader would hand to the
/// kernel as one (and overwrite) are refused.
fn check_rseq(img: &Image, fd: Fd) -> Result<(), ImageError> {
    let h = &img.header;
    if h.rseq_len == 0 {
        return Ok(());
    }
    let mut area = [0u8; 8];
    let d = img.seg_holding(h.rseq_addr, h.rseq_addr + 8).map(|i| img.seg(i)).ok_or(ImageError::Malformed("rseq area"))?;
    read_exact(fd, &mut area, d.file_off + (h.rseq_addr - d.vaddr))?;
    let (start, now) = (elf::rd_u32(&area, 0).unwrap_or(0), elf::rd_u32(&area, 4).unwrap_or(1));
    if start != now || start >= 1 << 16 {
        return Err(ImageError::Malformed("the rseq area does not hold a registered rseq area"));
    }
    Ok(())
}

/// Read and checksum ghost file `i`'s data through `buf` (`rckpt info`;
/// the loader checks it while it copies the data into the new file).
pub fn verify_ghost(img: &Image, fd: Fd, i: usize, buf: &mut [u8]) -> Result<(), ImageError> {
    let Some((d, _)) = img.ghost(i) else {
        return Err(ImageError::Malformed("ghost file table"));
    };
    let mut sum = SegSum::default();
    for_each_extent(fd, d.file_off, d.size, |s, e| {
        let mut p = s;
        while p < e {
            let n = ((e - p) as usize).min(buf.len());
            read_exact(fd, &mut buf[..n], p)?;
            sum.add_pages((p - d.file_off) / PAGE_SIZE, &buf[..n]);
            p += n as u64;
        }
        Ok(())
    })?;
    if sum.0 != d.checksum {
        return Err(ImageError::GhostChecksum(i));
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
