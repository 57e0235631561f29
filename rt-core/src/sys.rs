//! Thin typed wrappers over the raw system calls rckpt's freestanding parts
//! use. This list is the audit surface of the signal-handler and loader code:
//! nothing else in rt-core enters the kernel.
//!
//! Every function returns `Result<_, Errno>`; a raw negative number never
//! leaks upward. Paths are [`CPath`]s, NUL-terminated by construction.

pub use syscalls::Errno;
use syscalls::{syscall0, syscall1, syscall2, syscall3, syscall4, syscall5, syscall6, Sysno};

pub type Result<T> = core::result::Result<T, Errno>;
pub type Fd = i32;

pub const AT_FDCWD: i32 = -100;
pub const PATH_MAX: usize = 4096;

pub use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, O_APPEND, O_CLOEXEC, O_CREAT,
    O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC, O_WRONLY, PROT_EXEC, PROT_READ, PROT_WRITE, SEEK_CUR,
    SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET,
};

/// A NUL-terminated path in a fixed buffer.
pub struct CPath {
    buf: heapless::Vec<u8, PATH_MAX>,
}

impl CPath {
    pub const fn new() -> Self {
        CPath { buf: heapless::Vec::new() }
    }
    /// Build from bytes (without NUL). Fails with ENAMETOOLONG.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut p = CPath::new();
        p.push(b)?;
        Ok(p)
    }
    /// Append bytes (which must not contain NUL).
    pub fn push(&mut self, b: &[u8]) -> Result<()> {
        if self.buf.len() + b.len() + 1 > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.buf.extend_from_slice(b).map_err(|_| Errno::ENAMETOOLONG)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn clear(&mut self) {
        self.buf.clear()
    }
    pub fn truncate(&mut self, n: usize) {
        self.buf.truncate(n)
    }
    /// Append `v` in decimal.
    pub fn push_dec(&mut self, v: u64) -> Result<()> {
        let mut d = [0u8; 20];
        self.push(crate::line::decimal(v, &mut d))
    }
    /// Pointer to a NUL-terminated copy, valid while `self` is not changed.
    fn c_ptr(&mut self) -> Result<usize> {
        self.buf.push(0).map_err(|_| Errno::ENAMETOOLONG)?;
        let p = self.buf.as_ptr() as usize;
        self.buf.pop();
        // The NUL stays in the spare capacity right after the bytes.
        Ok(p)
    }
}

impl Default for CPath {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for CPath {
    fn clone(&self) -> Self {
        CPath { buf: self.buf.clone() }
    }
}

// The SAFETY argument for every wrapper below: the kernel validates its
// arguments and reports bad addresses as EFAULT; pointer arguments come from
// Rust references or slices that outlive the call, and no wrapper hands the
// kernel memory it may keep past the call (except `mmap` family, whose
// callers carry the contract in their own `# Safety`).

/// `O_LARGEFILE` (x86): implied on 64-bit; a 32-bit process needs it for
/// files past 2 GiB (a sparse image easily is: its offsets follow the
/// address space).
pub const O_LARGEFILE: u32 = 0o100000;

/// `madvise(2)` advice: fault the range in, writable, now (Linux 5.14).
pub const MADV_POPULATE_WRITE: u32 = 23;

/// # Safety
/// Advice that discards or changes contents (`MADV_DONTNEED`, ...) needs
/// the caller to own the range; `MADV_POPULATE_WRITE` changes nothing.
pub unsafe fn madvise(addr: usize, len: usize, advice: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(Sysno::madvise, addr, len, advice as usize) }.map(drop)
}

/// `openat(AT_FDCWD, ...)`, always with `O_LARGEFILE`.
pub fn open(path: &mut CPath, flags: u32, mode: u32) -> Result<Fd> {
    let p = path.c_ptr()?;
    let flags = flags | O_LARGEFILE;
    // SAFETY: see the module note; `p` is NUL-terminated.
    unsafe { syscall4(Sysno::openat, AT_FDCWD as usize, p, flags as usize, mode as usize) }.map(|fd| fd as Fd)
}

pub fn close(fd: Fd) -> Result<()> {
    // SAFETY: see the module note.
    unsafe { syscall1(Sysno::close, fd as usize) }.map(drop)
}

pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::read, fd as usize, buf.as_mut_ptr() as usize, buf.len()) }
}

