//! The checkpoint writer. Runs inside the checkpoint signal handler of a
//! relinked program.
//!
//! Forbidden here: allocation, `core::fmt`, panics, locks, libc calls. All
//! working memory is one anonymous mapping made at the start and unmapped at
//! the end (it is left out of the image); /proc files are read whole into it
//! before they are parsed.
//!
//! Atomicity: the image goes to `FILE.tmp`, is fsync'ed, renamed over `FILE`,
//! and the directory is fsync'ed. On any error the `.tmp` is removed and
//! `FILE` is untouched.
//!
//! Restorability: an image that no restart could use is never committed.
//! Every file to reopen by path must still be reachable by that path (the
//! same device and inode), every file mapped shared likewise, and every
//! deleted file still open (a ghost) is saved into the image, up to the
//! size limit of [`Request::ghost_limit`]; otherwise the checkpoint fails.

// A `Failure` that names a file carries its path by value (a `CPath`,
// 4 KiB): there is no allocator to box it into, and the handler's stack
// has room for it. Hence the large `Err` variants.
#![allow(clippy::result_large_err)]

use crate::elf::{self, Class, Cursor, Phdr};
use crate::format::*;
use crate::hash::{self, SegSum};
use crate::line::Line;
use crate::procfs::{self, MapLine};
use crate::sys::{self, CPath, Errno, Fd, KSigaction, Stat};
use rckpt_arch as arch;

/// What the handler asks for.
pub struct Request<'a> {
    /// The ucontext the kernel passed to the handler.
    pub uc: *const u8,
    pub signal: i32,
    /// Absolute path of the checkpoint file.
    pub path: &'a CPath,
    pub patch_addr: usize,
    pub tail_addr: usize,
    pub rseq_addr: usize,
    pub rseq_len: u32,
    pub generation: u32,
    /// The checkpointed process (the writer may be a forked copy of it,
    /// which has its own pid and no pending signals).
    pub pid: i32,
    pub ppid: i32,
    pub pending: u64,
    /// The interval timers, read in the process itself (a forked copy has
    /// none).
    pub timers: [TimerDesc; 3],
    /// Largest deleted file (ghost) to save; a larger one fails the
    /// checkpoint.
    pub ghost_limit: u64,
    /// The command stream's descriptor, left out of the image like the
    /// writer's own (a restart gets its stream from its starter); -1: none.
    pub cmd_fd: Fd,
}

#[derive(Clone, Copy, Default)]
pub struct Stats {
    pub segments: u32,
    /// Deleted files saved, and their bytes (included in `stored`).
    pub ghosts: u32,
    pub ghost_bytes: u64,
    pub stored: u64,
    pub file_size: u64,
    /// The head's seal: what names this image (a migration's receiver
    /// acknowledges it).
    pub seal: u64,
    /// Total time, and the part of it spent in fsync (file and directory).
    pub ns: u64,
    pub sync_ns: u64,
}

/// What failed, for the one-line message ([`Failure::describe`]): `what`,
/// then the system's reason when a system call failed (`None`: `what` says
/// it all); or a problem with one file of the process, named by its path.
#[derive(Clone)]
pub struct Failure {
    pub what: &'static str,
    pub errno: Option<Errno>,
    pub file: Option<(Problem, CPath)>,
    /// The finished headers failed the readers' own validation.
    pub invalid: Option<crate::image::ImageError>,
}

/// Why a file of the process makes the image unrestorable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The fd's path no longer names the file it has open.
    StaleFd(Fd),
    /// The path of the file mapped shared at this address no longer names
    /// the mapped file.
    StaleMapping(u64),
    /// A deleted file still open (at this fd) is larger than the limit.
    GhostTooLarge { fd: Fd, size: u64, limit: u64 },
}

impl Failure {
    /// A failure of rckpt's own limits, not of a system call.
    fn plain(what: &'static str) -> Self {
        Failure { what, errno: None, file: None, invalid: None }
    }
    fn sys(what: &'static str, errno: Errno) -> Self {
        Failure { what, errno: Some(errno), file: None, invalid: None }
    }
    fn file(p: Problem, path: &[u8]) -> Self {
        let mut c = CPath::new();
        let _ = c.push(&path[..path.len().min(sys::PATH_MAX - 1)]);
        Failure { what: "", errno: None, file: Some((p, c)), invalid: None }
    }

    /// The message, without "rckpt: " and without a newline.
    pub fn describe(&self, l: &mut Line) {
        if let Some(e) = self.invalid {
            l.t("the image would not restore: ");
            e.describe(l);
            return;
        }
        match &self.file {
            None => {
                l.t(self.what);
                if let Some(e) = self.errno {
                    l.t(": ").e(e);
                }
            }
            Some((Problem::StaleFd(fd), path)) => {
                l.t("fd ").i(*fd as i64).t(" (").s(path.as_bytes()).t("): that name no longer leads to the open file");
            }
            Some((Problem::StaleMapping(addr), path)) => {
                l.t("the file mapped shared at ").x(*addr).t(" (").s(path.as_bytes()).t("): that name no longer leads to the mapped file");
            }
            Some((Problem::GhostTooLarge { fd, size, limit }, path)) => {
                l.t("fd ").i(*fd as i64).t(" (").s(path.as_bytes()).t(") is a deleted file of ").u(*size);
                l.t(" bytes, more than the limit of ")
                    .u(*limit)
                    .t(" bytes for saving deleted files (raise it with -_condor_ghost_limit SIZE)");
            }
        }
    }
}

impl core::fmt::Debug for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // For tests and std callers only: the writer itself never formats.
        let mut l = Line::new();
        self.describe(&mut l);
        f.write_str(core::str::from_utf8(l.as_bytes()).unwrap_or("?"))
    }
}

fn fail(what: &'static str) -> impl FnOnce(Errno) -> Failure {
    move |errno| Failure::sys(what, errno)
}

/// The process must be single-threaded: the checkpoint saves one thread's
/// registers. Cheap enough (one /proc directory read, a stack buffer) for
/// the signal handler to call before it forks a writer.
pub fn check_single_threaded() -> Result<(), Failure> {
    let mut buf = [0u8; 1024];
    if count_tasks(&mut buf)? > 1 {
        return Err(Failure::plain("the process has more than one thread (rckpt checkpoints single-threaded processes only)"));
    }
    Ok(())
}

const MAX_MAPS: usize = 8192;
const MAPS_TEXT: usize = 2 << 20;
const HDR_MAX: usize = 4 << 20;
const SMALL: usize = 64 << 10;
const SCAN_VEC: usize = 4096;
const CHUNK: usize = 1 << 20;
/// Runs of stored pages an image may have (past it, a segment's last run
/// grows over the gap to the next one: the gap's pages are stored too).
const MAX_RUNS: usize = 16384;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: usize = 0xC060_6610;
const PAGE_IS_PRESENT: u64 = 8;
const PAGE_IS_SWAPPED: u64 = 16;
const PAGE_IS_PFNZERO: u64 = 32;

