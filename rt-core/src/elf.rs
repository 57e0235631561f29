//! ELF core-file encoding and decoding for both classes. The writer always
//! uses the process's own class ([`Class::NATIVE`]); readers take the class
//! from the file. One code path, parameterized by [`Class`].

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    Elf32,
    Elf64,
}

pub const ET_CORE: u16 = 4;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

impl Class {
    #[cfg(target_pointer_width = "64")]
    pub const NATIVE: Class = Class::Elf64;
    #[cfg(target_pointer_width = "32")]
    pub const NATIVE: Class = Class::Elf32;

    pub fn ehdr_size(self) -> usize {
        match self {
            Class::Elf32 => 52,
            Class::Elf64 => 64,
        }
    }
    pub fn phdr_size(self) -> usize {
        match self {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        }
    }
    pub fn word(self) -> usize {
        match self {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        }
    }
    pub fn bits(self) -> u32 {
        match self {
            Class::Elf32 => 32,
            Class::Elf64 => 64,
        }
    }
}

/// A little-endian byte cursor over a caller-provided buffer. Writes past
/// the end are dropped and remembered in `overflow` (checked by callers),
/// never a panic.
pub struct Cursor<'a> {
    pub buf: &'a mut [u8],
    pub pos: usize,
    pub overflow: bool,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Cursor { buf, pos: 0, overflow: false }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) => dst.copy_from_slice(b),
            None => self.overflow = true,
        }
        self.pos += b.len();
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes())
    }
    pub fn word(&mut self, c: Class, v: u64) {
        match c {
            Class::Elf32 => self.u32(v as u32),
            Class::Elf64 => self.u64(v),
        }
    }
    pub fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.bytes(&[0]);
        }
    }
    pub fn align(&mut self, a: usize) {
        while !self.pos.is_multiple_of(a) {
            self.bytes(&[0]);
        }
    }
    /// Pad to a multiple of `a` counted from `base` (a note descriptor's
    /// start, which is only 4-aligned in the file).
    pub fn align_from(&mut self, base: usize, a: usize) {
        while !(self.pos - base).is_multiple_of(a) {
            self.bytes(&[0]);
        }
    }
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(dst) = self.buf.get_mut(at..at + 4) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Start a note: writes its header and name. Pass the mark to
    /// [`Cursor::end_note`] once the descriptor is written.
    pub fn begin_note(&mut self, name: &[u8], ty: u32) -> NoteMark {
        let hdr = self.pos;
        self.u32(name.len() as u32 + 1);
        self.u32(0); // descsz, patched by end_note
        self.u32(ty);
        self.bytes(name);
        self.bytes(&[0]);
        self.align(4);
        NoteMark { hdr, desc: self.pos }
    }
    pub fn end_note(&mut self, m: NoteMark) {
        let size = (self.pos - m.desc) as u32;
        self.patch_u32(m.hdr + 4, size);
        self.align(4);
    }
}

/// Where a note being written starts (header) and where its descriptor starts.
#[derive(Clone, Copy)]
pub struct NoteMark {
    pub hdr: usize,
    pub desc: usize,
}

