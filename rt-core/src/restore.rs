//! Restoring an image into the calling process (the loader).
//!
//! Runs in a static, libc-free process with nothing but the loader mapped
//! (plus the kernel's stack and vDSO). Forbidden: allocation, `core::fmt`,
//! panics, libc. After [`Plan::commit`] starts unmapping, only the loader's
//! own image (code, data, its stack in .bss) is used, and the last step runs
//! from the restored program's own text (`rckpt_restore_tail`).
//!
//! Two phases:
//! * [`prepare`] checks everything that can fail for reasons outside the
//!   process: the image (structure, seal, every segment's checksum),
//!   architecture, CPU features, vDSO layout, the working directory, every
//!   file to reopen. Segment data is read straight into place where the
//!   address is free; a failure here exits with nothing restored.
//! * [`Plan::commit`] unmaps what is left of the loader's process, moves the
//!   vDSO, maps the rest, and sets up fds, signals, mm fields, rseq and TLS,
//!   then jumps into the restored program.

use crate::format::*;
use crate::hash::SegSum;
use crate::image::{self, Catch, Image, ImageError, Input};
use crate::line::Line;
use crate::procfs;
use crate::sys::{self, CPath, Errno, Fd, KSigaction};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rckpt_arch as arch;

pub struct Options<'a> {
    /// The image's path (for messages, and the default checkpoint file),
    /// or what to call it when it comes on `image_fd`.
    pub image: &'a [u8],
    /// `--fd N`: read the image from descriptor N (a pipe, a socket, a
    /// file), front to back; a socket is acknowledged (see [`ACK`]).
    pub image_fd: Option<Fd>,
    /// Where future checkpoints go (absolute); defaults to the image path.
    pub ckpt: Option<&'a [u8]>,
    pub relocatable: bool,
    pub debug: bool,
    pub aggravate_bugs: bool,
    /// Warning modes by kind (see `flags::WARN_KINDS`).
    pub warn: [u8; 5],
    /// `--ghost-limit`: the restarted program's limit for saving deleted
    /// files; `None` keeps the image's.
    pub ghost_limit: Option<u64>,
    /// `--cmd-fd N`: the command stream, kept open through the restore and
    /// handed to the restored runtime; `None`: the program has none.
    pub cmd_fd: Option<Fd>,
}

#[derive(Clone, Copy, Debug)]
pub enum RestoreError<'a> {
    Image(ImageError),
    Arch(u32, u32),
    Cpu(u64),
    XsaveSize(u32, u32),
    Vdso,
    /// The checkpointed working directory (a path in the image) and why.
    Cwd(&'a [u8], Errno),
    /// An fd the image had open, its path, whether that path is relative
    /// to the restart directory (relocatable restart), and why.
    File(i32, &'a [u8], bool, Errno),
    /// A file mapped `MAP_SHARED` at this address, its path (relative as
    /// for `File`), and why it cannot be mapped again.
    Mapped(u64, &'a [u8], bool, Errno),
    Conflict(u64),
    /// A deleted file (ghost) that could not be recreated: its path and why.
    Ghost(&'a [u8], Errno),
    Sys(&'static str, Errno),
    TooMany(&'static str),
}

impl From<ImageError> for RestoreError<'_> {
    fn from(e: ImageError) -> Self {
        RestoreError::Image(e)
    }
}

fn sys_err<'a>(what: &'static str) -> impl FnOnce(Errno) -> RestoreError<'a> {
    move |e| RestoreError::Sys(what, e)
}

impl RestoreError<'_> {
    pub fn describe(&self, l: &mut Line) {
        match *self {
            RestoreError::Image(e) => {
                e.describe(l);
                l
            }
            RestoreError::Arch(m, bits) => {
                l.t("image is for ").t(machine_name(m)).t(" (").u(bits as u64).t("-bit); this loader restores ");
                l.t(arch::NAME).t(" images")
            }
            RestoreError::Cpu(missing) => {
                l.t("image needs CPU features this machine lacks:");
                for b in 0..64 {
                    if missing & (1 << b) != 0 {
                        l.t(" ").t(arch::xfeature_name(b));
                    }
                }
                l
            }
            RestoreError::XsaveSize(need, have) => {
                l.t("image's FPU state needs a ").u(need as u64).t("-byte xsave area; this CPU has ").u(have as u64)
            }
            RestoreError::Vdso => l.t("the vDSO of this kernel differs in size from the checkpointing kernel's"),
            RestoreError::Cwd(path, e) => {
                l.t("the checkpointed working directory ").s(path);
                l.t(" is not usable (").e(e).t("); restart with -_condor_relocatable (rckpt-loader --relocatable) to stay here")
            }
            RestoreError::File(fd, path, relocated, e) => {
                l.t("cannot reopen fd ").i(fd as i64).t(" (");
                if relocated {
                    l.t(".");
                }
                l.s(path).t("): ").e(e)
            }
            RestoreError::Mapped(addr, path, relocated, e) => {
                l.t("cannot map ");
                if relocated {
                    l.t(".");
                }
                l.s(path).t(" again (shared at ").x(addr).t("): ").e(e)
            }
            RestoreError::Conflict(a) => l.t("image has a mapping at ").x(a).t(" where the loader itself lives; cannot restore it"),
            RestoreError::Ghost(path, e) => l.t("cannot recreate the deleted file ").s(path).t(": ").e(e),
            RestoreError::Sys(what, e) => l.t(what).t(": ").e(e),
            RestoreError::TooMany(what) => l.t("too many ").t(what),
        };
    }
}

const MAX_FDS: usize = 1024;
pub const MAX_SEGS: usize = image::MAX_SEGS;
/// Checksums: one per segment and per ghost file.
pub const MAX_SUMS: usize = MAX_SEGS + MAX_GHOSTS;

/// What the loader answers on a socket it restored from, once it has read
/// and verified the whole image (before it gives anything up): these 8
/// bytes, then the image's head seal (8 bytes, little-endian), so that the
/// sender knows which image arrived.
pub const ACK: [u8; 8] = *b"RCKPT-OK";

/// Scratch space the loader provides (static arrays in its .bss).
pub struct Buffers<'a> {
    pub head: &'a mut [u8],
    pub maps: &'a mut [u8],
    pub io: &'a mut [u8],
    /// One bit per segment: mapped and read in `prepare`.
    pub placed: &'a mut [u64; MAX_SEGS / 64],
    /// Per segment: where its data waits (a mapping of its own) when its
    /// address was not free in `prepare`; moved into place in `commit`.
    pub hold: &'a mut [usize; MAX_SEGS],
    /// The data reads of segments mapped in place, shared out between
    /// this thread and a helper; one checksum accumulator per segment.
    pub pieces: &'a mut [Piece],
    pub sums: &'a mut [AtomicU64; MAX_SUMS],
    /// The helper thread's stack (16-aligned top).
    pub helper_stack: &'a mut [u8],
}

/// One read of segment data into place: `len` bytes at image offset `off`
/// to address `addr`, part of segment `seg` starting at its page `page`.
#[derive(Clone, Copy, Default)]
pub struct Piece {
    addr: usize,
    off: u64,
    len: u32,
    seg: u32,
    page: u64,
}

impl Piece {
    pub const EMPTY: Piece = Piece { addr: 0, off: 0, len: 0, seg: 0, page: 0 };
}