#[derive(Clone, Copy, Default)]
struct Seg {
    map: MapLine,
    kind: u32,
    prot: u32,
    /// Whether any data may be stored (decides `p_filesz`).
    has_data: bool,
    /// For a shared mapping of a deleted file: 1 + the index of its ghost
    /// (0: none; an all-zero `Seg` stays valid).
    ghost: u32,
    first_run: u32,
    nrun: u32,
    stored: u64,
    sum: u64,
}

#[repr(C)]
struct Scratch {
    maps_text: [u8; MAPS_TEXT],
    segs: [Seg; MAX_MAPS],
    hdr: [u8; HDR_MAX],
    small: [u8; SMALL],
    dents: [u8; SMALL],
    scan: [PageRegion; SCAN_VEC],
    bounce: [u8; CHUNK],
    ghosts: [Ghost; MAX_GHOSTS],
    runs: [RunDesc; MAX_RUNS],
}

/// A deleted file the process still has open (memfds included).
#[derive(Clone, Copy, Default)]
struct Ghost {
    /// The first fd found open on it; its contents are read through it.
    fd: Fd,
    st: Stat,
    /// `ghost_flags`.
    flags: u32,
    /// A read-only descriptor of it (`/proc/self/fd/N`), open while the
    /// image is written (closed by `close_ghosts`).
    src: Fd,
    first_run: u32,
    nrun: u32,
    stored: u64,
    sum: u64,
}

const DELETED: &[u8] = b" (deleted)";

/// A path as /proc shows it, without the " (deleted)" of a deleted file.
fn strip_deleted(p: &[u8]) -> &[u8] {
    p.strip_suffix(DELETED).unwrap_or(p)
}

/// `/proc/self/fd/N` for fd `n`.
fn fd_link(n: Fd) -> Result<CPath, Errno> {
    let mut p = CPath::from_bytes(b"/proc/self/fd/")?;
    p.push_dec(n as u64)?;
    Ok(p)
}

/// The scratch mapping; unmapped on drop.
struct ScratchMap {
    addr: usize,
    len: usize,
}

impl ScratchMap {
    fn new() -> Result<Self, Failure> {
        let len = (core::mem::size_of::<Scratch>() + 4095) & !4095;
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address
        // replaces nothing.
        let addr = unsafe { sys::mmap(0, len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS, -1, 0) }
            .map_err(fail("allocating working memory"))?;
        Ok(ScratchMap { addr, len })
    }
    fn get(&mut self) -> &mut Scratch {
        // SAFETY: the mapping is zero-filled, large enough, page aligned, and
        // all-zero bytes are a valid `Scratch` (integers and bools only).
        unsafe { &mut *(self.addr as *mut Scratch) }
    }
}

impl Drop for ScratchMap {
    fn drop(&mut self) {
        // SAFETY: only `get()` borrows point here, and they end with `self`.
        let _ = unsafe { sys::munmap(self.addr, self.len) };
    }
}

/// An open fd closed on drop.
struct OwnedFd(Fd);
impl Drop for OwnedFd {
    fn drop(&mut self) {
        let _ = sys::close(self.0);
    }
}

/// Write a checkpoint of the calling process to `req.path`, atomically:
/// `PATH.tmp`, fsync, rename, directory fsync. On any failure the `.tmp` is
/// removed and `PATH` is untouched.
pub fn checkpoint(req: &Request) -> Result<Stats, Failure> {
    let t0 = sys::monotonic_ns();
    let mut tmp = req.path.clone();
    tmp.push(b".tmp").map_err(fail("naming the temporary file"))?;
    let fd = sys::open(&mut tmp, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC, 0o600)
        .map_err(fail("creating the temporary file"))?;
    let fd = OwnedFd(fd);
    let r = checkpoint_to_fd(req, fd.0);
    let t_sync = sys::monotonic_ns();
    let r = r.and_then(|st| {
        sys::fsync(fd.0).map_err(fail("syncing the checkpoint"))?;
        Ok(st)
    });
    let mut sync_ns = sys::monotonic_ns() - t_sync;
    drop(fd);
    let mut st = match r {
        Ok(st) => st,
        Err(e) => {
            let _ = sys::unlink(&mut tmp);
            return Err(e);
        }
    };
    let mut dst = req.path.clone();
    if let Err(e) = sys::rename(&mut tmp, &mut dst) {
        let _ = sys::unlink(&mut tmp);
        return Err(Failure::sys("renaming the checkpoint into place", e));
    }
    let t_dir = sys::monotonic_ns();
    sync_dir(req.path);
    let t_end = sys::monotonic_ns();
    sync_ns += t_end - t_dir;
    st.ns = t_end - t0;
    st.sync_ns = sync_ns;
    Ok(st)
}

/// Write a checkpoint of the calling process to `fd` in one front-to-back
/// pass (a fresh file, a pipe, a socket: nothing is ever sought back to).
/// The caller decides what a failure half-way means for the descriptor.
pub fn checkpoint_to_fd(req: &Request, fd: Fd) -> Result<Stats, Failure> {
    let t0 = sys::monotonic_ns();
    let mut map = ScratchMap::new()?;
    let scratch_range = (map.addr, map.addr + map.len);
    let s = map.get();

    check_single_threaded()?;

    // Everything /proc says, read before anything is written.
    let n = sys::read_file(b"/proc/self/maps", &mut s.maps_text).map_err(fail("reading /proc/self/maps"))?;
    let (nseg, vdso) = classify(&s.maps_text[..n], &mut s.segs, scratch_range)?;
    let segs = &mut s.segs[..nseg];
    let text = &s.maps_text[..n];

    // SIGXFSZ would kill the process when the file size limit is hit, and
    // SIGPIPE when a reader goes away; ignored, write() reports EFBIG or
    // EPIPE instead.
    let ign = KSigaction { handler: sys::SIG_IGN, ..Default::default() };
    let (mut old_xfsz, mut old_pipe) = (KSigaction::default(), KSigaction::default());
    // SAFETY: SIG_IGN is always a valid disposition; the old ones are restored below.
    unsafe {
        let _ = sys::sigaction(25, Some(&ign), Some(&mut old_xfsz));
        let _ = sys::sigaction(13, Some(&ign), Some(&mut old_pipe));
    }
    let bufs = Bufs {
        hdr: &mut s.hdr,
        small: &mut s.small,
        dents: &mut s.dents,
        vec: &mut s.scan,
        bounce: &mut s.bounce,
        ghosts: &mut s.ghosts,
        runs: &mut s.runs,
    };
    let r = write_image(req, fd, segs, text, vdso, bufs, [old_xfsz, old_pipe]);
    // SAFETY: restoring the dispositions read above.
    unsafe {
        let _ = sys::sigaction(25, Some(&old_xfsz), None);
        let _ = sys::sigaction(13, Some(&old_pipe), None);
    }
    r.map(|st| Stats { ns: sys::monotonic_ns() - t0, ..st })
}

