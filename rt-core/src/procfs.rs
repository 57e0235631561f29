//! Parsers for the /proc/self files the checkpoint reads. They work on bytes
//! already read into a fixed buffer (read everything first, then change
//! nothing while parsing); no allocation.

/// One line of /proc/self/maps.
#[derive(Clone, Copy, Default, Debug)]
pub struct MapLine {
    pub start: usize,
    pub end: usize,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    /// The device (`major:minor`, hex) and inode of a file mapping.
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// Range of the path (or `[name]`) inside the maps text.
    pub name_at: u32,
    pub name_len: u32,
}

impl MapLine {
    pub fn name<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.name_at as usize..(self.name_at + self.name_len) as usize]
    }
}

/// Whether a mapping named `name` belongs to the vDSO block: the vDSO and
/// its vvar pages (`[vvar]`, `[vvar_vclock]`...), which move as one.
pub fn is_vdso_block(name: &[u8]) -> bool {
    name.starts_with(b"[vvar") || name == b"[vdso]"
}

/// The vDSO block of a maps listing: where its mappings start and end, and
/// where the vDSO itself is (all 0 when there is none).
#[derive(Clone, Copy, Default, Debug)]
pub struct VdsoBlock {
    pub block: usize,
    pub block_end: usize,
    pub vdso: usize,
    pub vdso_end: usize,
}

impl VdsoBlock {
    /// Take mapping `m` (named `name`) into the block if it belongs to it;
    /// whether it did.
    pub fn add(&mut self, m: &MapLine, name: &[u8]) -> bool {
        if !is_vdso_block(name) {
            return false;
        }
        self.block = if self.block_end == 0 { m.start } else { self.block.min(m.start) };
        self.block_end = self.block_end.max(m.end);
        if name == b"[vdso]" {
            self.vdso = m.start;
            self.vdso_end = m.end;
        }
        true
    }
}

fn hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(d as u64)?;
    }
    Some(v)
}

pub fn dec(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

fn oct(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in b {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Parse one maps line starting at `at` in `text` (ending before `end`).
pub fn parse_map_line(text: &[u8], at: usize, end: usize) -> Option<MapLine> {
    let line = &text[at..end];
    let mut fields = [(0usize, 0usize); 5];
    let mut i = 0;
    for f in fields.iter_mut() {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let s = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        *f = (s, i);
    }
    while i < line.len() && line[i] == b' ' {
        i += 1;
    }
    let f = |k: usize| &line[fields[k].0..fields[k].1];
    let range = f(0);
    let dash = range.iter().position(|&c| c == b'-')?;
    let perms = f(1);
    if perms.len() < 4 {
        return None;
    }
    let dev = f(3);
    let colon = dev.iter().position(|&c| c == b':')?;
    Some(MapLine {
        start: hex(&range[..dash])? as usize,
        end: hex(&range[dash + 1..])? as usize,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: hex(f(2))?,
        dev_major: u32::try_from(hex(&dev[..colon])?).ok()?,
        dev_minor: u32::try_from(hex(&dev[colon + 1..])?).ok()?,
        inode: dec(f(4))?,
        name_at: (at + i) as u32,
        name_len: (line.len() - i) as u32,
    })
}

/// Iterate the lines of a text buffer as (start, end) offsets.
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = 0;
    core::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let s = pos;
        let e = text[s..].iter().position(|&c| c == b'\n').map_or(text.len(), |k| s + k);
        pos = e + 1;
        Some((s, e))
    })
}

/// Field `n` (1-based, as in proc(5)) of /proc/self/stat. The second field
/// (comm) may contain spaces and parentheses: counting starts after the last
/// ')'.
pub fn stat_field(text: &[u8], n: usize) -> Option<u64> {
    let close = text.iter().rposition(|&c| c == b')')?;
    let rest = &text[close + 1..];
    // Field 3 is the first after ')'.
    let mut k = 2;
    for w in rest.split(|&c| c == b' ' || c == b'\n').filter(|w| !w.is_empty()) {
        k += 1;
        if k == n {
            return dec(w);
        }
    }
    None
}

/// `pos:` and `flags:` of /proc/self/fdinfo/N.
pub fn fdinfo(text: &[u8]) -> Option<(u64, u32)> {
    let mut pos = None;
    let mut flags = None;
    for (s, e) in lines(text) {
        let l = &text[s..e];
        let val = |p: &[u8]| -> &[u8] {
            let v = &l[p.len()..];
            let k = v.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(v.len());
            &v[k..]
        };
        if l.starts_with(b"pos:") {
            pos = dec(val(b"pos:"));
        } else if l.starts_with(b"flags:") {
            flags = oct(val(b"flags:")).map(|v| v as u32);
        }
    }
    Some((pos?, flags?))
}

/// Names in a getdents64 buffer.
pub fn dirents(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    core::iter::from_fn(move || {
        let reclen = crate::elf::rd_u32(buf, pos + 16).map(|v| v as u16 as usize)?;
        if reclen == 0 || pos + reclen > buf.len() {
            return None;
        }
        let name = &buf[pos + 19..pos + reclen];
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
        pos += reclen;
        Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_line() {
        let t = b"7f12a000-7f12c000 r-xp 00002000 fd:01 1234    /usr/lib/x b\n";
        let m = parse_map_line(t, 0, t.len() - 1).unwrap();
        assert_eq!(m.start, 0x7f12a000);
        assert_eq!(m.end, 0x7f12c000);
        assert!(m.read && !m.write && m.exec && !m.shared);
        assert_eq!(m.offset, 0x2000);
        assert_eq!(m.inode, 1234);
        assert_eq!((m.dev_major, m.dev_minor), (0xfd, 1));
        assert_eq!(m.name(t), b"/usr/lib/x b");
        let t = b"7ffd0000-7ffd1000 rw-p 00000000 00:00 0 \n";
        let m = parse_map_line(t, 0, t.len() - 1).unwrap();
        assert_eq!(m.name(t), b"");
        let t = b"7f00-8f00 rw-s 00000000 103:1a2 99 /tmp/x (deleted)\n";
        let m = parse_map_line(t, 0, t.len() - 1).unwrap();
        assert_eq!((m.dev_major, m.dev_minor, m.inode), (0x103, 0x1a2, 99));
        assert!(parse_map_line(b"7f00-8f00 rw-s 0 0801 9 /x", 0, 26).is_none());
    }

    #[test]
    fn stat_fields_after_comm_with_spaces() {
        let t = b"12 (a) b) S 1 12 12 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 99 1000 50 18446744073709551615 4096 8192 777";
        assert_eq!(stat_field(t, 3), None); // "S" is not a number
        assert_eq!(stat_field(t, 4), Some(1));
        assert_eq!(stat_field(t, 26), Some(4096));
        assert_eq!(stat_field(t, 28), Some(777));
    }

    #[test]
    fn fdinfo_fields() {
        let t = b"pos:\t42\nflags:\t0102002\nmnt_id:\t20\n";
        assert_eq!(fdinfo(t), Some((42, 0o102002)));
    }
}