pub fn write(fd: Fd, buf: &[u8]) -> Result<usize> {
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::write, fd as usize, buf.as_ptr() as usize, buf.len()) }
}

/// Write all of `buf`, retrying short writes and EINTR.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pread64`; `off` is 64-bit on every architecture.
pub fn pread(fd: Fd, buf: &mut [u8], off: u64) -> Result<usize> {
    pread_raw(fd, buf.as_mut_ptr() as usize, buf.len(), off)
}

/// `pread64` into raw memory (the loader reads into freshly mapped segments).
pub fn pread_raw(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: see the module note; the kernel checks `addr..addr+len`.
    unsafe { rckpt_arch_pread(fd, addr, len, off) }
}

/// `pwrite64` from raw memory: the checkpoint writer hands the kernel the
/// process's own pages. An unreadable page ends the write early (EFAULT or a
/// short count), it does not fault the caller.
pub fn pwrite_raw(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: see the module note.
    unsafe { rckpt_arch_pwrite(fd, addr, len, off) }
}

/// `write` from raw memory (the writer streams the process's own pages to
/// a file, pipe or socket). An unreadable page ends the write early (EFAULT
/// or a short count), it does not fault the caller.
pub fn write_raw(fd: Fd, addr: usize, len: usize) -> Result<usize> {
    // SAFETY: see the module note; the kernel checks `addr..addr+len`.
    unsafe { syscall3(Sysno::write, fd as usize, addr, len) }
}

/// `read` into raw memory (the loader reads a streamed image into place).
pub fn read_raw(fd: Fd, addr: usize, len: usize) -> Result<usize> {
    // SAFETY: see the module note; the kernel checks `addr..addr+len`.
    unsafe { syscall3(Sysno::read, fd as usize, addr, len) }
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const SOCK_STREAM: u32 = 1;
pub const SOCK_CLOEXEC: u32 = 0o2000000;
const SOL_SOCKET: usize = 1;
const SO_RCVTIMEO: usize = 20;
const SO_SNDTIMEO: usize = 21;

/// `socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0)`.
pub fn socket_stream(domain: u16) -> Result<Fd> {
    // SAFETY: plain integer arguments.
    unsafe { syscall3(Sysno::socket, domain as usize, (SOCK_STREAM | SOCK_CLOEXEC) as usize, 0) }.map(|f| f as Fd)
}

/// `connect` to the socket address in `addr` (a `sockaddr_in` or
/// `sockaddr_in6`, already in network byte order).
pub fn connect(fd: Fd, addr: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads `addr.len()` bytes at `addr`.
    unsafe { syscall3(Sysno::connect, fd as usize, addr.as_ptr() as usize, addr.len()) }.map(|_| ())
}

/// Bound every send (and `connect`) and every receive on `fd` to `secs`
/// seconds: a blocked call then fails with EAGAIN/EINPROGRESS.
pub fn set_timeouts(fd: Fd, secs: usize) -> Result<()> {
    let tv = [secs, 0usize]; // struct timeval in the native word size
    for opt in [SO_RCVTIMEO, SO_SNDTIMEO] {
        // SAFETY: the kernel reads a struct timeval at `tv`.
        unsafe { syscall5(Sysno::setsockopt, fd as usize, SOL_SOCKET, opt, tv.as_ptr() as usize, core::mem::size_of_val(&tv)) }?;
    }
    Ok(())
}

/// Whether the byte at `addr` of this process can be read: one
/// `process_vm_readv` of it (a page past the end of a mapped file fails
/// with EFAULT instead of raising SIGBUS).
pub fn readable(addr: usize) -> bool {
    let mut b = 0u8;
    let local = [&mut b as *mut u8 as usize, 1usize];
    let remote = [addr, 1usize];
    // SAFETY: one byte into a local, from an address the kernel checks.
    let r = unsafe { syscall6(Sysno::process_vm_readv, getpid() as usize, local.as_ptr() as usize, 1, remote.as_ptr() as usize, 1, 0) };
    r == Ok(1)
}

pub fn pwrite_all(fd: Fd, buf: &[u8], mut off: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match pwrite_raw(fd, buf[done..].as_ptr() as usize, buf.len() - done, off) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_pointer_width = "64")]
unsafe fn rckpt_arch_pread(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract.
    unsafe { syscall4(Sysno::pread64, fd as usize, addr, len, off as usize) }
}
#[cfg(target_pointer_width = "64")]
unsafe fn rckpt_arch_pwrite(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract.
    unsafe { syscall4(Sysno::pwrite64, fd as usize, addr, len, off as usize) }
}
#[cfg(target_pointer_width = "32")]
unsafe fn rckpt_arch_pread(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract; i386 passes the offset as (lo, hi).
    unsafe { syscall5(Sysno::pread64, fd as usize, addr, len, off as usize, (off >> 32) as usize) }
}
#[cfg(target_pointer_width = "32")]
unsafe fn rckpt_arch_pwrite(fd: Fd, addr: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract; i386 passes the offset as (lo, hi).
    unsafe { syscall5(Sysno::pwrite64, fd as usize, addr, len, off as usize, (off >> 32) as usize) }
}