/// fsync the directory holding `path` so the rename is durable.
fn sync_dir(path: &CPath) {
    let b = path.as_bytes();
    let cut = b.iter().rposition(|&c| c == b'/').unwrap_or(0);
    let dir = if cut == 0 { &b"/"[..] } else { &b[..cut] };
    if let Ok(mut d) = CPath::from_bytes(dir) {
        if let Ok(fd) = sys::open(&mut d, sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC, 0) {
            let _ = sys::fsync(fd);
            let _ = sys::close(fd);
        }
    }
}

fn count_tasks(buf: &mut [u8]) -> Result<usize, Failure> {
    let mut p = CPath::from_bytes(b"/proc/self/task").map_err(fail("reading /proc/self/task"))?;
    let fd = sys::open(&mut p, sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC, 0).map_err(fail("reading /proc/self/task"))?;
    let fd = OwnedFd(fd);
    let mut count = 0;
    loop {
        let n = sys::getdents64(fd.0, buf).map_err(fail("reading /proc/self/task"))?;
        if n == 0 {
            break;
        }
        for name in procfs::dirents(&buf[..n]) {
            if name.first().is_some_and(|c| c.is_ascii_digit()) {
                count += 1;
            }
        }
    }
    Ok(count)
}

use procfs::VdsoBlock as Vdso;

/// Turn /proc/self/maps into the segment list; find the vDSO block.
fn classify(text: &[u8], segs: &mut [Seg], skip: (usize, usize)) -> Result<(usize, Vdso), Failure> {
    let mut n = 0;
    let mut v = Vdso::default();
    for (ls, le) in procfs::lines(text) {
        let Some(line) = procfs::parse_map_line(text, ls, le) else {
            return Err(Failure::plain("cannot parse /proc/self/maps"));
        };
        // The writer's own scratch memory is not the process's; the kernel
        // may have merged it with a neighbouring anonymous mapping, so cut
        // it out of whatever line holds it.
        for m in outside(line, skip).into_iter().flatten() {
            let name = m.name(text);
            if v.add(&m, name) {
                if name == b"[vdso]" {
                    // Kept in the image for debuggers (the vvar pages are not
                    // readable data); never restored from it.
                    if let Some(slot) = segs.get_mut(n) {
                        *slot = Seg {
                            map: m,
                            kind: seg_kind::VDSO,
                            prot: sys::PROT_READ | sys::PROT_EXEC,
                            has_data: true,
                            ..Default::default()
                        };
                        n += 1;
                    }
                }
                continue;
            }
            if name == b"[vsyscall]" || m.start >= arch::USER_MAX {
                continue;
            }
            // Shared anonymous memory, SysV shm and memfds show as deleted
            // files: their contents are saved; a live file is mapped again.
            let live_file = name.first() == Some(&b'/') && m.inode != 0 && !name.ends_with(b" (deleted)");
            let kind = if m.shared && live_file {
                seg_kind::SHARED_FILE
            } else if m.shared {
                seg_kind::SHARED
            } else if name == b"[heap]" {
                seg_kind::HEAP
            } else if name == b"[stack]" {
                seg_kind::STACK
            } else if name.first() == Some(&b'/') && m.inode != 0 {
                seg_kind::FILE
            } else {
                seg_kind::ANON
            };
            let prot = ((m.read as u32) * sys::PROT_READ) | ((m.write as u32) * sys::PROT_WRITE) | ((m.exec as u32) * sys::PROT_EXEC);
            let Some(slot) = segs.get_mut(n) else {
                return Err(Failure::plain("too many mappings"));
            };
            *slot = Seg { map: m, kind, prot, has_data: m.read && kind != seg_kind::SHARED_FILE, ..Default::default() };
            n += 1;
        }
    }
    Ok((n, v))
}

/// The parts of `m` outside `[skip.0, skip.1)`: `m` itself, nothing, or
/// the pieces before and after.
fn outside(m: MapLine, skip: (usize, usize)) -> [Option<MapLine>; 2] {
    if m.end <= skip.0 || m.start >= skip.1 {
        return [Some(m), None];
    }
    let before = (m.start < skip.0).then_some(MapLine { end: skip.0, ..m });
    let after = (m.end > skip.1).then(|| MapLine { start: skip.1, offset: m.offset + (skip.1 - m.start) as u64, ..m });
    [before, after]
}

/// Does PAGEMAP_SCAN find any stored page in the range? `None` when the
/// kernel lacks PAGEMAP_SCAN.
fn scan(pm: Fd, start: usize, end: usize, vec: &mut [PageRegion], max_pages: u64) -> Option<Result<(usize, u64), Errno>> {
    let mut arg = PmScanArg {
        size: core::mem::size_of::<PmScanArg>() as u64,
        start: start as u64,
        end: end as u64,
        vec: vec.as_mut_ptr() as usize as u64,
        vec_len: vec.len() as u64,
        max_pages,
        category_inverted: PAGE_IS_PFNZERO,
        category_mask: PAGE_IS_PFNZERO,
        category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        ..Default::default()
    };
    // SAFETY: `arg` is a pm_scan_arg whose vec points at `vec`, which the
    // kernel fills with at most vec_len entries.
    match unsafe { sys::ioctl(pm, PAGEMAP_SCAN, &mut arg as *mut PmScanArg as usize) } {
        Ok(k) => Some(Ok((k, arg.walk_end))),
        Err(Errno::ENOTTY) | Err(Errno::EINVAL) => None,
        Err(e) => Some(Err(e)),
    }
}

fn uses_scan(kind: u32) -> bool {
    matches!(kind, seg_kind::ANON | seg_kind::HEAP | seg_kind::STACK)
}

/// The scratch buffers `write_image` works in.
struct Bufs<'a> {
    hdr: &'a mut [u8],
    small: &'a mut [u8],
    dents: &'a mut [u8],
    vec: &'a mut [PageRegion],
    bounce: &'a mut [u8],
    ghosts: &'a mut [Ghost; MAX_GHOSTS],
    runs: &'a mut [RunDesc; MAX_RUNS],
}

/// Dispositions the writer replaced while it runs (SIGXFSZ, SIGPIPE); the
/// image records the program's own.
type Saved = [KSigaction; 2];