/// Everything `commit` needs, prepared and checked.
pub struct Plan<'a> {
    pub img: Image<'a>,
    fd: Fd,
    /// (target fd, temporary fd) of files to install.
    fds: [(i32, i32); MAX_FDS],
    nfds: usize,
    cwd_fd: Fd,
    maps: &'a mut [u8],
    placed: &'a mut [u64; MAX_SEGS / 64],
    hold: &'a mut [usize; MAX_SEGS],
    io: &'a mut [u8],
    /// Where future checkpoints go; `None` keeps the image's own.
    ckpt: Option<CPath>,
    opts_relocatable: bool,
    opts_debug: bool,
    opts_aggravate: bool,
    warn: [u8; 5],
    ghost_limit: Option<u64>,
    /// The command stream's descriptor (renumbered if the image needs its
    /// number for a file), or -1.
    cmd_fd: Fd,
    loader: (usize, usize),
    /// (segment, fd) of shared file mappings whose address was taken
    /// during prepare; mapped in commit.
    mapfds: [(u32, Fd); MAX_MAPFDS],
    nmapfds: usize,
    /// For the debug line: how long phase one took, bytes it read in place.
    prepare_ns: u64,
    read_bytes: u64,
}

const MAX_MAPFDS: usize = 64;

fn keep_mapfd<'a>(mapfds: &mut [(u32, Fd); MAX_MAPFDS], n: &mut usize, seg: usize, fd: Fd) -> Result<(), RestoreError<'a>> {
    let Some(slot) = mapfds.get_mut(*n) else {
        return Err(RestoreError::TooMany("shared file mappings in the loader's way"));
    };
    *slot = (seg as u32, fd);
    *n += 1;
    Ok(())
}

fn is_placed(p: &[u64; MAX_SEGS / 64], i: usize) -> bool {
    p[i / 64] & (1 << (i % 64)) != 0
}

/// Whether `[s, e)` touches memory the image needs (its segments or its
/// vDSO block).
fn image_uses(img: &Image, s: usize, e: usize) -> bool {
    let h = img.header;
    if h.vdso_block_len != 0 && s < (h.vdso_block + h.vdso_block_len) as usize && e > h.vdso_block as usize {
        return true;
    }
    (0..img.nseg()).any(|i| {
        let d = img.seg(i);
        s < (d.vaddr + d.len) as usize && e > d.vaddr as usize
    })
}

/// Map `len` bytes read-write somewhere the image does not need and the
/// loader does not occupy: the kernel's choice if it fits, else right after
/// one of the image's segments.
fn find_hole(img: &Image, loader: (usize, usize), len: usize) -> Result<usize, RestoreError<'static>> {
    find_hole_with(img, loader, len, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS)
}

/// [`find_hole`] with other mapping flags (`MAP_SHARED | MAP_ANONYMOUS`
/// for the data of shared memory).
fn find_hole_with(img: &Image, loader: (usize, usize), len: usize, flags: u32) -> Result<usize, RestoreError<'static>> {
    let rw = sys::PROT_READ | sys::PROT_WRITE;
    let free = |a: usize| a + len <= arch::USER_MAX && !image_uses(img, a, a + len) && !(a < loader.1 && a + len > loader.0);
    // SAFETY: a new mapping at a kernel-chosen address replaces nothing.
    if let Ok(a) = unsafe { sys::mmap(0, len, rw, flags, -1, 0) } {
        if free(a) {
            return Ok(a);
        }
        // SAFETY: the mapping just made; nothing uses it.
        let _ = unsafe { sys::munmap(a, len) };
    }
    for i in 0..img.nseg() {
        let d = img.seg(i);
        let a = (d.vaddr + d.len) as usize;
        if !free(a) {
            continue;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        if let Ok(got) = unsafe { sys::mmap(a, len, rw, flags | sys::MAP_FIXED_NOREPLACE, -1, 0) } {
            if got == a {
                return Ok(a);
            }
        }
    }
    Err(RestoreError::Sys("finding free address space for the restore", Errno::ENOMEM))
}

/// Does segment `d` overlap the loader (so only the tail can map it)?
fn deferred(d: &SegDesc, loader: (usize, usize)) -> bool {
    d.kind != seg_kind::VDSO && (d.vaddr as usize) < loader.1 && ((d.vaddr + d.len) as usize) > loader.0
}

fn seg_containing(img: &Image, addr: u64) -> Option<SegDesc> {
    img.seg_holding(addr, addr + 1).map(|i| img.seg(i))
}

const MAX_OPS: usize = 4096;
/// The tail's page: the operation list, and room for a copy of the tail's
/// code.
#[repr(C)]
struct TailPage {
    ops: [sys::Op; MAX_OPS + 1],
    code: [u8; 512],
}

/// Open the image (by path, or the descriptor given) and read its head;
/// returns the input positioned after the head, the file's size (unknown,
/// `u64::MAX`, for a stream) and whether it can be read at any offset.
pub fn open_image<'a>(opts: &Options, head: &'a mut [u8]) -> Result<(Input, u64, bool, &'a [u8]), RestoreError<'static>> {
    let fd = match opts.image_fd {
        Some(fd) => fd,
        None => {
            let mut p = CPath::from_bytes(opts.image).map_err(sys_err("image path"))?;
            sys::open(&mut p, sys::O_RDONLY | sys::O_CLOEXEC, 0).map_err(sys_err("cannot open"))?
        }
    };
    let st = sys::fstat(fd).map_err(sys_err("cannot stat"))?;
    let regular = st.mode & sys::S_IFMT == sys::S_IFREG;
    if opts.image_fd.is_none() && !regular {
        return Err(RestoreError::Sys("not a regular file", Errno::EINVAL));
    }
    // A regular file given by descriptor is read from its start.
    let size = if regular { st.size } else { u64::MAX };
    let mut input = Input { fd, pos: 0 };
    if regular {
        sys::lseek(fd, 0, sys::SEEK_SET).map_err(sys_err("cannot seek"))?;
    }
    let head = image::read_head(&mut input, head, size)?;
    Ok((input, size, regular, head))
}

/// Check the image's architecture and the CPU's features.
pub fn check_machine(img: &Image) -> Result<(), RestoreError<'static>> {
    if img.machine != arch::ELF_MACHINE || img.class != crate::elf::Class::NATIVE {
        return Err(RestoreError::Arch(img.machine as u32, img.class.bits()));
    }
    let missing = img.header.xfeatures & !arch::xcr0();
    if missing != 0 {
        return Err(RestoreError::Cpu(missing));
    }
    if img.header.xsave_len > arch::xsave_size() {
        return Err(RestoreError::XsaveSize(img.header.xsave_len, arch::xsave_size()));
    }
    Ok(())
}

/// The vDSO block of this process now.
fn vdso_now(maps: &[u8]) -> procfs::VdsoBlock {
    let mut v = procfs::VdsoBlock::default();
    for (s, e) in procfs::lines(maps) {
        if let Some(m) = procfs::parse_map_line(maps, s, e) {
            v.add(&m, m.name(maps));
        }
    }
    v
}