/// `lseek` with a 64-bit offset.
pub fn lseek(fd: Fd, off: u64, whence: u32) -> Result<u64> {
    #[cfg(target_pointer_width = "64")]
    {
        // SAFETY: see the module note.
        unsafe { syscall3(Sysno::lseek, fd as usize, off as usize, whence as usize) }.map(|v| v as u64)
    }
    #[cfg(target_pointer_width = "32")]
    {
        let mut result: u64 = 0;
        // SAFETY: see the module note; `result` is a local.
        unsafe {
            syscall5(Sysno::_llseek, fd as usize, (off >> 32) as usize, off as usize, &mut result as *mut u64 as usize, whence as usize)
        }
        .map(|_| result)
    }
}

pub fn fsync(fd: Fd) -> Result<()> {
    // SAFETY: see the module note.
    unsafe { syscall1(Sysno::fsync, fd as usize) }.map(drop)
}

pub fn ftruncate(fd: Fd, len: u64) -> Result<()> {
    #[cfg(target_pointer_width = "64")]
    // SAFETY: see the module note.
    let r = unsafe { syscall2(Sysno::ftruncate, fd as usize, len as usize) };
    #[cfg(target_pointer_width = "32")]
    // SAFETY: see the module note; i386 passes the length as (lo, hi).
    let r = unsafe { syscall3(Sysno::ftruncate64, fd as usize, len as usize, (len >> 32) as usize) };
    r.map(drop)
}

pub fn rename(from: &mut CPath, to: &mut CPath) -> Result<()> {
    let (f, t) = (from.c_ptr()?, to.c_ptr()?);
    // SAFETY: see the module note.
    unsafe { syscall4(Sysno::renameat, AT_FDCWD as usize, f, AT_FDCWD as usize, t) }.map(drop)
}

pub fn unlink(path: &mut CPath) -> Result<()> {
    let p = path.c_ptr()?;
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::unlinkat, AT_FDCWD as usize, p, 0) }.map(drop)
}

pub fn chdir(path: &mut CPath) -> Result<()> {
    let p = path.c_ptr()?;
    // SAFETY: see the module note.
    unsafe { syscall1(Sysno::chdir, p) }.map(drop)
}

pub fn fchdir(fd: Fd) -> Result<()> {
    // SAFETY: see the module note.
    unsafe { syscall1(Sysno::fchdir, fd as usize) }.map(drop)
}

/// The working directory, without the NUL.
pub fn getcwd(out: &mut CPath) -> Result<()> {
    let mut buf = [0u8; PATH_MAX];
    // SAFETY: see the module note.
    let n = unsafe { syscall2(Sysno::getcwd, buf.as_mut_ptr() as usize, buf.len()) }?;
    out.clear();
    out.push(&buf[..n.saturating_sub(1)])
}

/// `readlink` of `path` into `out`.
pub fn readlink(path: &mut CPath, out: &mut CPath) -> Result<()> {
    let p = path.c_ptr()?;
    let mut buf = [0u8; PATH_MAX];
    // SAFETY: see the module note.
    let n = unsafe { syscall4(Sysno::readlinkat, AT_FDCWD as usize, p, buf.as_mut_ptr() as usize, buf.len()) }?;
    out.clear();
    out.push(&buf[..n])
}

pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { syscall1(Sysno::umask, mask as usize) }.unwrap_or(0) as u32
}

pub fn getpid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { syscalls::syscall0(Sysno::getpid) }.unwrap_or(0) as i32
}

pub fn gettid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { syscalls::syscall0(Sysno::gettid) }.unwrap_or(0) as i32
}

pub fn getppid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { syscalls::syscall0(Sysno::getppid) }.unwrap_or(0) as i32
}

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> Result<()> {
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::tgkill, pid as usize, tid as usize, sig as usize) }.map(drop)
}

