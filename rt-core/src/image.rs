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
            ImageError::HeaderTooLarge(n) => l.t("image headers too large (").u(n).t(" bytes)"),
            ImageError::Malformed(what) => l.t("corrupt image: ").t(what),
            ImageError::NotRckpt => l.t("not an rckpt image (an ELF core file without rckpt notes)"),
            ImageError::Version(v) => {
                l.t("image format version ").u(v as u64).t(" is not supported (this rckpt reads version ").u(FORMAT_VERSION as u64).t(")")
            }
            ImageError::Seal => l.t("corrupt image: the headers and notes fail their checksum"),
            ImageError::SegMismatch(i) => {
                l.t("corrupt image: program header of segment ").u(i as u64).t(" disagrees with the segment table")
            }
            ImageError::Checksum { seg, vaddr } => l.t("corrupt image: segment ").u(seg as u64).t(" (").x(vaddr).t(") fails its checksum"),
            ImageError::GhostChecksum(i) => l.t("corrupt image: saved deleted file ").u(i as u64).t(" fails its checksum"),
        };
    }
}

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
/// alone (`None` if this is not an ELF file).
pub fn head_len(first: &[u8]) -> Option<u64> {
    let e = elf::read_ehdr(first)?;
    let ph_end = e.phoff + e.phnum as u64 * e.phentsize as u64;
    let p = elf::read_phdr(first, e.class, e.phoff as usize).filter(|p| p.p_type == elf::PT_NOTE);
    Some(match p {
        Some(p) => ph_end.max(p.offset + p.filesz),
        None => ph_end,
    })
}

impl<'a> Image<'a> {
    /// Validate everything but the segment data: ELF structure, rckpt
    /// header and version, the seal over headers and notes, the segment
    /// table against the program headers, and the file's length.
    pub fn parse(head: &'a [u8], file_size: u64) -> Result<Image<'a>, ImageError> {
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
        let need = head_len(head).ok_or(ImageError::NotElf)?;
        if need > file_size {
            return Err(ImageError::Truncated { need, have: file_size });
        }
        if need > head.len() as u64 {
            return Err(ImageError::HeaderTooLarge(need));
        }
        let note = elf::read_phdr(head, e.class, e.phoff as usize).filter(|p| p.p_type == elf::PT_NOTE).ok_or(ImageError::NotRckpt)?;
        let mut img = Image {
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
            segs: &[],
            fds: &[],
            sigs: &[],
            cwd: &[],
            timers: &[],
            mapfiles: &[],
            ghosts: &[],
            auxv: &[],
        };
        let mut have_header = false;
        let mut seal: Option<Note> = None;
        let mut notes = Notes::new(img.notes());
        for n in &mut notes {
            if seal.is_some() {
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
                    img.header = h;
                    have_header = true;
                }
                (NOTE_RCKPT, NT_RCKPT_SEGS) => img.segs = n.desc,
                (NOTE_RCKPT, NT_RCKPT_FDS) => img.fds = n.desc,
                (NOTE_RCKPT, NT_RCKPT_SIGS) => img.sigs = n.desc,
                (NOTE_RCKPT, NT_RCKPT_CWD) => img.cwd = n.desc,
                (NOTE_RCKPT, NT_RCKPT_TIMERS) => img.timers = n.desc,
                (NOTE_RCKPT, NT_RCKPT_MAPFILES) => img.mapfiles = n.desc,
                (NOTE_RCKPT, NT_RCKPT_GHOSTS) => img.ghosts = n.desc,
                (NOTE_RCKPT, NT_RCKPT_SEAL) => seal = Some(n),
                (NOTE_CORE, NT_AUXV) => img.auxv = n.desc,
                _ => {}
            }
        }
        if notes.malformed {
            return Err(if have_header { ImageError::Seal } else { ImageError::Malformed("note table") });
        }
        if !have_header {
            return Err(ImageError::NotRckpt);
        }
        let seal = seal.ok_or(ImageError::Malformed("no seal note"))?;
        let s: Seal = pod_read(seal.desc, 0).ok_or(ImageError::Malformed("seal note"))?;
        let sealed = img.notes_off + seal.header_at;
        if hash::xxh64(&head[..sealed], SEAL_SEED) != s.hash {
            return Err(ImageError::Seal);
        }
        // From here on the notes are what the writer wrote.
        let nseg = img.header.nseg as usize;
        if img.segs.len() != nseg * core::mem::size_of::<SegDesc>()
            || img.phnum != nseg + 1
            || img.sigs.len() != 64 * core::mem::size_of::<SigDesc>()
            || !(img.timers.is_empty() || img.timers.len() == 3 * core::mem::size_of::<TimerDesc>())
        {
            return Err(ImageError::Malformed("segment, signal or timer table size"));
        }
        for i in 0..nseg {
            let d = img.seg(i);
            let p = img.phdr(i + 1).ok_or(ImageError::SegMismatch(i))?;
            let filesz = if p.filesz == 0 { 0 } else { d.len };
            if p.p_type != elf::PT_LOAD
                || p.vaddr != d.vaddr
                || p.memsz != d.len
                || p.filesz != filesz
                || p.offset != d.file_off
                || !d.file_off.is_multiple_of(PAGE_SIZE)
                || !d.vaddr.is_multiple_of(PAGE_SIZE)
                || !d.len.is_multiple_of(PAGE_SIZE)
            {
                return Err(ImageError::SegMismatch(i));
            }
            let end = d.file_off + filesz;
            if end > file_size {
                return Err(ImageError::Truncated { need: end, have: file_size });
            }
        }
        img.check_ghosts()?;
        Ok(img)
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
        elf::read_phdr(self.head, self.class, self.phoff + i * self.phentsize)
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
        let b = self.mapfiles;
        let mut pos = 0;
        while let Some(d) = pod_read::<MapFileDesc>(b, pos) {
            let start = pos + core::mem::size_of::<MapFileDesc>();
            let path = b.get(start..start + d.path_len as usize)?;
            if d.seg as usize == seg {
                return Some((d, path));
            }
            pos = (start + d.path_len as usize + 7) & !7;
        }
        None
    }

    /// The recorded file descriptors with their paths.
    pub fn fds(&self) -> impl Iterator<Item = (FdDesc, &'a [u8])> {
        let b = self.fds;
        let mut pos = 0;
        core::iter::from_fn(move || {
            let d: FdDesc = pod_read(b, pos)?;
            let start = pos + core::mem::size_of::<FdDesc>();
            let path = b.get(start..start + d.path_len as usize)?;
            pos = (start + d.path_len as usize + 7) & !7;
            Some((d, path))
        })
    }
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