/// Phase one: everything that can fail, with nothing of the loader's
/// process given up yet.
pub fn prepare<'a>(opts: &Options, bufs: Buffers<'a>, loader: (usize, usize)) -> Result<Plan<'a>, RestoreError<'a>> {
    let t_start = sys::monotonic_ns();
    let Buffers { head, maps, io, placed, hold, pieces, sums, helper_stack } = bufs;
    let (mut input, size, regular, head) = open_image(opts, head)?;
    let img = Image::parse(head, size)?;
    check_machine(&img)?;
    let h = img.header;
    let nseg = img.nseg();

    // Segments may overlap the loader (the restore tail maps them once the
    // loader is gone), but the vDSO must move into place while it runs.
    let vb = (h.vdso_block as usize, (h.vdso_block + h.vdso_block_len) as usize);
    if h.vdso_block_len != 0 && vb.0 < loader.1 && vb.1 > loader.0 {
        return Err(RestoreError::Conflict(h.vdso_block));
    }

    // vDSO: the same layout as the checkpointing kernel's.
    let n = sys::read_file(b"/proc/self/maps", maps).map_err(sys_err("reading /proc/self/maps"))?;
    let v = vdso_now(&maps[..n]);
    if h.vdso_block_len != 0 && ((v.block_end - v.block) as u64 != h.vdso_block_len || (v.vdso - v.block) as u64 != h.vdso_off) {
        return Err(RestoreError::Vdso);
    }

    // Working directory.
    let mut here = CPath::new();
    sys::getcwd(&mut here).map_err(sys_err("reading the working directory"))?;
    let cwd_fd = if opts.relocatable {
        -1
    } else {
        let cwd = img.cwd;
        let mut p = CPath::from_bytes(cwd).map_err(|e| RestoreError::Cwd(cwd, e))?;
        sys::open(&mut p, sys::O_PATH | sys::O_DIRECTORY | sys::O_CLOEXEC, 0).map_err(|e| RestoreError::Cwd(cwd, e))?
    };

    // Files: open each one now, above every target number.
    let max_target = img.fds().map(|(d, _)| d.fd).max().unwrap_or(0).max(2);
    let base = (max_target + 1).max(10) as usize;
    let fd = sys::fcntl(input.fd, sys::F_DUPFD_CLOEXEC, base).map(|n| n as Fd).map_err(sys_err("moving the image fd"))?;
    if opts.image_fd.is_none() {
        let _ = sys::close(input.fd);
    }
    input.fd = fd;

    // Deleted files: recreated now (empty; their data arrives with the
    // rest), above the fds too; closed when prepare ends (the reopened fds
    // and the mappings keep them alive).
    let ghosts = recreate_ghosts(opts, &img, &here, base)?;
    let mut plan_fds = [(0i32, 0i32); MAX_FDS];
    let mut nfds = 0;
    let mut warned_unsup = false;
    let mut warned_rw = false;
    for (d, path) in img.fds() {
        if d.fd <= 2 {
            continue; // taken from the restarting environment
        }
        if d.kind == fd_kind::OTHER {
            if opts.warn[crate::flags::WARN_UNSUP] != 0 && !(warned_unsup && opts.warn[crate::flags::WARN_UNSUP] == 2) {
                Line::new()
                    .t("rckpt: warning: fd ")
                    .i(d.fd as i64)
                    .t(" (")
                    .s(path)
                    .t(") cannot be restored (not a file); it stays closed")
                    .emit();
                warned_unsup = true;
            }
            continue;
        }
        let mut p = CPath::new();
        let (shown, relocated, pushed) = if d.kind == fd_kind::GHOST {
            (path, false, ghosts.link(d.ghost, &mut p))
        } else {
            relocate(opts, img.cwd, &here, path, &mut p)
        };
        let file_err = |e| RestoreError::File(d.fd, shown, relocated, e);
        pushed.map_err(file_err)?;
        const KEEP: u32 = 0o3 | sys::O_APPEND | 0o4000 /* O_NONBLOCK */ | 0o10000 /* O_DSYNC */
            | 0o4010000 /* O_SYNC */ | 0o1000000 /* O_NOATIME */ | 0o40000 /* O_DIRECT */
            | sys::O_LARGEFILE;
        let flags = if d.kind == fd_kind::DIR { sys::O_RDONLY | sys::O_DIRECTORY } else { d.flags & KEEP };
        let t = sys::open(&mut p, flags | sys::O_CLOEXEC, 0).map_err(file_err)?;
        if d.kind != fd_kind::CHR {
            sys::lseek(t, d.pos, sys::SEEK_SET).map_err(file_err)?;
        }
        let high = sys::fcntl(t, sys::F_DUPFD_CLOEXEC, base).map_err(file_err)? as Fd;
        let _ = sys::close(t);
        if nfds == MAX_FDS {
            return Err(RestoreError::TooMany("files"));
        }
        plan_fds[nfds] = (d.fd | (((d.flags & sys::O_CLOEXEC != 0) as i32) << 30), high);
        nfds += 1;
        if d.flags & 0o3 == sys::O_RDWR
            && d.kind != fd_kind::GHOST
            && opts.warn[crate::flags::WARN_READWRITE] != 0
            && !(warned_rw && opts.warn[crate::flags::WARN_READWRITE] == 2)
        {
            Line::new()
                .t("rckpt: notice: fd ")
                .i(d.fd as i64)
                .t(" (")
                .s(p.as_bytes())
                .t(") is open read-write; its contents are not part of the checkpoint")
                .emit();
            warned_rw = true;
        }
    }

    // Segments: mapped in place where the address is free; else their data
    // waits in a mapping of its own until commit moves it there.
    placed.fill(0);
    hold.fill(0);
    let mut mapfds = [(0u32, -1 as Fd); MAX_MAPFDS];
    let mut nmapfds = 0;
    for i in 0..nseg {
        let d = img.seg(i);
        if d.kind == seg_kind::VDSO {
            placed[i / 64] |= 1 << (i % 64); // the live vDSO goes there
            continue;
        }
        if d.kind == seg_kind::SHARED_FILE {
            // The file holds the data: map it again, now if the address is
            // free, else in commit (kept open until then).
            if deferred(&d, loader) {
                return Err(RestoreError::Conflict(d.vaddr));
            }
            let (mfd, off) = open_mapfile(opts, &img, &here, &ghosts, i, base)?;
            let flags = sys::MAP_SHARED | sys::MAP_FIXED_NOREPLACE;
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            match unsafe { sys::mmap(d.vaddr as usize, d.len as usize, d.prot, flags, mfd, off) } {
                Ok(a) if a == d.vaddr as usize => {
                    placed[i / 64] |= 1 << (i % 64);
                    let _ = sys::close(mfd);
                }
                Ok(a) => {
                    // SAFETY: the mapping just made, nothing uses it.
                    let _ = unsafe { sys::munmap(a, d.len as usize) };
                    keep_mapfd(&mut mapfds, &mut nmapfds, i, mfd)?;
                }
                Err(Errno::EEXIST) => keep_mapfd(&mut mapfds, &mut nmapfds, i, mfd)?,
                Err(e) => {
                    let (_, path) = img.mapfile(i).unwrap_or_default();
                    return Err(RestoreError::Mapped(d.vaddr, path, false, e));
                }
            }
            continue;
        }
        let shared = if d.kind == seg_kind::SHARED { sys::MAP_SHARED } else { sys::MAP_PRIVATE } | sys::MAP_ANONYMOUS;
        let flags = shared | if d.kind == seg_kind::STACK { sys::MAP_GROWSDOWN } else { 0 };
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        match unsafe { sys::mmap(d.vaddr as usize, d.len as usize, rw, flags | sys::MAP_FIXED_NOREPLACE, -1, 0) } {
            Ok(a) if a == d.vaddr as usize => placed[i / 64] |= 1 << (i % 64),
            r => {
                if let Ok(a) = r {
                    // An old kernel that ignored NOREPLACE placed it elsewhere.
                    // SAFETY: the mapping just made, nothing uses it.
                    let _ = unsafe { sys::munmap(a, d.len as usize) };
                }
                if img.seg_has_data(i) {
                    hold[i] = find_hole_with(&img, loader, d.len as usize, shared)?;
                }
            }
        }
    }

    // The data, every byte checksummed: in parallel by offset from a
    // regular file, front to back from a stream; then the trailer.
    let dest = |i: usize| -> usize {
        let d = img.seg(i);
        if d.kind == seg_kind::VDSO {
            0
        } else if hold[i] != 0 {
            hold[i]
        } else {
            d.vaddr as usize
        }
    };
    for s in sums.iter_mut() {
        *s.get_mut() = 0;
    }
    let parallel = regular && queue_runs(&img, &dest, pieces).is_some();
    let read_bytes = if parallel {
        let n = queue_runs(&img, &dest, pieces).unwrap_or(0);
        let mut bytes = read_pieces(fd, &pieces[..n], sums, helper_stack)?;
        input.pos = img.data_start;
        bytes += stream_runs(&img, &mut input, &dest, &ghosts, sums, io, true)?;
        bytes
    } else {
        input.skip_to(img.data_start, io)?;
        stream_runs(&img, &mut input, &dest, &ghosts, sums, io, false)?
    };
    let n = img.nseg() + img.nghosts();
    let trailer = io.get_mut(..img.trailer_len as usize).ok_or(ImageError::Malformed("trailer"))?;
    if parallel {
        image::read_exact(fd, trailer, img.trailer_off)?;
    } else {
        input.read(trailer)?;
    }
    // SAFETY: AtomicU64 has the layout of u64; both readers are done.
    let plain = unsafe { core::slice::from_raw_parts(sums.as_ptr() as *const u64, n) };
    image::check_trailer(&img, trailer, plain)?;
    drop(ghosts);
    dry_run(&img, &dest, loader)?;
    if opts.image_fd.is_some() {
        acknowledge(fd, img.seal)?;
    }

    // The command stream keeps its number unless a reopened file needs it.
    let cmd_fd = match opts.cmd_fd {
        None => -1,
        Some(c) if plan_fds[..nfds].iter().any(|&(t, _)| t & !(1 << 30) == c) => {
            sys::fcntl(c, sys::F_DUPFD, base).map_err(sys_err("moving the command stream's fd"))? as Fd
        }
        Some(c) => c,
    };

    let mut ckpt = CPath::new();
    match opts.ckpt {
        Some(c) => ckpt.push(c).map_err(sys_err("checkpoint path"))?,
        None if opts.image_fd.is_some() => {} // keep the image's own
        None => {
            if opts.image.first() != Some(&b'/') {
                ckpt.push(here.as_bytes()).and_then(|_| ckpt.push(b"/")).map_err(sys_err("checkpoint path"))?;
            }
            ckpt.push(opts.image).map_err(sys_err("checkpoint path"))?;
        }
    }
    let ckpt = if ckpt.is_empty() { None } else { Some(ckpt) };
    Ok(Plan {
        img,
        fd,
        fds: plan_fds,
        nfds,
        cwd_fd,
        maps,
        placed,
        hold,
        io,
        ckpt,
        opts_relocatable: opts.relocatable,
        opts_debug: opts.debug,
        opts_aggravate: opts.aggravate_bugs,
        warn: opts.warn,
        ghost_limit: opts.ghost_limit,
        cmd_fd,
        loader,
        mapfds,
        nmapfds,
        prepare_ns: sys::monotonic_ns() - t_start,
        read_bytes,
    })
}