fn write_image(req: &Request, fd: Fd, segs: &mut [Seg], text: &[u8], vdso: Vdso, b: Bufs, saved: Saved) -> Result<Stats, Failure> {
    let Bufs { hdr, small, dents, vec, bounce, ghosts, runs } = b;
    let mut pmp = CPath::from_bytes(b"/proc/self/pagemap").map_err(fail("opening pagemap"))?;
    let pm = OwnedFd(sys::open(&mut pmp, sys::O_RDONLY | sys::O_CLOEXEC, 0).map_err(fail("opening /proc/self/pagemap"))?);

    // Deleted files still open, and the shared mappings of them.
    let own_fds = [fd, pm.0, req.cmd_fd];
    let nghost = gather_ghosts(dents, &own_fds, ghosts, req.ghost_limit)?;
    let ghosts = &mut ghosts[..nghost];
    let _close = CloseGhosts(ghosts.as_ptr(), ghosts.len());
    link_ghost_mappings(segs, text, ghosts);
    check_mapped_files(segs, text)?;

    // Where the data is: every run of stored pages, before anything is sent.
    let nrun = plan_runs(pm.0, segs, ghosts, vec, runs)?;
    let runs = &mut runs[..nrun];

    // The head, which depends on nothing but the plan.
    let head = build_head(req, segs, text, vdso, small, dents, &own_fds, ghosts, runs, saved, hdr)?;

    // Send it: head, padding, runs in file order, trailer.
    let mut out = Out { fd, pos: 0 };
    out.bytes(&hdr[..head.len])?;
    out.zeros(head.data_start - head.len as u64)?;
    // The segment holding this very stack changes while it is written: it
    // goes through a copy, so that the data and its checksum agree.
    let here = &out as *const Out as usize;
    let nseg = segs.len();
    for r in runs.iter() {
        let o = r.owner as usize;
        if o < nseg {
            let sg = &mut segs[o];
            let live = sg.map.start <= here && here < sg.map.end;
            write_memory(&mut out, sg, r, if live { Some(&mut *bounce) } else { None })?;
        } else {
            write_ghost_run(&mut out, &mut ghosts[o - nseg], r, bounce)?;
        }
    }
    let trailer = build_trailer(segs, ghosts, head.seal, small)?;
    out.bytes(&small[..trailer])?;
    let stored: u64 = runs.iter().map(|r| r.len).sum();
    let ghost_bytes = ghosts.iter().map(|g| g.stored).sum();
    Ok(Stats {
        segments: nseg as u32,
        ghosts: ghosts.len() as u32,
        ghost_bytes,
        stored,
        file_size: out.pos,
        seal: head.seal,
        ns: 0,
        sync_ns: 0,
    })
}

/// The image's destination, written front to back, never sought.
struct Out {
    fd: Fd,
    pos: u64,
}