/// Write an ELF core header.
pub fn write_ehdr(c: &mut Cursor, class: Class, machine: u16, phoff: u64, phnum: u16) {
    c.bytes(&[0x7f, b'E', b'L', b'F']);
    c.bytes(&[if class == Class::Elf64 { 2 } else { 1 }, 1, 1, 0]);
    c.zeros(8);
    c.u16(ET_CORE);
    c.u16(machine);
    c.u32(1); // EV_CURRENT
    c.word(class, 0); // e_entry
    c.word(class, phoff);
    c.word(class, 0); // e_shoff
    c.u32(0); // e_flags
    c.u16(class.ehdr_size() as u16);
    c.u16(class.phdr_size() as u16);
    c.u16(phnum);
    c.u16(0); // e_shentsize
    c.u16(0); // e_shnum
    c.u16(0); // e_shstrndx
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

pub fn write_phdr(c: &mut Cursor, class: Class, p: &Phdr) {
    match class {
        Class::Elf64 => {
            c.u32(p.p_type);
            c.u32(p.flags);
            c.u64(p.offset);
            c.u64(p.vaddr);
            c.u64(0); // p_paddr
            c.u64(p.filesz);
            c.u64(p.memsz);
            c.u64(p.align);
        }
        Class::Elf32 => {
            c.u32(p.p_type);
            c.u32(p.offset as u32);
            c.u32(p.vaddr as u32);
            c.u32(0);
            c.u32(p.filesz as u32);
            c.u32(p.memsz as u32);
            c.u32(p.flags);
            c.u32(p.align as u32);
        }
    }
}

/// `len` bytes at `o`, or `None` when they are not all inside `b` (checked
/// arithmetic: `o` may come from a file and be anything).
fn field(b: &[u8], o: usize, len: usize) -> Option<&[u8]> {
    b.get(o..o.checked_add(len)?)
}
fn rd_u16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(field(b, o, 2)?.try_into().ok()?))
}
pub fn rd_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(field(b, o, 4)?.try_into().ok()?))
}
pub fn rd_u64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(field(b, o, 8)?.try_into().ok()?))
}
pub fn rd_word(b: &[u8], o: usize, c: Class) -> Option<u64> {
    match c {
        Class::Elf32 => rd_u32(b, o).map(|v| v as u64),
        Class::Elf64 => rd_u64(b, o),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Ehdr {
    pub class: Class,
    pub e_type: u16,
    pub machine: u16,
    pub phoff: u64,
    pub phentsize: u16,
    pub phnum: u16,
}

/// Parse the identification and header. `None` if this is not an ELF file
/// of a class we know.
pub fn read_ehdr(b: &[u8]) -> Option<Ehdr> {
    if b.get(0..4)? != [0x7f, b'E', b'L', b'F'] || *b.get(5)? != 1 {
        return None;
    }
    let class = match b[4] {
        1 => Class::Elf32,
        2 => Class::Elf64,
        _ => return None,
    };
    let (phoff, rest) = match class {
        Class::Elf64 => (rd_u64(b, 32)?, 54),
        Class::Elf32 => (rd_u32(b, 28)? as u64, 42),
    };
    Some(Ehdr { class, e_type: rd_u16(b, 16)?, machine: rd_u16(b, 18)?, phoff, phentsize: rd_u16(b, rest)?, phnum: rd_u16(b, rest + 2)? })
}

pub fn read_phdr(b: &[u8], class: Class, o: usize) -> Option<Phdr> {
    field(b, o, class.phdr_size())?;
    Some(match class {
        Class::Elf64 => Phdr {
            p_type: rd_u32(b, o)?,
            flags: rd_u32(b, o + 4)?,
            offset: rd_u64(b, o + 8)?,
            vaddr: rd_u64(b, o + 16)?,
            filesz: rd_u64(b, o + 32)?,
            memsz: rd_u64(b, o + 40)?,
            align: rd_u64(b, o + 48)?,
        },
        Class::Elf32 => Phdr {
            p_type: rd_u32(b, o)?,
            offset: rd_u32(b, o + 4)? as u64,
            vaddr: rd_u32(b, o + 8)? as u64,
            filesz: rd_u32(b, o + 16)? as u64,
            memsz: rd_u32(b, o + 20)? as u64,
            flags: rd_u32(b, o + 24)?,
            align: rd_u32(b, o + 28)? as u64,
        },
    })
}

/// One note: name (without NUL), type, descriptor, and where its header
/// starts (relative to the note area).
#[derive(Clone, Copy)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub ty: u32,
    pub desc: &'a [u8],
    pub header_at: usize,
}

/// Iterate the notes of a note area; stops at the first malformed entry
/// (reported through [`Notes::malformed`]).
pub struct Notes<'a> {
    area: &'a [u8],
    pos: usize,
    pub malformed: bool,
}

impl<'a> Notes<'a> {
    pub fn new(area: &'a [u8]) -> Self {
        Notes { area, pos: 0, malformed: false }
    }
}

impl<'a> Iterator for Notes<'a> {
    type Item = Note<'a>;
    fn next(&mut self) -> Option<Note<'a>> {
        if self.pos >= self.area.len() {
            return None;
        }
        let n = self.at(self.pos);
        match n {
            Some((note, next)) => {
                self.pos = next;
                Some(note)
            }
            None => {
                self.malformed = true;
                self.pos = self.area.len();
                None
            }
        }
    }
}

impl<'a> Notes<'a> {
    /// The note whose header is at `at`, and where the next one starts;
    /// `None` if any part of it lies outside the area (every size from the
    /// file goes through checked arithmetic: a 32-bit reader too).
    fn at(&self, at: usize) -> Option<(Note<'a>, usize)> {
        let namesz = rd_u32(self.area, at)? as usize;
        let descsz = rd_u32(self.area, at.checked_add(4)?)? as usize;
        let ty = rd_u32(self.area, at.checked_add(8)?)?;
        let name_at = at.checked_add(12)?;
        let name = field(self.area, name_at, namesz)?;
        let desc_at = align4(name_at.checked_add(namesz)?)?;
        let desc = field(self.area, desc_at, descsz)?;
        let next = align4(desc_at + descsz)?.min(self.area.len());
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        Some((Note { name, ty, desc, header_at: at }, next))
    }
}

fn align4(v: usize) -> Option<usize> {
    Some(v.checked_add(3)? & !3)
}