/// Read segment `i`'s data extents into its (already mapped, writable)
/// place; with `verify`, checksum them from memory.
/// Where a file the image recorded at `path` is now, into `p`: under
/// -_condor_relocatable a file below the old working directory `old_cwd` is
/// looked for below this one (`here`). Returns the path to name in errors
/// (for a relocated file the part after the directory, shown as
/// "./rest/of/path"), whether it was relocated, and whether `p` could hold
/// it.
fn relocate<'p>(opts: &Options, old_cwd: &[u8], here: &CPath, path: &'p [u8], p: &mut CPath) -> (&'p [u8], bool, Result<(), Errno>) {
    let relocated = opts.relocatable && path.len() > old_cwd.len() && path.starts_with(old_cwd) && path[old_cwd.len()] == b'/';
    if relocated {
        let rest = &path[old_cwd.len()..];
        (rest, true, p.push(here.as_bytes()).and_then(|_| p.push(rest)))
    } else {
        (path, false, p.push(path))
    }
}

/// The recreated ghost files, by index; closed on drop.
struct Ghosts {
    fds: [Fd; MAX_GHOSTS],
    n: usize,
}

impl Ghosts {
    fn get(&self, i: u32) -> Result<Fd, Errno> {
        self.fds[..self.n].get(i as usize).copied().ok_or(Errno::EBADF)
    }
    /// `/proc/self/fd/N` of ghost `i` into `p`: opening it gives a new open
    /// file description of the ghost, with flags and offset of its own.
    fn link(&self, i: u32, p: &mut CPath) -> Result<(), Errno> {
        let fd = self.get(i)?;
        p.push(b"/proc/self/fd/")?;
        p.push_dec(fd as u64)
    }
}

impl Drop for Ghosts {
    fn drop(&mut self) {
        for &fd in &self.fds[..self.n] {
            let _ = sys::close(fd);
        }
    }
}

/// Recreate every ghost file of the image (empty, at its size; the data
/// comes with the rest), at numbers from `base` up.
fn recreate_ghosts<'a>(opts: &Options, img: &Image<'a>, here: &CPath, base: usize) -> Result<Ghosts, RestoreError<'a>> {
    let mut g = Ghosts { fds: [-1; MAX_GHOSTS], n: 0 };
    for i in 0..img.nghosts() {
        let Some(slot) = g.fds.get_mut(i) else {
            return Err(RestoreError::TooMany("deleted files"));
        };
        *slot = recreate_ghost(opts, img, here, i, base)?;
        g.n = i + 1;
    }
    Ok(g)
}

/// A new unnamed file for ghost `i`, holding its saved data: `O_TMPFILE`
/// in the original directory (moved like any path by a relocatable
/// restart), else (directory gone, no `O_TMPFILE` there) a memfd; a memfd
/// again for a memfd; sized as the original was.
fn recreate_ghost<'a>(opts: &Options, img: &Image<'a>, here: &CPath, i: usize, base: usize) -> Result<Fd, RestoreError<'a>> {
    let Some((d, path)) = img.ghost(i) else {
        return Err(RestoreError::Image(ImageError::Malformed("ghost file table")));
    };
    let err = |e| RestoreError::Ghost(path, e);
    let base_name = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    // memfd names are at most 249 bytes.
    let memfd = |name: &[u8]| sys::memfd_create(&name[..name.len().min(240)], sys::MFD_CLOEXEC);
    let t = if d.flags & ghost_flags::MEMFD != 0 {
        memfd(path.strip_prefix(b"/memfd:").unwrap_or(base_name))
    } else {
        let mut p = CPath::new();
        let (_, _, pushed) = relocate(opts, img.cwd, here, path, &mut p);
        let tmp = pushed.and_then(|_| {
            let cut = p.as_bytes().iter().rposition(|&c| c == b'/').ok_or(Errno::ENOENT)?;
            p.truncate(cut.max(1));
            sys::open(&mut p, sys::O_TMPFILE | sys::O_RDWR | sys::O_CLOEXEC, 0o600)
        });
        tmp.or_else(|_| memfd(base_name))
    }
    .map_err(err)?;
    let high = sys::fcntl(t, sys::F_DUPFD_CLOEXEC, base).map(|n| n as Fd);
    let _ = sys::close(t);
    let high = high.map_err(err)?;
    if let Err(e) = sys::ftruncate(high, d.size) {
        let _ = sys::close(high);
        return Err(err(e));
    }
    Ok(high)
}