impl Out {
    fn bytes(&mut self, b: &[u8]) -> Result<(), Failure> {
        sys::write_all(self.fd, b).map_err(fail("writing the image"))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), Failure> {
        static ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
        while n > 0 {
            let k = n.min(PAGE_SIZE) as usize;
            self.bytes(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// `len` bytes of this process's memory at `addr`, handed to the kernel
    /// without a copy.
    fn memory(&mut self, addr: usize, len: usize) -> Result<(), Failure> {
        let mut done = 0;
        while done < len {
            match sys::write_raw(self.fd, addr + done, len - done) {
                Ok(0) => return Err(Failure::plain("writing memory: the image took no more data")),
                Ok(k) => done += k,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Failure::sys("writing memory", e)),
            }
        }
        self.pos += len as u64;
        Ok(())
    }
}

/// Closes the ghosts' read descriptors however `write_image` ends.
struct CloseGhosts(*const Ghost, usize);
impl Drop for CloseGhosts {
    fn drop(&mut self) {
        for k in 0..self.1 {
            // SAFETY: the ghosts slice outlives this guard (declared after it).
            let g = unsafe { &*self.0.add(k) };
            if g.src > 0 {
                let _ = sys::close(g.src);
            }
        }
    }
}

/// Append a run, joined to the previous one when they touch. With the
/// table full, the previous run of the same owner grows over the gap (its
/// pages are stored too: zeros, for memory never touched).
fn push_run(runs: &mut [RunDesc], n: &mut usize, r: RunDesc) -> Result<(), Failure> {
    if let Some(last) = n.checked_sub(1).and_then(|k| runs.get_mut(k)) {
        if last.owner == r.owner && last.offset + last.len == r.offset {
            last.len += r.len;
            return Ok(());
        }
        if *n == MAX_RUNS && last.owner == r.owner {
            last.len = r.offset + r.len - last.offset;
            return Ok(());
        }
    }
    let slot = runs.get_mut(*n).ok_or(Failure::plain("too many separate pieces of memory and files to save"))?;
    *slot = r;
    *n += 1;
    Ok(())
}

/// Every run of stored pages, in file order: each segment's (present pages
/// of anonymous memory, found with PAGEMAP_SCAN; the readable part of
/// everything else), then each ghost file's data extents.
fn plan_runs(pm: Fd, segs: &mut [Seg], ghosts: &mut [Ghost], vec: &mut [PageRegion], runs: &mut [RunDesc]) -> Result<usize, Failure> {
    let mut n = 0;
    for (i, sg) in segs.iter_mut().enumerate() {
        let first = n;
        if sg.has_data {
            let run = |offset: usize, len: usize| RunDesc { owner: i as u32, offset: offset as u64, len: len as u64, ..Default::default() };
            let (a, b) = (sg.map.start, sg.map.end);
            let scanned = uses_scan(sg.kind) && scan_runs(pm, a, b, vec, |s, e| push_run(runs, &mut n, run(s - a, e - s)))?;
            if !scanned {
                let len = readable_prefix(a, b);
                if len > 0 {
                    push_run(runs, &mut n, run(0, len))?;
                }
            }
        }
        sg.first_run = first as u32;
        sg.nrun = (n - first) as u32;
        sg.stored = runs[first..n].iter().map(|r| r.len).sum();
    }
    for (k, g) in ghosts.iter_mut().enumerate() {
        let first = n;
        let owner = (segs.len() + k) as u32;
        let mut link = fd_link(g.fd).map_err(fail("reading a deleted file"))?;
        g.src = sys::open(&mut link, sys::O_RDONLY | sys::O_CLOEXEC, 0).map_err(fail("reading a deleted file"))?;
        let size = page_up(g.st.size);
        let mut pos = 0;
        while pos < size {
            let d = match sys::lseek(g.src, pos, sys::SEEK_DATA) {
                Ok(d) => d & !(PAGE_SIZE - 1),
                Err(Errno::ENXIO) => break,
                Err(e) => return Err(Failure::sys("reading a deleted file", e)),
            };
            if d >= size {
                break;
            }
            let h = sys::lseek(g.src, d, sys::SEEK_HOLE).map_err(fail("reading a deleted file"))?;
            let e = page_up(h).min(size);
            push_run(runs, &mut n, RunDesc { owner, offset: d.max(pos), len: e - d.max(pos), ..Default::default() })?;
            pos = e.max(pos + PAGE_SIZE);
        }
        g.first_run = first as u32;
        g.nrun = (n - first) as u32;
        g.stored = runs[first..n].iter().map(|r| r.len).sum();
    }
    Ok(n)
}

/// Report each present run of `[a, b)` through `f`; false when the kernel
/// has no PAGEMAP_SCAN (the caller then stores the whole range).
fn scan_runs(
    pm: Fd,
    a: usize,
    b: usize,
    vec: &mut [PageRegion],
    mut f: impl FnMut(usize, usize) -> Result<(), Failure>,
) -> Result<bool, Failure> {
    let mut start = a;
    loop {
        let (k, walk_end) = match scan(pm, start, b, vec, 0) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(Failure::sys("scanning page tables", e)),
            None if start == a => return Ok(false),
            None => return Err(Failure::plain("scanning page tables: PAGEMAP_SCAN gave an unexpected result")),
        };
        for r in &vec[..k] {
            f(r.start as usize, r.end as usize)?;
        }
        // Resume from walk_end only when the result vector filled up.
        if k < vec.len() || walk_end as usize >= b {
            return Ok(true);
        }
        start = walk_end as usize;
    }
}

/// How much of `[a, b)` can be read from the start: all of it, except the
/// pages of a file mapping past the end of its file (SIGBUS), found by
/// bisection.
fn readable_prefix(a: usize, b: usize) -> usize {
    let page = PAGE_SIZE as usize;
    if sys::readable(b - page) {
        return b - a;
    }
    if !sys::readable(a) {
        return 0;
    }
    let (mut lo, mut hi) = (a, b - page); // lo readable, hi not
    while hi - lo > page {
        let mid = lo + (hi - lo) / 2 / page * page;
        if sys::readable(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi - a
}

/// A memory run: written from the process's own pages (or, for the live
/// stack, through a copy), hashed into its segment's sum.
fn write_memory(out: &mut Out, sg: &mut Seg, r: &RunDesc, mut bounce: Option<&mut [u8]>) -> Result<(), Failure> {
    let base = sg.map.start + r.offset as usize;
    let mut sum = SegSum(sg.sum);
    let mut at = 0usize;
    while at < r.len as usize {
        let want = (r.len as usize - at).min(CHUNK);
        let addr = base + at;
        let page = ((r.offset as usize + at) / hash::PAGE) as u64;
        if let Some(buf) = bounce.as_deref_mut() {
            // SAFETY: a present, readable part of this anonymous mapping; the
            // copy is taken at one moment.
            buf[..want].copy_from_slice(unsafe { core::slice::from_raw_parts(addr as *const u8, want) });
            out.bytes(&buf[..want])?;
            sum.add_pages(page, &buf[..want]);
        } else {
            out.memory(addr, want)?;
            // SAFETY: the kernel just read these bytes of our own memory, so
            // they are mapped and readable.
            sum.add_pages(page, unsafe { core::slice::from_raw_parts(addr as *const u8, want) });
        }
        at += want;
    }
    sg.sum = sum.0;
    Ok(())
}

/// A ghost file's run: read through its own descriptor (the program's
/// offset never moves). The run's length was promised in the head: a file
/// that shrank meanwhile is padded with zeros, and the checksum covers what
/// was sent.
fn write_ghost_run(out: &mut Out, g: &mut Ghost, r: &RunDesc, buf: &mut [u8]) -> Result<(), Failure> {
    let mut sum = SegSum(g.sum);
    let mut at = 0u64;
    while at < r.len {
        let want = ((r.len - at) as usize).min(buf.len());
        let mut got = 0;
        while got < want {
            match sys::pread(g.src, &mut buf[got..want], r.offset + at + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Failure::sys("reading a deleted file", e)),
            }
        }
        buf[got..want].fill(0);
        out.bytes(&buf[..want])?;
        sum.add_pages((r.offset + at) / PAGE_SIZE, &buf[..want]);
        at += want as u64;
    }
    g.sum = sum.0;
    Ok(())
}

/// The built head: its length, where the data starts, and its seal.
struct Head {
    len: usize,
    data_start: u64,
    seal: u64,
}

/// Gather, then encode: notes, then the layout they imply (run offsets,
/// program headers, the trailer's place), then the seal; and check it with
/// the readers' own validation before anything is sent.
#[allow(clippy::too_many_arguments)]
fn build_head(
    req: &Request,
    segs: &[Seg],
    text: &[u8],
    vdso: Vdso,
    small: &mut [u8],
    dents: &mut [u8],
    own_fds: &[Fd],
    ghosts: &[Ghost],
    runs: &mut [RunDesc],
    saved: Saved,
    hdr: &mut [u8],
) -> Result<Head, Failure> {
    let class = Class::NATIVE;
    let npiece: usize = segs.iter().map(|sg| pieces(sg, runs).count()).sum();
    let phnum = 2 + npiece;
    if phnum > u16::MAX as usize - 1 {
        return Err(Failure::plain("too many separate pieces of memory to describe"));
    }
    let notes_at = class.ehdr_size() + phnum * class.phdr_size();
    let mut c = Cursor::new(hdr);
    c.pos = notes_at;
    let marks = build_notes(&mut c, req, segs, text, vdso, small, dents, own_fds, ghosts, runs, saved[0])?;
    if c.overflow {
        return Err(Failure::plain("building notes (too large)"));
    }
    let seal_at = c.pos;
    let len = seal_at + 12 + 8 + core::mem::size_of::<Seal>();
    let data_start = page_up(len as u64);
    let mut off = data_start;
    for (k, r) in runs.iter_mut().enumerate() {
        r.file_off = off;
        off += r.len;
        let at = marks.runs + k * core::mem::size_of::<RunDesc>();
        if let Some(dst) = c.buf.get_mut(at..at + core::mem::size_of::<RunDesc>()) {
            dst.copy_from_slice(pod_bytes(r));
        }
    }
    let data_end = off;
    let trailer_len = trailer_len(segs.len() + ghosts.len());
    c.pos = 0;
    elf::write_ehdr(&mut c, class, arch::ELF_MACHINE, class.ehdr_size() as u64, phnum as u16);
    let note = |offset, filesz| Phdr { p_type: elf::PT_NOTE, offset, filesz, align: 4, ..Default::default() };
    elf::write_phdr(&mut c, class, &note(notes_at as u64, (len - notes_at) as u64));
    elf::write_phdr(&mut c, class, &note(data_end, trailer_len as u64));
    for sg in segs {
        for p in pieces(sg, runs) {
            elf::write_phdr(&mut c, class, &p);
        }
    }
    c.pos = seal_at;
    let seal = Seal { hash: hash::xxh64(&c.buf[..seal_at], SEAL_SEED), reserved: 0 };
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_SEAL);
    c.bytes(pod_bytes(&seal));
    c.end_note(m);
    if c.overflow || c.pos != len {
        return Err(Failure::plain("building the header (too large)"));
    }
    // What no reader would restore must not replace a good image: the head
    // passes the same validation as `rckpt info` and the loader.
    if let Err(e) = crate::image::Image::parse(&c.buf[..len], data_end + trailer_len as u64) {
        return Err(Failure { invalid: Some(e), ..Failure::plain("") });
    }
    Ok(Head { len, data_start, seal: seal.hash })
}

/// The `PT_LOAD`s that describe segment `sg` for gdb, in address order: one
/// per run (its data in the file) and one per gap between runs (nothing
/// stored: zeros).
fn pieces<'r>(sg: &Seg, runs: &'r [RunDesc]) -> impl Iterator<Item = Phdr> + 'r {
    let (start, len) = (sg.map.start as u64, (sg.map.end - sg.map.start) as u64);
    let flags = if sg.prot & sys::PROT_READ != 0 { elf::PF_R } else { 0 }
        | if sg.prot & sys::PROT_WRITE != 0 { elf::PF_W } else { 0 }
        | if sg.prot & sys::PROT_EXEC != 0 { elf::PF_X } else { 0 };
    let own = &runs[sg.first_run as usize..(sg.first_run + sg.nrun) as usize];
    crate::image::load_pieces(start, len, own.iter().copied()).map(move |(vaddr, filesz, memsz, offset)| Phdr {
        p_type: elf::PT_LOAD,
        flags,
        offset,
        vaddr,
        filesz,
        memsz,
        align: PAGE_SIZE,
    })
}