/// `mmap`.
///
/// # Safety
/// With `MAP_FIXED` the range is replaced whatever it held: the caller
/// guarantees nothing it still uses lives there.
pub unsafe fn mmap(addr: usize, len: usize, prot: u32, flags: u32, fd: Fd, off: u64) -> Result<usize> {
    #[cfg(target_pointer_width = "64")]
    // SAFETY: forwarded contract.
    let r = unsafe { syscall6(Sysno::mmap, addr, len, prot as usize, flags as usize, fd as usize, off as usize) };
    #[cfg(target_pointer_width = "32")]
    // SAFETY: forwarded contract; mmap2 takes the offset in pages.
    let r = unsafe { syscall6(Sysno::mmap2, addr, len, prot as usize, flags as usize, fd as usize, (off / 4096) as usize) };
    r
}

/// # Safety
/// Nothing the caller still uses may live in the range.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: forwarded contract.
    unsafe { syscall2(Sysno::munmap, addr, len) }.map(drop)
}

/// # Safety
/// Removing access from memory the caller still uses faults later.
pub unsafe fn mprotect(addr: usize, len: usize, prot: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(Sysno::mprotect, addr, len, prot as usize) }.map(drop)
}

pub const MREMAP_MAYMOVE: usize = 1;
pub const MREMAP_FIXED: usize = 2;

/// Move a mapping to `new` (`MREMAP_MAYMOVE | MREMAP_FIXED`).
///
/// # Safety
/// As for `mmap` with `MAP_FIXED` at `new`; pointers into the old range dangle.
pub unsafe fn mremap_fixed(old: usize, len: usize, new: usize) -> Result<usize> {
    // SAFETY: forwarded contract.
    unsafe { syscall5(Sysno::mremap, old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new) }
}

/// `brk(0)` returns the current break; `brk(x)` tries to move it.
pub fn brk(addr: usize) -> usize {
    // SAFETY: brk reports failure by returning the old break.
    unsafe { syscall1(Sysno::brk, addr) }.unwrap_or(0)
}

/// `ioctl` with a pointer argument.
///
/// # Safety
/// `arg` must point to the structure `req` expects.
pub unsafe fn ioctl(fd: Fd, req: usize, arg: usize) -> Result<usize> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(Sysno::ioctl, fd as usize, req, arg) }
}

/// `prctl` with up to four arguments.
///
/// # Safety
/// Pointer arguments must match what `option` expects.
pub unsafe fn prctl(option: u32, a2: usize, a3: usize, a4: usize, a5: usize) -> Result<usize> {
    // SAFETY: forwarded contract.
    unsafe { syscall5(Sysno::prctl, option as usize, a2, a3, a4, a5) }
}

/// Kernel sigaction, as `rt_sigaction` takes it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct KSigaction {
    pub handler: usize,
    pub flags: usize,
    pub restorer: usize,
    pub mask: u64,
}

pub const SA_SIGINFO: usize = 4;
pub const SA_RESTART: usize = 0x1000_0000;
pub const SA_RESTORER: usize = 0x0400_0000;
pub const SA_ONSTACK: usize = 0x0800_0000;
pub const SIG_DFL: usize = 0;
pub const SIG_IGN: usize = 1;
pub const NSIG: usize = 64;

/// `rt_sigaction(sig, new, old)`.
///
/// # Safety
/// A handler address must be code that can run as a signal handler.
pub unsafe fn sigaction(sig: i32, new: Option<&KSigaction>, old: Option<&mut KSigaction>) -> Result<()> {
    let n = new.map_or(0, |p| p as *const KSigaction as usize);
    let o = old.map_or(0, |p| p as *mut KSigaction as usize);
    // SAFETY: forwarded contract; 8 = sizeof(kernel sigset).
    unsafe { syscall4(Sysno::rt_sigaction, sig as usize, n, o, 8) }.map(drop)
}

pub const SIG_BLOCK: usize = 0;
pub const SIG_UNBLOCK: usize = 1;
pub const SIG_SETMASK: usize = 2;

/// `rt_sigprocmask(how, set)`, returning the old mask.
pub fn sigprocmask(how: usize, set: Option<u64>) -> Result<u64> {
    let mut old: u64 = 0;
    let s = set.unwrap_or(0);
    let sp = if set.is_some() { &s as *const u64 as usize } else { 0 };
    // SAFETY: see the module note.
    unsafe { syscall4(Sysno::rt_sigprocmask, how, sp, &mut old as *mut u64 as usize, 8) }?;
    Ok(old)
}