/// Open the file a `SHARED_FILE` segment maps (read-write if the mapping
/// was writable), at a number above the image's fds: by path, or the
/// recreated ghost of a deleted file.
fn open_mapfile<'a>(
    opts: &Options,
    img: &Image<'a>,
    here: &CPath,
    ghosts: &Ghosts,
    i: usize,
    base: usize,
) -> Result<(Fd, u64), RestoreError<'a>> {
    let d = img.seg(i);
    let Some((m, path)) = img.mapfile(i) else {
        return Err(RestoreError::Image(ImageError::Malformed("shared file mapping without its file")));
    };
    if m.ghost != NO_GHOST {
        let err = |e| RestoreError::Mapped(d.vaddr, path, false, e);
        let g = ghosts.get(m.ghost).map_err(err)?;
        let high = sys::fcntl(g, sys::F_DUPFD_CLOEXEC, base).map_err(err)?;
        return Ok((high as Fd, m.offset));
    }
    let mut p = CPath::new();
    let (shown, relocated, pushed) = relocate(opts, img.cwd, here, path, &mut p);
    let err = |e| RestoreError::Mapped(d.vaddr, shown, relocated, e);
    pushed.map_err(err)?;
    let mode = if d.prot & sys::PROT_WRITE != 0 { sys::O_RDWR } else { sys::O_RDONLY };
    let t = sys::open(&mut p, mode | sys::O_CLOEXEC, 0).map_err(err)?;
    let high = sys::fcntl(t, sys::F_DUPFD_CLOEXEC, base).map_err(err);
    let _ = sys::close(t);
    Ok((high? as Fd, m.offset))
}

/// Read size per step of the loader's reads into place (about an L2 cache).
const READ_CHUNK: u64 = 1 << 20;

/// Split the segments' runs into pieces of at most [`READ_CHUNK`] bytes,
/// each to be read to `dest(segment)` plus its offset; `None` when they do
/// not fit in `room` (the data is then read front to back instead).
fn queue_runs(img: &Image, dest: &impl Fn(usize) -> usize, room: &mut [Piece]) -> Option<usize> {
    let mut n = 0;
    for k in 0..img.nrun() {
        let r = img.run(k);
        let seg = r.owner as usize;
        if seg >= img.nseg() || dest(seg) == 0 {
            continue; // ghost files and the vDSO's copy: front to back
        }
        let mut at = 0;
        while at < r.len {
            let len = (r.len - at).min(READ_CHUNK);
            let off = r.offset + at;
            *room.get_mut(n)? =
                Piece { addr: dest(seg) + off as usize, off: r.file_off + at, len: len as u32, seg: seg as u32, page: off / PAGE_SIZE };
            n += 1;
            at += len;
        }
    }
    Some(n)
}

/// Read the runs in file order (all of them from a stream; from a regular
/// file whose memory runs `queue_runs` took, only the rest, by offset):
/// memory runs into `dest` (faulted in first, then checksummed in memory),
/// the vDSO's copy through `io` (checksummed, not kept), ghost files'
/// through `io` into the recreated files. Returns the bytes read.
fn stream_runs<'a>(
    img: &Image<'a>,
    input: &mut Input,
    dest: &impl Fn(usize) -> usize,
    ghosts: &Ghosts,
    sums: &mut [AtomicU64; MAX_SUMS],
    io: &mut [u8],
    only_rest: bool,
) -> Result<u64, RestoreError<'a>> {
    let mut bytes = 0;
    for k in 0..img.nrun() {
        let r = img.run(k);
        let owner = r.owner as usize;
        let to_memory = owner < img.nseg() && dest(owner) != 0;
        if only_rest && to_memory {
            continue;
        }
        let mut sum = SegSum(*sums[owner].get_mut());
        let mut at = 0;
        while at < r.len {
            let len = ((r.len - at) as usize).min(if to_memory { READ_CHUNK as usize } else { io.len() });
            let off = r.offset + at;
            let addr = if to_memory { dest(owner) + off as usize } else { io.as_mut_ptr() as usize };
            if to_memory {
                // SAFETY: populating part of a segment (or its hold) mapped
                // read-write in prepare; failure only costs speed.
                let _ = unsafe { sys::madvise(addr, len, sys::MADV_POPULATE_WRITE) };
            }
            if only_rest {
                image::read_exact_raw(input.fd, addr, len, r.file_off + at)?;
            } else {
                input.read_raw(addr, len)?;
            }
            // SAFETY: `addr..addr+len` was just filled by the read (memory
            // of this segment, or `io`).
            let data = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
            sum.add_pages(off / PAGE_SIZE, data);
            if owner >= img.nseg() {
                // Runs are whole pages; the file ends where it ended.
                let (d, path) = img.ghost(owner - img.nseg()).unwrap_or_default();
                let g = ghosts.get((owner - img.nseg()) as u32).map_err(|e| RestoreError::Ghost(path, e))?;
                let keep = (d.size.saturating_sub(off) as usize).min(len);
                sys::pwrite_all(g, &data[..keep], off).map_err(|e| RestoreError::Ghost(path, e))?;
            }
            bytes += len as u64;
            at += len as u64;
        }
        *sums[owner].get_mut() = sum.0;
    }
    Ok(bytes)
}

/// Tell the sender on a socket that the whole image arrived and checked
/// out ([`ACK`]). Nothing else has an answer channel; if the answer cannot
/// be sent, the sender counts the migration as failed and keeps its job,
/// so this side must not run it either.
fn acknowledge(fd: Fd, seal: u64) -> Result<(), RestoreError<'static>> {
    if sys::fstat(fd).map_or(true, |st| st.mode & sys::S_IFMT != sys::S_IFSOCK) {
        return Ok(());
    }
    let mut ack = [0u8; 16];
    ack[..8].copy_from_slice(&ACK);
    ack[8..].copy_from_slice(&seal.to_le_bytes());
    sys::write_all(fd, &ack).map_err(sys_err("acknowledging the image to its sender"))
}

/// What the two readers share.
struct Work<'a> {
    pieces: &'a [Piece],
    fd: Fd,
    next: AtomicUsize,
    sums: &'a [AtomicU64; MAX_SUMS],
    bytes: AtomicU64,
    /// 0 until a reader fails; the first to set it writes `err`.
    failed: AtomicU32,
    err: core::cell::UnsafeCell<ImageError>,
    /// The helper's id word, cleared by the kernel when it exits.
    helper_tid: AtomicU32,
}

// SAFETY: `err` is written once, by the reader that moved `failed` from 0
// to 1, and read only after both readers are done.
unsafe impl Sync for Work<'_> {}