fn trailer_len(n: usize) -> usize {
    crate::image::trailer_len(n) as usize
}

/// The trailer into `buf`: every segment's then every ghost's checksum,
/// then the end seal (XXH64 of the trailer so far, seeded with the head's
/// seal, so a trailer belongs to its head). Returns its length.
fn build_trailer(segs: &[Seg], ghosts: &[Ghost], head_seal: u64, buf: &mut [u8]) -> Result<usize, Failure> {
    let mut c = Cursor::new(buf);
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_SUMS);
    for sum in segs.iter().map(|s| s.sum).chain(ghosts.iter().map(|g| g.sum)) {
        c.u64(sum);
    }
    c.end_note(m);
    let end_at = c.pos;
    let seal = Seal { hash: hash::xxh64(c.buf.get(..end_at).unwrap_or(&[]), head_seal), reserved: 0 };
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_END);
    c.bytes(pod_bytes(&seal));
    c.end_note(m);
    if c.overflow || c.pos != trailer_len(segs.len() + ghosts.len()) {
        return Err(Failure::plain("building the trailer (too large)"));
    }
    Ok(c.pos)
}

/// Find the deleted files (and memfds) open at fds above 2 (0-2 come from
/// the restarting environment), one entry per file. A file larger than
/// `limit` fails the checkpoint, naming it.
fn gather_ghosts(dents: &mut [u8], own_fds: &[Fd], ghosts: &mut [Ghost], limit: u64) -> Result<usize, Failure> {
    let fd_n = list_fds(dents)?;
    let mut n = 0;
    for name in procfs::dirents(&dents[..fd_n]) {
        let Some(v) = procfs::dec(name) else { continue };
        let fdn = v as Fd;
        if fdn <= 2 || own_fds.contains(&fdn) {
            continue;
        }
        let Ok(st) = sys::fstat(fdn) else { continue };
        if st.mode & sys::S_IFMT != sys::S_IFREG {
            continue;
        }
        let mut target = CPath::new();
        let mut link = fd_link(fdn).map_err(fail("listing fds"))?;
        if sys::readlink(&mut link, &mut target).is_err() {
            continue;
        }
        let memfd = target.as_bytes().starts_with(b"/memfd:");
        if (st.nlink != 0 && !memfd) || ghosts[..n].iter().any(|g| g.st.same_file(&st)) {
            continue;
        }
        if st.size > limit {
            return Err(Failure::file(Problem::GhostTooLarge { fd: fdn, size: st.size, limit }, strip_deleted(target.as_bytes())));
        }
        let Some(slot) = ghosts.get_mut(n) else {
            return Err(Failure::plain("too many deleted files open (rckpt saves at most 64)"));
        };
        *slot = Ghost { fd: fdn, st, flags: if memfd { ghost_flags::MEMFD } else { 0 }, ..Default::default() };
        n += 1;
    }
    Ok(n)
}

/// A shared mapping of a deleted file that is also a ghost maps the
/// recreated ghost on restart: nothing of it is stored. Other deleted
/// shared mappings (shared anonymous memory, SysV shm, a deleted file no fd
/// holds) keep their contents in the image.
fn link_ghost_mappings(segs: &mut [Seg], text: &[u8], ghosts: &[Ghost]) {
    for sg in segs.iter_mut() {
        if sg.kind != seg_kind::SHARED || sg.map.inode == 0 || !sg.map.name(text).ends_with(DELETED) {
            continue;
        }
        let m = &sg.map;
        let found = ghosts.iter().position(|g| g.st.ino == m.inode && g.st.dev_major == m.dev_major && g.st.dev_minor == m.dev_minor);
        if let Some(k) = found {
            sg.kind = seg_kind::SHARED_FILE;
            sg.has_data = false;
            sg.ghost = k as u32 + 1;
        }
    }
}

/// Every file mapped shared (and not a ghost) must still be the file its
/// path names, or no restart could map it again.
fn check_mapped_files(segs: &[Seg], text: &[u8]) -> Result<(), Failure> {
    for sg in segs.iter().filter(|sg| sg.kind == seg_kind::SHARED_FILE && sg.ghost == 0) {
        let name = sg.map.name(text);
        let m = &sg.map;
        let want = Stat { ino: m.inode, dev_major: m.dev_major, dev_minor: m.dev_minor, ..Default::default() };
        let same = CPath::from_bytes(name).and_then(|mut p| sys::stat(&mut p)).is_ok_and(|st| st.same_file(&want));
        if !same {
            return Err(Failure::file(Problem::StaleMapping(m.start as u64), name));
        }
    }
    Ok(())
}

/// An fd reopened by path on restart must still lead to its file.
fn check_fd_path(fd: Fd, st: &Stat, path: &[u8]) -> Result<(), Failure> {
    let same = CPath::from_bytes(path).and_then(|mut p| sys::stat(&mut p)).is_ok_and(|now| now.same_file(st));
    if same {
        Ok(())
    } else {
        Err(Failure::file(Problem::StaleFd(fd), path))
    }
}