pub fn sigpending() -> Result<u64> {
    let mut set: u64 = 0;
    // SAFETY: see the module note.
    unsafe { syscall2(Sysno::rt_sigpending, &mut set as *mut u64 as usize, 8) }?;
    Ok(set)
}

/// Bit for signal `sig` in a kernel sigset.
pub const fn sigbit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

pub fn getdents64(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::getdents64, fd as usize, buf.as_mut_ptr() as usize, buf.len()) }
}

/// The few `struct stat` fields rckpt uses, read through `statx`, which has
/// one layout on every architecture.
#[derive(Clone, Copy, Default)]
pub struct Stat {
    pub mode: u32,
    pub nlink: u32,
    pub size: u64,
    pub ino: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
}

impl Stat {
    /// Whether both name the same file (device and inode).
    pub fn same_file(&self, o: &Stat) -> bool {
        self.ino == o.ino && self.dev_major == o.dev_major && self.dev_minor == o.dev_minor
    }
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFSOCK: u32 = 0o140000;

/// `statx(dirfd, path, flags, STATX_BASIC_STATS)`, decoded.
fn statx(dirfd: usize, path: usize, flags: usize) -> Result<Stat> {
    let mut sx = [0u8; 256];
    const STATX_BASIC: usize = 0x7ff;
    // SAFETY: see the module note; statx writes at most 256 bytes.
    unsafe { syscall5(Sysno::statx, dirfd, path, flags, STATX_BASIC, sx.as_mut_ptr() as usize) }?;
    let u32_at = |o: usize| u32::from_le_bytes([sx[o], sx[o + 1], sx[o + 2], sx[o + 3]]);
    let u64_at = |o: usize| (u32_at(o) as u64) | ((u32_at(o + 4) as u64) << 32);
    Ok(Stat {
        mode: (u32_at(28) & 0xffff),
        nlink: u32_at(16),
        ino: u64_at(32),
        size: u64_at(40),
        dev_major: u32_at(136),
        dev_minor: u32_at(140),
    })
}

pub fn fstat(fd: Fd) -> Result<Stat> {
    let empty = [0u8; 1];
    const AT_EMPTY_PATH: usize = 0x1000;
    statx(fd as usize, empty.as_ptr() as usize, AT_EMPTY_PATH)
}

/// `stat(path)`, following symbolic links.
pub fn stat(path: &mut CPath) -> Result<Stat> {
    let p = path.c_ptr()?;
    statx(AT_FDCWD as usize, p, 0)
}

pub const F_DUPFD: u32 = 0;
pub const F_GETFD: u32 = 1;
pub const F_SETFD: u32 = 2;
pub const F_DUPFD_CLOEXEC: u32 = 1030;

pub fn fcntl(fd: Fd, cmd: u32, arg: usize) -> Result<usize> {
    // SAFETY: see the module note; the commands used take integer args.
    unsafe { syscall3(Sysno::fcntl, fd as usize, cmd as usize, arg) }
}

pub fn dup3(old: Fd, new: Fd, flags: u32) -> Result<Fd> {
    // SAFETY: see the module note.
    unsafe { syscall3(Sysno::dup3, old as usize, new as usize, flags as usize) }.map(|f| f as Fd)
}

pub fn memfd_create(name: &[u8], flags: u32) -> Result<Fd> {
    let mut p = CPath::from_bytes(name)?;
    let ptr = p.c_ptr()?;
    // SAFETY: see the module note.
    unsafe { syscall2(Sysno::memfd_create, ptr, flags as usize) }.map(|f| f as Fd)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of C strings.
pub unsafe fn fexecve(fd: Fd, argv: *const *const u8, envp: *const *const u8) -> Errno {
    let empty = [0u8; 1];
    const AT_EMPTY_PATH: usize = 0x1000;
    // SAFETY: forwarded contract.
    match unsafe { syscall5(Sysno::execveat, fd as usize, empty.as_ptr() as usize, argv as usize, envp as usize, AT_EMPTY_PATH) } {
        Ok(_) => Errno::EINVAL,
        Err(e) => e,
    }
}

/// `rseq(area, len, flags, sig)`.
///
/// # Safety
/// `area` must be the thread's rseq area, valid for the thread's lifetime.
pub unsafe fn rseq(area: usize, len: u32, flags: u32, sig: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    unsafe { syscall4(Sysno::rseq, area, len as usize, flags as usize, sig as usize) }.map(drop)
}

/// Seconds and nanoseconds since the epoch (CLOCK_REALTIME).
pub fn now() -> (u64, u32) {
    let mut ts = [0usize; 2];
    // SAFETY: see the module note.
    let _ = unsafe { syscall2(Sysno::clock_gettime, 0, ts.as_mut_ptr() as usize) };
    (ts[0] as u64, ts[1] as u32)
}

/// Monotonic nanoseconds, for debug timing.
pub fn monotonic_ns() -> u64 {
    let mut ts = [0usize; 2];
    // SAFETY: see the module note.
    let _ = unsafe { syscall2(Sysno::clock_gettime, 1, ts.as_mut_ptr() as usize) };
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group does not return.
    let _ = unsafe { syscall1(Sysno::exit_group, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

/// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
pub const ITIMERS: [usize; 3] = [0, 1, 2];

/// `getitimer(which)`: (time left, reload interval) in microseconds.
pub fn getitimer(which: usize) -> Result<(u64, u64)> {
    // struct itimerval: { it_interval: timeval, it_value: timeval }, longs.
    let mut v = [0usize; 4];
    // SAFETY: see the module note; `v` is a struct itimerval of this ABI.
    unsafe { syscall2(Sysno::getitimer, which, v.as_mut_ptr() as usize) }?;
    let us = |sec: usize, usec: usize| sec as u64 * 1_000_000 + usec as u64;
    Ok((us(v[2], v[3]), us(v[0], v[1])))
}

/// `setitimer(which, ...)` from microseconds (value 0 disarms).
pub fn setitimer(which: usize, value_us: u64, interval_us: u64) -> Result<()> {
    let tv = |us: u64| [(us / 1_000_000) as usize, (us % 1_000_000) as usize];
    let (i, v) = (tv(interval_us), tv(value_us));
    let it = [i[0], i[1], v[0], v[1]];
    // SAFETY: see the module note; `it` is a struct itimerval of this ABI.
    unsafe { syscall3(Sysno::setitimer, which, it.as_ptr() as usize, 0) }.map(drop)
}

/// `sched_yield`.
pub fn yield_cpu() {
    // SAFETY: no arguments.
    let _ = unsafe { syscall0(Sysno::sched_yield) };
}

/// Sleep 50 ms, used while waiting for a debugger.
pub fn pause_briefly() {
    let ts = [0usize, 50_000_000];
    // SAFETY: see the module note.
    let _ = unsafe { syscall2(Sysno::nanosleep, ts.as_ptr() as usize, 0) };
}

/// A copy of the calling (single-threaded) process that sends its parent
/// `exit_signal` instead of SIGCHLD when it ends (0: no signal). A child
/// whose exit signal is not SIGCHLD is a "clone child": the program's own
/// `wait()`/`waitpid()` never see it; it is reaped with [`wait_clone`].
/// (If the parent has exec'd meanwhile, the kernel sends SIGCHLD instead.)
/// Returns 0 in the child.
pub fn fork_with_exit_signal(exit_signal: i32) -> Result<i32> {
    // SAFETY: clone without CLONE_VM and without a new stack is fork: the
    // child continues here on its own copy of this stack. The low byte of
    // the flags is the exit signal.
    unsafe { syscall5(Sysno::clone, (exit_signal & 0xff) as usize, 0, 0, 0, 0) }.map(|p| p as i32)
}

/// `si_code` values of a child's exit notification (`CLD_EXITED`,
/// `CLD_KILLED`, `CLD_DUMPED`, ...) are positive; a signal sent by
/// `kill` (`SI_USER`, 0), `sigqueue` or `tgkill` (negative) is not, and
/// another process cannot forge a positive one (`rt_sigqueueinfo` refuses).
pub const CLD_EXITED: i32 = 1;

/// The head of a `siginfo_t` (128 bytes) as the kernel writes it: three
/// ints, then the union, aligned as a pointer or a long, so at offset 16
/// on x86_64 and 12 on i386 (`__ARCH_SI_PREAMBLE_SIZE`); for a child's
/// exit notification it begins with `si_pid`, `si_uid`, `si_status`.
#[repr(C)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    /// Aligns `pid` as the union that holds it.
    _union_align: [usize; 0],
    pub pid: i32,
    pub uid: u32,
    pub status: i32,
}

static_assertions::const_assert_eq!(core::mem::offset_of!(SigInfo, code), 8);
static_assertions::const_assert_eq!(core::mem::offset_of!(SigInfo, pid), if cfg!(target_pointer_width = "64") { 16 } else { 12 });
static_assertions::const_assert!(core::mem::size_of::<SigInfo>() <= 128);

/// Wait for a child made by [`fork_with_exit_signal`]; returns its wait
/// status.
pub fn wait_clone(pid: i32) -> Result<i32> {
    const WALL: usize = 0x4000_0000;
    let mut status: i32 = 0;
    loop {
        // SAFETY: see the module note; `status` is a local.
        match unsafe { syscall4(Sysno::wait4, pid as usize, &mut status as *mut i32 as usize, WALL, 0) } {
            Err(Errno::EINTR) => continue,
            r => return r.map(|_| status),
        }
    }
}

/// End the calling task only (`exit`, not `exit_group`).
pub fn exit_task(code: i32) -> ! {
    // SAFETY: exit never returns and touches no user memory.
    let _ = unsafe { syscall1(Sysno::exit, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

/// Wait until the kernel clears `*word` (a `CLONE_CHILD_CLEARTID` word: the
/// helper task that owns it has exited).
pub fn wait_cleared(word: &core::sync::atomic::AtomicU32) {
    const FUTEX_WAIT: usize = 0; // shared: the kernel's exit-time wake is not private
    loop {
        let v = word.load(core::sync::atomic::Ordering::Acquire);
        if v == 0 {
            return;
        }
        // SAFETY: waits on a word of ours while it still holds `v`; EAGAIN
        // and EINTR just mean look again.
        let _ = unsafe { syscall4(Sysno::futex, word.as_ptr() as usize, FUTEX_WAIT, v as usize, 0) };
    }
}

/// `clone` flags of a thread that shares everything (no TLS of its own),
/// with its id word cleared at exit.
pub const CLONE_HELPER: usize = 0x100 /* VM */ | 0x200 /* FS */ | 0x400 /* FILES */ | 0x800 /* SIGHAND */
    | 0x10000 /* THREAD */ | 0x40000 /* SYSVSEM */ | 0x200000 /* CHILD_CLEARTID */;

/// One entry of the restore tail's operation list (`rckpt_arch::OP_WORDS`
/// words): a system call number and its six arguments. The tail runs them
/// after the loader is unmapped; these builders keep their numbers here,
/// with the other calls.
pub type Op = [usize; 7];

pub fn op_munmap(addr: usize, len: usize) -> Op {
    [Sysno::munmap as usize, addr, len, 0, 0, 0, 0]
}

pub fn op_mmap_anon(addr: usize, len: usize, prot: u32, flags: u32) -> Op {
    #[cfg(target_pointer_width = "64")]
    let nr = Sysno::mmap as usize;
    #[cfg(target_pointer_width = "32")]
    let nr = Sysno::mmap2 as usize;
    [nr, addr, len, prot as usize, (flags | MAP_ANONYMOUS | MAP_FIXED) as usize, usize::MAX, 0]
}

/// Move the mapping `[from, from+len)` to `to` (replacing what is there).
pub fn op_mremap(from: usize, len: usize, to: usize) -> Op {
    [Sysno::mremap as usize, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0]
}

pub fn op_mprotect(addr: usize, len: usize, prot: u32) -> Op {
    [Sysno::mprotect as usize, addr, len, prot as usize, 0, 0, 0]
}

pub fn op_close(fd: Fd) -> Op {
    [Sysno::close as usize, fd as usize, 0, 0, 0, 0, 0]
}

pub fn op_rseq(area: usize, len: u32, sig: u32) -> Op {
    [Sysno::rseq as usize, area, len as usize, 0, sig as usize, 0, 0]
}

/// Read a whole small file (procfs) into `buf`; returns the length.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> Result<usize> {
    let mut p = CPath::from_bytes(path)?;
    let fd = open(&mut p, O_RDONLY | O_CLOEXEC, 0)?;
    let mut n = 0;
    let r = loop {
        if n == buf.len() {
            break Err(Errno::E2BIG);
        }
        match read(fd, &mut buf[n..]) {
            Ok(0) => break Ok(n),
            Ok(k) => n += k,
            Err(Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = close(fd);
    r
}