/// Take pieces until none are left: fault each one in (one madvise, much
/// cheaper than a page fault per page inside pread), read it, add its
/// checksum to its segment's.
fn read_some(w: &Work) {
    loop {
        let k = w.next.fetch_add(1, Ordering::Relaxed);
        if k >= w.pieces.len() || w.failed.load(Ordering::Relaxed) != 0 {
            return;
        }
        let p = w.pieces[k];
        let len = p.len as usize;
        // SAFETY: populating a segment mapped read-write in `prepare`; it
        // changes no contents. Failure (kernel < 5.14) only costs speed.
        let _ = unsafe { sys::madvise(p.addr, len, sys::MADV_POPULATE_WRITE) };
        if let Err(e) = image::read_exact_raw(w.fd, p.addr, len, p.off) {
            if w.failed.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // SAFETY: only the reader that won the exchange writes it.
                unsafe { *w.err.get() = e };
            }
            return;
        }
        // SAFETY: the piece lies inside its segment, mapped read-write and
        // just filled by pread.
        let data = unsafe { core::slice::from_raw_parts(p.addr as *const u8, len) };
        let mut sum = SegSum::default();
        sum.add_pages(p.page, data);
        w.sums[p.seg as usize].fetch_add(sum.0, Ordering::Relaxed);
        w.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// The helper thread's body: read, then exit (the kernel then clears
/// `helper_tid` and wakes the waiter).
unsafe extern "C" fn helper_main(arg: usize) -> ! {
    // SAFETY: `arg` is the `Work` that `read_pieces` keeps alive until the
    // kernel has cleared helper_tid, i.e. until this thread is gone.
    let w = unsafe { &*(arg as *const Work) };
    read_some(w);
    sys::exit_task(0)
}

/// Below this, a second thread is not worth starting.
const PARALLEL_MIN: u64 = 16 << 20;

/// Read every queued piece, with a helper thread when there is enough to
/// read, each adding its checksum to its segment's. Returns the bytes read.
fn read_pieces(fd: Fd, pieces: &[Piece], sums: &mut [AtomicU64; MAX_SUMS], stack: &mut [u8]) -> Result<u64, ImageError> {
    let total: u64 = pieces.iter().map(|p| p.len as u64).sum();
    let w = Work {
        pieces,
        fd,
        next: AtomicUsize::new(0),
        sums,
        bytes: AtomicU64::new(0),
        failed: AtomicU32::new(0),
        err: core::cell::UnsafeCell::new(ImageError::NotRckpt),
        helper_tid: AtomicU32::new(1),
    };
    let mut helper = false;
    if total >= PARALLEL_MIN && stack.len() >= 4096 {
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
        // SAFETY: `stack` is ours and unused while the helper runs; the
        // helper gets `w`, which outlives it (we wait for helper_tid below),
        // and CLONE_HELPER includes CLONE_VM.
        let r = unsafe { arch::spawn_helper(sys::CLONE_HELPER, top, helper_main, &w as *const Work as usize, w.helper_tid.as_ptr()) };
        helper = r > 0; // if it failed, this thread reads everything
    }
    read_some(&w);
    if helper {
        sys::wait_cleared(&w.helper_tid);
        // The kernel clears the id word on the way out; let the thread be
        // gone entirely, so the restored program starts single-threaded
        // (a checkpoint right after restart counts its threads).
        for _ in 0..10_000 {
            if crate::writer::check_single_threaded().is_ok() {
                break;
            }
            sys::yield_cpu();
        }
    }
    if w.failed.load(Ordering::Acquire) != 0 {
        // SAFETY: both readers are done; the winner wrote it.
        return Err(unsafe { *w.err.get() });
    }
    Ok(w.bytes.load(Ordering::Relaxed))
}

impl<'a> Plan<'a> {
    /// What must stay mapped through step 1: every image segment's range
    /// (restored in place, or about to be replaced) and every hold.
    fn covers(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.img.nseg()).flat_map(move |i| {
            let d = self.img.seg(i);
            let seg = (d.vaddr as usize, (d.vaddr + d.len) as usize);
            let hold = (self.hold[i], self.hold[i] + d.len as usize);
            [Some(seg), (self.hold[i] != 0).then_some(hold)].into_iter().flatten()
        })
    }

    /// The end of the covered range holding `a`, if one does.
    fn cover_end(&self, a: usize) -> Option<usize> {
        self.covers().filter(|&(s, e)| s <= a && a < e).map(|(_, e)| e).max()
    }

    /// The start of the first covered range after `a` (or `usize::MAX`).
    fn next_cover(&self, a: usize) -> usize {
        self.covers().map(|(s, _)| s).filter(|&s| s > a).min().unwrap_or(usize::MAX)
    }

    /// Where the restored byte of address `a` is once step 3 has run: in
    /// place, or, for a segment under the loader, in its hold (the tail
    /// moves it last).
    fn data_address(&self, a: u64) -> usize {
        match self.img.seg_holding(a, a + 1) {
            Some(i) if self.hold[i] != 0 && deferred(&self.img.seg(i), self.loader) => self.hold[i] + (a - self.img.seg(i).vaddr) as usize,
            _ => a as usize,
        }
    }

    /// Phase two. Failures here are reported and the process exits: the
    /// loader's own process is gone by then, but nothing outside it changed.
    pub fn commit(self) -> ! {
        match self.commit_inner() {
            Ok(never) => match never {},
            Err(e) => {
                let mut l = Line::new();
                l.t("rckpt-loader: restore failed after the point of no return: ");
                e.describe(&mut l);
                l.emit();
                sys::exit_group(1)
            }
        }
    }

    fn commit_inner(self) -> Result<core::convert::Infallible, RestoreError<'a>> {
        let h = self.img.header;
        let t0 = sys::monotonic_ns();
        // 1. Unmap everything that is neither the loader, the vDSO, nor an
        //    image segment already in place (the kernel's stack, mostly).
        let n = sys::read_file(b"/proc/self/maps", self.maps).map_err(sys_err("reading /proc/self/maps"))?;
        let maps = &self.maps[..n];
        let v = vdso_now(maps);
        for (ls, le) in procfs::lines(maps) {
            let Some(m) = procfs::parse_map_line(maps, ls, le) else {
                continue;
            };
            let name = m.name(maps);
            if procfs::is_vdso_block(name) || name == b"[vsyscall]" {
                continue;
            }
            if m.start >= self.loader.0 && m.end <= self.loader.1 {
                continue;
            }
            // Only the parts neither an image segment nor a hold covers: the
            // kernel merges neighbouring anonymous mappings into one line.
            let mut pos = m.start;
            while pos < m.end {
                if let Some(end) = self.cover_end(pos) {
                    pos = end;
                    continue;
                }
                let next = self.next_cover(pos).min(m.end);
                // SAFETY: not the loader (code, data, stack), not restored
                // memory nor a hold: the kernel's initial stack and similar
                // leftovers.
                unsafe { sys::munmap(pos, next - pos) }.map_err(sys_err("unmapping the loader's stack"))?;
                pos = next;
            }
        }

        // 2. The current vDSO (with its vvar pages) to the image's address.
        if h.vdso_block_len != 0 && v.block != h.vdso_block as usize {
            let len = v.block_end - v.block;
            let target = h.vdso_block as usize;
            let overlap = target < v.block_end && target + len > v.block;
            let from = if overlap {
                // Through a free place first (the move replaces it).
                let tmp = find_hole(&self.img, self.loader, len)?;
                move_block(maps, v.block, tmp)?;
                tmp
            } else {
                v.block
            };
            move_block_from(maps, v.block, from, target)?;
        }

        // 3. Segments that had no free place during prepare.
        for i in 0..self.img.nseg() {
            let d = self.img.seg(i);
            if is_placed(self.placed, i) || deferred(&d, self.loader) {
                continue;
            }
            if d.kind == seg_kind::SHARED_FILE {
                let Some(&(_, mfd)) = self.mapfds[..self.nmapfds].iter().find(|(s, _)| *s as usize == i) else { continue };
                let off = self.img.mapfile(i).map_or(0, |(m, _)| m.offset);
                // SAFETY: as below; the file was opened in prepare.
                unsafe { sys::mmap(d.vaddr as usize, d.len as usize, d.prot, sys::MAP_SHARED | sys::MAP_FIXED, mfd, off) }
                    .map_err(sys_err("mapping a shared file"))?;
                let _ = sys::close(mfd);
                continue;
            }
            if self.hold[i] != 0 {
                // SAFETY: moves the segment's data, read and verified in
                // prepare, to its address; what was there (the kernel's
                // stack) is already unmapped, and the loader is not there.
                unsafe { sys::mremap_fixed(self.hold[i], d.len as usize, d.vaddr as usize) }
                    .map_err(sys_err("moving a segment into place"))?;
                continue;
            }
            let flags = if d.kind == seg_kind::SHARED { sys::MAP_SHARED } else { sys::MAP_PRIVATE } | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
            // SAFETY: the range was checked not to overlap the loader; what
            // was there (the kernel's stack) is already unmapped.
            unsafe { sys::mmap(d.vaddr as usize, d.len as usize, sys::PROT_READ | sys::PROT_WRITE, flags, -1, 0) }
                .map_err(sys_err("mapping a segment"))?;
        }
        let _ = &self.io;

        // 4. The tail's page, and the runtime's patch block: what this
        //    restart's command line said.
        let tp_len = (core::mem::size_of::<TailPage>() + 4095) & !4095;
        let tp_addr = find_hole(&self.img, self.loader, tp_len)?;
        // SAFETY: a fresh read-write mapping of at least that size; all-zero
        // bytes are a valid TailPage.
        let tp = unsafe { &mut *(tp_addr as *mut TailPage) };
        // The patch block is in the restored memory: in place, or (under the
        // loader) in its segment's hold, which the tail moves into place.
        let patch_at = self.data_address(h.patch_addr);
        // SAFETY: validated to lie in a stored writable segment, whose data
        // is now at `data_address`, writable (protections come below).
        let patch = unsafe { &mut *(patch_at as *mut RestartPatch) };
        if patch.magic == PATCH_MAGIC {
            if let Some(ckpt) = &self.ckpt {
                patch.ckpt_path.fill(0);
                let n = ckpt.len().min(patch.ckpt_path.len() - 1);
                patch.ckpt_path[..n].copy_from_slice(&ckpt.as_bytes()[..n]);
            }
            patch.relocatable = self.opts_relocatable as u32;
            patch.generation = h.generation + 1;
            patch.debug = self.opts_debug as u32;
            patch.warn[..5].copy_from_slice(&self.warn);
            patch.reserved = self.opts_aggravate as u32;
            if let Some(l) = self.ghost_limit {
                patch.ghost_limit = l; // else the image's
            }
            patch.cmd_fd = self.cmd_fd;
        }

        // 5. Final protections.
        for i in 0..self.img.nseg() {
            let d = self.img.seg(i);
            if d.kind == seg_kind::VDSO || deferred(&d, self.loader) {
                continue;
            }
            // SAFETY: the segment's own range, set to its recorded protection.
            unsafe { sys::mprotect(d.vaddr as usize, d.len as usize, d.prot) }.map_err(sys_err("protecting a segment"))?;
        }

        // 6. Working directory and umask (before the fds: the directory fd
        //    may sit on a number a file is about to take).
        if self.cwd_fd >= 0 {
            sys::fchdir(self.cwd_fd).map_err(|e| RestoreError::Cwd(self.img.cwd, e))?;
            let _ = sys::close(self.cwd_fd);
        }
        sys::umask(h.umask);

        // 7. File descriptors: close what the restarting environment passed
        //    beyond 0-2 (but the command stream), then install the reopened
        //    files at their numbers.
        let keep_fd =
            |fd: Fd, plan: &Plan| fd <= 2 || fd == plan.fd || fd == plan.cmd_fd || plan.fds[..plan.nfds].iter().any(|&(_, t)| t == fd);
        let mut dir = CPath::from_bytes(b"/proc/self/fd").map_err(sys_err("listing fds"))?;
        let dfd = sys::open(&mut dir, sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC, 0).map_err(sys_err("listing fds"))?;
        let k = sys::getdents64(dfd, self.io).map_err(sys_err("listing fds"))?;
        let _ = sys::close(dfd);
        for name in procfs::dirents(&self.io[..k]) {
            if let Some(n) = procfs::dec(name) {
                let n = n as Fd;
                if n != dfd && !keep_fd(n, &self) {
                    let _ = sys::close(n);
                }
            }
        }
        for &(target, tmp) in &self.fds[..self.nfds] {
            let cloexec = target & (1 << 30) != 0;
            let target = target & !(1 << 30);
            sys::dup3(tmp, target, if cloexec { sys::O_CLOEXEC } else { 0 }).map_err(sys_err("installing a file"))?;
            let _ = sys::close(tmp);
        }

        // 8. Signal dispositions; pending signals re-raised while all are
        //    blocked (sigreturn installs the program's own mask).
        sys::sigprocmask(sys::SIG_SETMASK, Some(!0)).map_err(sys_err("blocking signals"))?;
        for sig in 1..=64usize {
            if sig == 9 || sig == 19 {
                continue;
            }
            let d = self.img.sig(sig);
            let ka = KSigaction { handler: d.handler as usize, flags: d.flags as usize, restorer: d.restorer as usize, mask: d.mask };
            // SAFETY: the handlers and restorers are addresses in the restored
            // program, recorded from this very process image.
            let _ = unsafe { sys::sigaction(sig as i32, Some(&ka), None) };
        }
        let me = sys::getpid();
        for sig in 1..=64i32 {
            if h.pending & sys::sigbit(sig) != 0 && sig != 20 && sig != 12 {
                let _ = sys::tgkill(me, sys::gettid(), sig);
            }
        }
        // Interval timers, with the time that was left; one that expires
        // before the program runs leaves its signal pending, as above.
        for (which, t) in sys::ITIMERS.into_iter().zip(self.img.timers()) {
            if t.value_us != 0 {
                let _ = sys::setitimer(which, t.value_us, t.interval_us);
            }
        }

        // 9. The kernel's view of the address space, and the task name.
        set_mm(&self.img)?;
        let mut comm = [0u8; 17];
        comm[..16].copy_from_slice(&h.comm);
        // SAFETY: PR_SET_NAME reads at most 16 bytes.
        let _ = unsafe { sys::prctl(15, comm.as_ptr() as usize, 0, 0, 0) };

        // 10. rseq: re-register glibc's area (cleared of any critical section).
        let rseq_deferred = seg_containing(&self.img, h.rseq_addr).is_some_and(|d| deferred(&d, self.loader));
        if h.rseq_len != 0 {
            // SAFETY: the rseq area is in the restored TLS (validated: a
            // stored writable segment, its data now at `data_address`);
            // rseq_cs (offset 8) is a user pointer the kernel would follow.
            unsafe { core::ptr::write_volatile((self.data_address(h.rseq_addr) + 8) as *mut u64, 0) };
        }
        if h.rseq_len != 0 && !rseq_deferred {
            // SAFETY: the area stays valid for the life of the thread.
            if let Err(e) = unsafe { sys::rseq(h.rseq_addr as usize, h.rseq_len, 0, h.rseq_sig) } {
                if self.warn[crate::flags::WARN_UNSUP] != 0 {
                    Line::new().t("rckpt: warning: rseq re-registration failed: ").e(e).emit();
                }
            }
        }

        if self.opts_debug {
            Line::new()
                .t("rckpt: D_CKPT: restored ")
                .u(self.img.nseg() as u64)
                .t(" segments, generation ")
                .u(h.generation as u64 + 1)
                .t(", read and verified ")
                .u(self.read_bytes >> 10)
                .t(" KiB in ")
                .u(self.prepare_ns / 1_000_000)
                .t(" ms, commit took ")
                .u((sys::monotonic_ns() - t0) / 1000)
                .t(" us")
                .emit();
        }
        // 11. The tail's list: unmap the loader, then restore what lived
        //    where the loader was.
        let mut n = 0;
        let mut push = |op: sys::Op, n: &mut usize| {
            if *n < MAX_OPS {
                tp.ops[*n] = op;
                *n += 1;
            }
        };
        push(sys::op_munmap(self.loader.0, self.loader.1 - self.loader.0), &mut n);
        for i in 0..self.img.nseg() {
            let d = self.img.seg(i);
            if !deferred(&d, self.loader) {
                continue;
            }
            if self.hold[i] != 0 {
                push(sys::op_mremap(self.hold[i], d.len as usize, d.vaddr as usize), &mut n);
            } else {
                let shared = if d.kind == seg_kind::SHARED { sys::MAP_SHARED } else { sys::MAP_PRIVATE };
                push(sys::op_mmap_anon(d.vaddr as usize, d.len as usize, sys::PROT_READ | sys::PROT_WRITE, shared), &mut n);
            }
            push(sys::op_mprotect(d.vaddr as usize, d.len as usize, d.prot), &mut n);
        }
        if h.rseq_len != 0 && rseq_deferred {
            push(sys::op_rseq(h.rseq_addr as usize, h.rseq_len, h.rseq_sig), &mut n);
        }
        push(sys::op_close(self.fd), &mut n);
        if n >= MAX_OPS {
            return Err(RestoreError::TooMany("pieces of memory under the loader"));
        }
        // The tail's code: in the restored program, unless that too lived
        // under the loader, or what is at tail_addr is not the code this
        // loader knows; then a copy in the tail's page, which stays.
        let code_deferred = seg_containing(&self.img, h.tail_addr).is_some_and(|d| deferred(&d, self.loader));
        let ours = arch::rckpt_restore_tail as *const () as *const u8;
        // SAFETY: both ranges are readable code: the loader's own text, and
        // (not deferred) a stored executable segment mapped readable, which
        // holds TAIL_CMP bytes from tail_addr (validated by parse).
        let same = !code_deferred
            && unsafe {
                core::slice::from_raw_parts(h.tail_addr as usize as *const u8, image::TAIL_CMP)
                    == core::slice::from_raw_parts(ours, image::TAIL_CMP)
            };
        let sp = arch::sigreturn_sp(h.uc_addr as usize);
        let tail = if !same {
            let src = arch::rckpt_restore_tail as *const () as *const u8;
            // SAFETY: the tail is position-independent code shorter than the
            // copy; reading past its end stays inside the loader's text.
            unsafe { core::ptr::copy_nonoverlapping(src, tp.code.as_mut_ptr(), tp.code.len()) };
            tp.ops[n] = [arch::OP_END, sp, 0, 0, 0, 0, 0];
            // SAFETY: the page is the tail's own; it becomes read+exec.
            unsafe { sys::mprotect(tp_addr, tp_len, sys::PROT_READ | sys::PROT_EXEC) }.map_err(sys_err("protecting the tail"))?;
            tp.code.as_ptr() as usize
        } else {
            tp.ops[n] = [arch::OP_END, sp, tp_addr, tp_len, 0, 0, 0];
            h.tail_addr as usize
        };

        // 12. TLS, then into the tail.
        // SAFETY: the TLS blocks are restored; no loader code uses TLS.
        unsafe { arch::tls_restore(&h.tls) }.map_err(|e| RestoreError::Sys("setting the TLS base", Errno::new(-e as i32)))?;
        // SAFETY: `tail` holds the tail's code, the list starts by unmapping
        // exactly the loader's range (code, data and stack) and ends with the
        // signal frame the checkpoint handler ran on.
        unsafe { arch::jump_to_tail(tail, tp.ops.as_ptr() as usize) }
    }
}