/// Where the run table sits in the head (its file offsets are filled in
/// once the head's length is known).
struct Marks {
    runs: usize,
}

fn put_str_padded(c: &mut Cursor, b: &[u8], n: usize) {
    let k = b.len().min(n);
    c.bytes(&b[..k]);
    c.zeros(n - k);
}

#[allow(clippy::too_many_arguments)]
fn build_notes(
    c: &mut Cursor,
    req: &Request,
    segs: &[Seg],
    text: &[u8],
    vdso: Vdso,
    small: &mut [u8],
    dents: &mut [u8],
    own_fds: &[Fd],
    ghosts: &[Ghost],
    runs: &[RunDesc],
    old_xfsz: KSigaction,
) -> Result<Marks, Failure> {
    let class = Class::NATIVE;
    let w = class.word();
    let tls = arch::tls_save();
    // SAFETY: req.uc is the handler's ucontext (the crt's contract).
    let gregs = unsafe { arch::gregs_from_ucontext(req.uc, &tls) };
    // SAFETY: as above.
    let fp = unsafe { arch::fpstate_from_ucontext(req.uc) };
    // SAFETY: as above.
    let blocked = unsafe { arch::sigmask_from_ucontext(req.uc) };
    let pending = req.pending;
    let pid = req.pid;

    // NT_PRSTATUS
    let m = c.begin_note(NOTE_CORE, NT_PRSTATUS);
    c.u32(req.signal as u32);
    c.u32(0);
    c.u32(0);
    c.u16(req.signal as u16);
    c.align_from(m.desc, w);
    c.word(class, pending);
    c.word(class, blocked);
    c.u32(pid as u32);
    c.u32(req.ppid as u32);
    c.u32(0);
    c.u32(0);
    c.zeros(8 * w); // utime, stime, cutime, cstime
    for g in gregs.iter() {
        c.word(class, *g as u64);
    }
    c.u32(fp.is_some() as u32);
    c.align_from(m.desc, w);
    c.end_note(m);

    // NT_PRPSINFO
    let comm_n = sys::read_file(b"/proc/self/comm", small).unwrap_or(0);
    let mut comm = [0u8; 16];
    let cl = comm_n.saturating_sub(1).min(15);
    comm[..cl].copy_from_slice(&small[..cl]);
    let m = c.begin_note(NOTE_CORE, NT_PRPSINFO);
    c.bytes(&[b'R', b'R', 0, 0]);
    c.align_from(m.desc, w);
    c.word(class, 0);
    if arch::PRPSINFO_UID_BYTES == 2 {
        c.u16(0);
        c.u16(0);
    } else {
        c.u32(0);
        c.u32(0);
    }
    c.u32(pid as u32);
    c.u32(req.ppid as u32);
    c.u32(0);
    c.u32(0);
    c.bytes(&comm);
    let args_n = sys::read_file(b"/proc/self/cmdline", small).unwrap_or(0).min(79);
    for b in small[..args_n].iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
    put_str_padded(c, &small[..args_n], 80);
    c.align_from(m.desc, w);
    c.end_note(m);

    // NT_PRFPREG and NT_X86_XSTATE straight from the signal frame.
    let xcr0 = arch::xcr0();
    let mut xsave_len = 0;
    let mut xfeatures = 0;
    if let Some(fp) = fp {
        // SAFETY: the kernel wrote `fp.len` bytes of xsave state there.
        let area = unsafe { core::slice::from_raw_parts(fp.ptr, fp.len) };
        xsave_len = fp.len as u32;
        xfeatures = fp.xfeatures;
        let m = c.begin_note(NOTE_CORE, NT_PRFPREG);
        // SAFETY: the kernel wrote the legacy image at `fp.legacy`.
        c.bytes(unsafe { core::slice::from_raw_parts(fp.legacy, fp.legacy_len) });
        c.end_note(m);
        let m = c.begin_note(NOTE_LINUX, NT_X86_XSTATE);
        let at = c.pos;
        c.bytes(area);
        if let Some(dst) = c.buf.get_mut(at..at + area.len()) {
            c.pos = at + arch::xsave_for_core(dst, xcr0);
        }
        c.end_note(m);
    }

    // NT_AUXV
    let n = sys::read_file(b"/proc/self/auxv", small).map_err(fail("reading /proc/self/auxv"))?;
    let m = c.begin_note(NOTE_CORE, NT_AUXV);
    c.bytes(&small[..n]);
    c.end_note(m);

    // NT_FILE: file-backed mappings, for gdb.
    let is_file = |s: &&Seg| s.map.inode != 0 && (s.kind == seg_kind::FILE || s.kind == seg_kind::SHARED_FILE);
    let nfile = segs.iter().filter(is_file).count();
    let m = c.begin_note(NOTE_CORE, NT_FILE);
    c.word(class, nfile as u64);
    c.word(class, PAGE_SIZE);
    for s in segs.iter().filter(is_file) {
        c.word(class, s.map.start as u64);
        c.word(class, s.map.end as u64);
        c.word(class, s.map.offset / PAGE_SIZE);
    }
    for s in segs.iter().filter(is_file) {
        c.bytes(s.map.name(text));
        c.bytes(&[0]);
    }
    c.end_note(m);

    // NT_RCKPT_HEADER
    let stat_n = sys::read_file(b"/proc/self/stat", small).map_err(fail("reading /proc/self/stat"))?;
    let st = &small[..stat_n];
    let f = |k| procfs::stat_field(st, k).unwrap_or(0);
    let mm = MmLayout {
        start_code: f(26),
        end_code: f(27),
        start_stack: f(28),
        start_data: f(45),
        end_data: f(46),
        start_brk: f(47),
        brk: sys::brk(0) as u64,
        arg_start: f(48),
        arg_end: f(49),
        env_start: f(50),
        env_end: f(51),
    };
    let old_umask = sys::umask(0);
    sys::umask(old_umask);
    let fd_n = list_fds(dents)?;
    let h = ImageHeader {
        magic: IMAGE_MAGIC,
        version: FORMAT_VERSION,
        machine: arch::ELF_MACHINE as u32,
        time_sec: sys::now().0,
        pid: pid as u32,
        signal: req.signal as u32,
        xcr0,
        xfeatures,
        xsave_len,
        nseg: segs.len() as u32,
        nfd: 0, // patched once the fd note is written
        umask: old_umask,
        uc_addr: req.uc as usize as u64,
        tail_addr: req.tail_addr as u64,
        patch_addr: req.patch_addr as u64,
        tls,
        rseq_addr: req.rseq_addr as u64,
        rseq_len: req.rseq_len,
        rseq_sig: arch::RSEQ_SIG,
        mm,
        vdso_block: vdso.block as u64,
        vdso_block_len: (vdso.block_end - vdso.block) as u64,
        vdso_off: (vdso.vdso - vdso.block) as u64,
        vdso_len: (vdso.vdso_end - vdso.vdso) as u64,
        pending,
        blocked,
        generation: req.generation,
        reserved0: 0,
        comm,
        reserved: [0; 4],
    };
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_HEADER);
    let header_at = c.pos;
    c.bytes(pod_bytes(&h));
    c.end_note(m);

    // NT_RCKPT_SEGS
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_SEGS);
    for sg in segs {
        let d = SegDesc {
            vaddr: sg.map.start as u64,
            len: (sg.map.end - sg.map.start) as u64,
            stored: sg.stored,
            first_run: sg.first_run,
            nrun: sg.nrun,
            reserved: 0,
            prot: sg.prot,
            kind: sg.kind,
        };
        c.bytes(pod_bytes(&d));
    }
    c.end_note(m);

    // NT_RCKPT_RUNS (file offsets filled in once the head's length is known)
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_RUNS);
    let runs_at = c.pos;
    for r in runs {
        c.bytes(pod_bytes(r));
    }
    c.end_note(m);

    // NT_RCKPT_FDS
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_FDS);
    let mut written = 0u32;
    for name in procfs::dirents(&dents[..fd_n]) {
        let Some(v) = procfs::dec(name) else { continue };
        let fdn = v as Fd;
        if own_fds.contains(&fdn) {
            continue;
        }
        let mut link = CPath::from_bytes(b"/proc/self/fd/").map_err(fail("listing fds"))?;
        link.push(name).map_err(fail("listing fds"))?;
        let mut target = CPath::new();
        // The directory fd of the listing is closed by now: fstat skips it.
        let Ok(stat) = sys::fstat(fdn) else { continue };
        if sys::readlink(&mut link, &mut target).is_err() {
            continue;
        }
        let mut info = CPath::from_bytes(b"/proc/self/fdinfo/").map_err(fail("listing fds"))?;
        info.push(name).map_err(fail("listing fds"))?;
        let k = sys::read_file(info.as_bytes(), small).unwrap_or(0);
        let (pos, flags) = procfs::fdinfo(&small[..k]).unwrap_or((0, 0));
        let mut kind = match stat.mode & sys::S_IFMT {
            sys::S_IFREG => fd_kind::REG,
            sys::S_IFDIR => fd_kind::DIR,
            sys::S_IFCHR => fd_kind::CHR,
            _ => fd_kind::OTHER,
        };
        let mut ghost = NO_GHOST;
        let mut path = target.as_bytes();
        if fdn > 2 && kind == fd_kind::REG {
            if let Some(k) = ghosts.iter().position(|g| g.st.same_file(&stat)) {
                kind = fd_kind::GHOST;
                ghost = k as u32;
                path = strip_deleted(path);
            }
        }
        if fdn > 2 && matches!(kind, fd_kind::REG | fd_kind::DIR | fd_kind::CHR) {
            check_fd_path(fdn, &stat, path)?;
        }
        let d = FdDesc { fd: fdn, flags, pos, kind, path_len: path.len() as u32, ghost, reserved: 0 };
        c.bytes(pod_bytes(&d));
        c.bytes(path);
        c.align_from(m.desc, 8);
        written += 1;
    }
    c.end_note(m);
    c.patch_u32(header_at + core::mem::offset_of!(ImageHeader, nfd), written);

    // NT_RCKPT_SIGS
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_SIGS);
    for sig in 1..=64i32 {
        let mut ka = KSigaction::default();
        // SAFETY: reading a disposition changes nothing.
        let _ = unsafe { sys::sigaction(sig, None, Some(&mut ka)) };
        if sig == 25 {
            ka = old_xfsz;
        }
        let d = SigDesc { handler: ka.handler as u64, flags: ka.flags as u64, restorer: ka.restorer as u64, mask: ka.mask };
        c.bytes(pod_bytes(&d));
    }
    c.end_note(m);

    // NT_RCKPT_CWD
    let mut cwd = CPath::new();
    sys::getcwd(&mut cwd).map_err(fail("reading the working directory"))?;
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_CWD);
    c.bytes(cwd.as_bytes());
    c.end_note(m);

    // NT_RCKPT_MAPFILES
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_MAPFILES);
    for (i, sg) in segs.iter().enumerate().filter(|(_, sg)| sg.kind == seg_kind::SHARED_FILE) {
        let (path, ghost) = match sg.ghost {
            0 => (sg.map.name(text), NO_GHOST),
            k => (strip_deleted(sg.map.name(text)), k - 1),
        };
        let d = MapFileDesc { seg: i as u32, path_len: path.len() as u32, offset: sg.map.offset, ghost, reserved: 0 };
        c.bytes(pod_bytes(&d));
        c.bytes(path);
        c.align_from(m.desc, 8);
    }
    c.end_note(m);

    // NT_RCKPT_GHOSTS
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_GHOSTS);
    for g in ghosts {
        let mut link = fd_link(g.fd).map_err(fail("reading a deleted file's name"))?;
        let mut target = CPath::new();
        sys::readlink(&mut link, &mut target).map_err(fail("reading a deleted file's name"))?;
        let path = strip_deleted(target.as_bytes());
        let d = GhostDesc {
            size: g.st.size,
            stored: g.stored,
            first_run: g.first_run,
            nrun: g.nrun,
            flags: g.flags,
            path_len: path.len() as u32,
            ..Default::default()
        };
        c.bytes(pod_bytes(&d));
        c.bytes(path);
        c.align_from(m.desc, 8);
    }
    c.end_note(m);

    // NT_RCKPT_TIMERS
    let m = c.begin_note(NOTE_RCKPT, NT_RCKPT_TIMERS);
    for t in &req.timers {
        c.bytes(pod_bytes(t));
    }
    c.end_note(m);

    Ok(Marks { runs: runs_at })
}

/// Read the whole /proc/self/fd listing into `buf` (the directory fd is
/// closed again before any entry is looked at).
fn list_fds(buf: &mut [u8]) -> Result<usize, Failure> {
    let mut p = CPath::from_bytes(b"/proc/self/fd").map_err(fail("listing fds"))?;
    let fd = OwnedFd(sys::open(&mut p, sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC, 0).map_err(fail("listing fds"))?);
    let mut n = 0;
    loop {
        let k = sys::getdents64(fd.0, &mut buf[n..]).map_err(fail("listing fds"))?;
        if k == 0 {
            break;
        }
        n += k;
        if buf.len() - n < 512 {
            return Err(Failure::plain("listing fds (too many)"));
        }
    }
    Ok(n)
}