/// Before the point of no return, try what `commit` can no longer take
/// back: the operation list of the restore tail must fit, and the kernel
/// must accept the image's address-space fields and TLS state (both are
/// set on the loader itself, which uses neither its mm fields nor TLS, and
/// set again for real in `commit`).
fn dry_run<'a>(img: &Image<'a>, dest: &impl Fn(usize) -> usize, loader: (usize, usize)) -> Result<(), RestoreError<'a>> {
    // munmap, rseq, close, the end, and spare; two per segment under the
    // loader (map or move, protect).
    let ops = 8 + 2 * (0..img.nseg()).filter(|&i| deferred(&img.seg(i), loader)).count();
    if ops >= MAX_OPS {
        return Err(RestoreError::TooMany("pieces of memory under the loader"));
    }
    image::check_frame(img, &caught(img, dest))?;
    set_mm(img)?;
    // SAFETY: no loader code uses TLS; commit sets it again.
    unsafe { arch::tls_restore(&img.header.tls) }.map_err(|e| RestoreError::Sys("the image's TLS state", Errno::new(-e as i32)))
}

/// The signal frame's and rseq area's bytes, from where their segments'
/// data now is (read and verified: in place or in a hold).
fn caught(img: &Image, dest: &impl Fn(usize) -> usize) -> Catch {
    let mut c = Catch::EMPTY;
    let h = &img.header;
    for a in [h.uc_addr, h.rseq_addr] {
        let Some(i) = img.seg_holding(a, a + 1) else { continue };
        let (d, at) = (img.seg(i), dest(i));
        if at == 0 || !img.seg_has_data(i) {
            continue;
        }
        // SAFETY: the segment's data, all `len` bytes of it mapped
        // read-write at `at` since prepare placed it.
        let data = unsafe { core::slice::from_raw_parts(at as *const u8, d.len as usize) };
        c.see(img, d.vaddr, data);
    }
    c
}

/// `PR_SET_MM_MAP` with the image's layout and auxv.
fn set_mm<'a>(img: &Image<'a>) -> Result<(), RestoreError<'a>> {
    let m = &img.header.mm;
    let mut mm = PrctlMmMap {
        start_code: m.start_code,
        end_code: m.end_code,
        start_data: m.start_data,
        end_data: m.end_data,
        start_brk: m.start_brk,
        brk: m.brk,
        start_stack: m.start_stack,
        arg_start: m.arg_start,
        arg_end: m.arg_end,
        env_start: m.env_start,
        env_end: m.env_end,
        auxv: img.auxv.as_ptr() as usize as u64,
        auxv_size: img.auxv.len() as u32,
        exe_fd: u32::MAX,
    };
    // SAFETY: PR_SET_MM_MAP reads the struct and the auxv array.
    unsafe { sys::prctl(35, 14, &mut mm as *mut _ as usize, core::mem::size_of_val(&mm), 0) }
        .map(|_| ())
        .map_err(sys_err("the image's address-space layout (prctl PR_SET_MM_MAP)"))
}

/// `struct prctl_mm_map` with the layout the kernel reads from 32- and
/// 64-bit processes alike (the auxv pointer is always 64 bits wide).
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}
static_assertions::const_assert_eq!(core::mem::size_of::<PrctlMmMap>(), 104);

/// Move every vvar/vdso piece of the block at `block` by `to - block`.
fn move_block(maps: &[u8], block: usize, to: usize) -> Result<(), RestoreError<'static>> {
    move_block_from(maps, block, block, to)
}

/// The pieces were listed at `listed` (their addresses in `maps`); they are
/// now at `from`; move them to `to`, keeping their offsets.
fn move_block_from(maps: &[u8], listed: usize, from: usize, to: usize) -> Result<(), RestoreError<'static>> {
    for (ls, le) in procfs::lines(maps) {
        let Some(m) = procfs::parse_map_line(maps, ls, le) else {
            continue;
        };
        let name = m.name(maps);
        if !procfs::is_vdso_block(name) {
            continue;
        }
        let off = m.start - listed;
        // SAFETY: moves a kernel special mapping of this process to an
        // address the image reserved for it; nothing else is there.
        unsafe { sys::mremap_fixed(from + off, m.end - m.start, to + off) }.map_err(sys_err("moving the vDSO"))?;
    }
    Ok(())
}
