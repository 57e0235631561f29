//! The rckpt image format: an ELF core file (`ET_CORE`) written and read
//! in one sequential pass, so that it can go to or come from any
//! descriptor: a file, a pipe, a TCP connection.
//!
//! ```text
//! [Ehdr][Phdr: PT_NOTE head][Phdr: PT_NOTE trailer][Phdr: PT_LOAD x npiece]
//! [head notes ... seal][zeros to a page boundary]
//! [run 0][run 1]...                     stored pages only, back to back
//! [trailer notes: sums, end seal]
//! ```
//!
//! * Only pages that hold data are stored, in *runs* of contiguous pages
//!   (`NT_RCKPT_RUNS`), back to back after the head: no holes, so the file's
//!   apparent size is what it holds and a copy or transfer moves only data.
//!   Runs are page multiples, so every run stays page-aligned in the file.
//! * For gdb, each mapping is described by `PT_LOAD`s in address order: one
//!   per run (`p_filesz == p_memsz`, at the run's offset) and one per gap
//!   between runs (`p_filesz == 0`: pages never touched, zeros).
//! * The head's `PT_NOTE` holds the kernel's notes in the kernel's layouts
//!   (name "CORE": `NT_PRSTATUS`, `NT_PRPSINFO`, `NT_PRFPREG`, `NT_AUXV`,
//!   `NT_FILE`; name "LINUX": `NT_X86_XSTATE`) so gdb reads the image, then
//!   rckpt's own notes (name "RCKPT"), the last of which is the seal: XXH64
//!   of every byte before it. Nothing in the head depends on the data, so a
//!   writer can send it first.
//! * The trailer's `PT_NOTE` (its place and size are known from the head)
//!   holds `NT_RCKPT_SUMS`, a [`crate::hash::SegSum`] per segment then per
//!   ghost file, and `NT_RCKPT_END`, XXH64 of the trailer before it seeded
//!   with the head's seal: a reader checks every byte in the same pass.
//! * Ghost files (CRIU's name): files the process had open after deleting
//!   them (`tmpfile()`, memfds). No name leads to them any more, so their
//!   stored pages are runs too (after the segments'), described in
//!   `NT_RCKPT_GHOSTS`; a restart recreates each one (`O_TMPFILE` in its
//!   old directory, else a memfd) and reopens the fds and shared mappings
//!   that used it.
//!
//! All rckpt structures below have the same layout for 32- and 64-bit images
//! (fixed-width fields only); the kernel notes use the image's word size.

use static_assertions::const_assert_eq;

pub const IMAGE_MAGIC: [u8; 8] = *b"RCKPTIMG";
/// Bump on any incompatible change; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 3;
pub const PAGE_SIZE: u64 = 4096;

pub const NOTE_CORE: &[u8] = b"CORE";
pub const NOTE_LINUX: &[u8] = b"LINUX";
pub const NOTE_RCKPT: &[u8] = b"RCKPT";

pub const NT_PRSTATUS: u32 = 1;
pub const NT_PRFPREG: u32 = 2;
pub const NT_PRPSINFO: u32 = 3;
pub const NT_AUXV: u32 = 6;
pub const NT_X86_XSTATE: u32 = 0x202;
pub const NT_FILE: u32 = 0x4649_4c45;

pub const NT_RCKPT_HEADER: u32 = 0x5243_0001;
pub const NT_RCKPT_SEGS: u32 = 0x5243_0002;
pub const NT_RCKPT_FDS: u32 = 0x5243_0003;
pub const NT_RCKPT_SIGS: u32 = 0x5243_0004;
pub const NT_RCKPT_CWD: u32 = 0x5243_0005;
pub const NT_RCKPT_TIMERS: u32 = 0x5243_0006;
pub const NT_RCKPT_MAPFILES: u32 = 0x5243_0007;
pub const NT_RCKPT_GHOSTS: u32 = 0x5243_0008;
pub const NT_RCKPT_RUNS: u32 = 0x5243_0009;
pub const NT_RCKPT_SEAL: u32 = 0x5243_00ff;
/// Trailer notes.
pub const NT_RCKPT_SUMS: u32 = 0x5243_0101;
pub const NT_RCKPT_END: u32 = 0x5243_01ff;

/// The kernel's view of the address space layout, restored through
/// `PR_SET_MM_MAP` (`/proc/PID/stat` fields and `brk(0)`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// `NT_RCKPT_HEADER`: everything about the process that is not a segment,
/// a file or a signal disposition.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// `e_machine` of the process (EM_X86_64, EM_386).
    pub machine: u32,
    /// Seconds since the epoch when the checkpoint was taken.
    pub time_sec: u64,
    pub pid: u32,
    /// The signal that asked for the checkpoint.
    pub signal: u32,
    /// XCR0 of the checkpointing CPU and the xsave bytes the frame used.
    pub xcr0: u64,
    pub xfeatures: u64,
    pub xsave_len: u32,
    pub nseg: u32,
    pub nfd: u32,
    pub umask: u32,
    /// Address of the ucontext of the checkpoint handler's signal frame.
    pub uc_addr: u64,
    /// Address of `rckpt_restore_tail` in the image.
    pub tail_addr: u64,
    /// Address of the runtime's [`RestartPatch`] block in the image.
    pub patch_addr: u64,
    /// Thread-local storage state, per architecture (`rckpt_arch::Tls`):
    /// x86_64 FS and GS base; i386 the %gs TLS descriptor.
    pub tls: [u64; 2],
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub mm: MmLayout,
    /// The `[vvar*]`+`[vdso]` block: start, length, and the vdso inside it.
    pub vdso_block: u64,
    pub vdso_block_len: u64,
    pub vdso_off: u64,
    pub vdso_len: u64,
    /// Signals pending at the checkpoint (re-raised on restart).
    pub pending: u64,
    /// Signal mask of the interrupted code.
    pub blocked: u64,
    /// Restart count of the process (0 for a first run).
    pub generation: u32,
    pub reserved0: u32,
    pub comm: [u8; 16],
    pub reserved: [u64; 4],
}
const_assert_eq!(core::mem::size_of::<ImageHeader>(), 312);

/// Segment kinds (how the mapping was made; all are restored with content).
pub mod seg_kind {
    pub const ANON: u32 = 0;
    pub const FILE: u32 = 1;
    pub const SHARED: u32 = 2;
    pub const STACK: u32 = 3;
    pub const HEAP: u32 = 4;
    /// A copy of the vDSO, for debuggers only: a restore moves the current
    /// kernel's vDSO to this address instead.
    pub const VDSO: u32 = 5;
    /// A `MAP_SHARED` mapping of a file: no data stored (the file holds
    /// it); a restart maps the file again (`NT_RCKPT_MAPFILES`).
    pub const SHARED_FILE: u32 = 6;
    pub fn known(k: u32) -> bool {
        k <= SHARED_FILE
    }
    pub fn name(k: u32) -> &'static str {
        match k {
            VDSO => "vdso",
            ANON => "anon",
            FILE => "file",
            SHARED => "shared",
            STACK => "stack",
            HEAP => "heap",
            SHARED_FILE => "shfile",
            _ => "?",
        }
    }
}

/// `NT_RCKPT_SEGS`: one per mapping, in address order.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SegDesc {
    pub vaddr: u64,
    pub len: u64,
    /// Bytes stored (the total of its runs).
    pub stored: u64,
    /// Its runs: `nrun` entries of `NT_RCKPT_RUNS` from `first_run`.
    pub first_run: u32,
    pub nrun: u32,
    pub reserved: u64,
    /// PROT_* bits.
    pub prot: u32,
    pub kind: u32,
}
const_assert_eq!(core::mem::size_of::<SegDesc>(), 48);

/// `NT_RCKPT_RUNS`: one per run of stored pages, in file order (the
/// segments' runs in address order, then the ghost files'). Each run's
/// data starts where the previous one's ends, the first at the page
/// boundary after the head.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct RunDesc {
    /// The segment index, or `nseg` + the ghost file's index.
    pub owner: u32,
    pub reserved: u32,
    /// Bytes from the start of its segment (or ghost file), page aligned.
    pub offset: u64,
    /// Bytes, a page multiple.
    pub len: u64,
    pub file_off: u64,
}
const_assert_eq!(core::mem::size_of::<RunDesc>(), 32);

/// Descriptor kinds in `NT_RCKPT_FDS`.
pub mod fd_kind {
    /// Regular file: reopened by path at the saved offset.
    pub const REG: u32 = 1;
    /// Directory: reopened by path.
    pub const DIR: u32 = 2;
    /// Character device (/dev/null...): reopened by path.
    pub const CHR: u32 = 3;
    /// Pipe, socket, anonymous inode...: not restored.
    pub const OTHER: u32 = 4;
    pub fn known(k: u32) -> bool {
        (REG..=GHOST).contains(&k)
    }
    /// A deleted file (or a memfd): reopened from the recreated ghost
    /// `FdDesc::ghost` at the saved offset.
    pub const GHOST: u32 = 5;
    pub fn name(k: u32) -> &'static str {
        match k {
            REG => "file",
            DIR => "dir",
            CHR => "chardev",
            GHOST => "ghost",
            _ => "other",
        }
    }
}

/// `NT_RCKPT_FDS` entry header; `path_len` bytes of path follow, then zero
/// padding to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct FdDesc {
    pub fd: i32,
    /// `O_*` flags from /proc/self/fdinfo (including `O_CLOEXEC`).
    pub flags: u32,
    pub pos: u64,
    pub kind: u32,
    pub path_len: u32,
    /// For `fd_kind::GHOST`: index in `NT_RCKPT_GHOSTS`; else [`NO_GHOST`].
    pub ghost: u32,
    pub reserved: u32,
}
const_assert_eq!(core::mem::size_of::<FdDesc>(), 32);

/// `FdDesc::ghost` / `MapFileDesc::ghost` of a live file (found by path).
pub const NO_GHOST: u32 = u32::MAX;
/// At most this many ghost files per image (more fails the checkpoint).
pub const MAX_GHOSTS: usize = 64;

/// Bits of `GhostDesc::flags`.
pub mod ghost_flags {
    /// The original was a memfd (`/memfd:NAME`): recreated with
    /// `memfd_create(NAME)`.
    pub const MEMFD: u32 = 1;
    pub const ALL: u32 = MEMFD;
}

/// `NT_RCKPT_GHOSTS` entry header, one per distinct deleted file: the
/// original path (without " (deleted)") follows, `path_len` bytes, then
/// zero padding to 8 bytes (counted from the descriptor's start). Its
/// stored pages are runs like a segment's (the rest of the file reads as
/// zeros: holes stay holes), with a [`crate::hash::SegSum`] in the trailer.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct GhostDesc {
    /// The file's size.
    pub size: u64,
    /// Bytes stored (the total of its runs).
    pub stored: u64,
    pub first_run: u32,
    pub nrun: u32,
    pub reserved: u64,
    /// [`ghost_flags`].
    pub flags: u32,
    pub path_len: u32,
}
const_assert_eq!(core::mem::size_of::<GhostDesc>(), 40);

/// `NT_RCKPT_MAPFILES` entry header, one per `SHARED_FILE` segment:
/// `path_len` bytes of path follow, then zero padding to 8 bytes (counted
/// from the descriptor's start).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MapFileDesc {
    /// Index of the segment in `NT_RCKPT_SEGS`.
    pub seg: u32,
    pub path_len: u32,
    /// Offset in the file of the segment's first byte.
    pub offset: u64,
    /// Index in `NT_RCKPT_GHOSTS` of the deleted file mapped, or
    /// [`NO_GHOST`]: a live file, found by path.
    pub ghost: u32,
    pub reserved: u32,
}
const_assert_eq!(core::mem::size_of::<MapFileDesc>(), 24);

/// `NT_RCKPT_SIGS`: 64 of these, for signals 1..=64.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SigDesc {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}
const_assert_eq!(core::mem::size_of::<SigDesc>(), 32);

/// `NT_RCKPT_TIMERS`: `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF` (in
/// that order) at the checkpoint: time left and reload interval, in
/// microseconds; 0 left means disarmed. A restart re-arms them with the
/// time that was left (the time between checkpoint and restart does not
/// count). Optional: an image without it has no timers.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TimerDesc {
    pub value_us: u64,
    pub interval_us: u64,
}
const_assert_eq!(core::mem::size_of::<TimerDesc>(), 16);
/// Names of the three timers, in note order.
pub const TIMER_NAMES: [&str; 3] = ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"];

/// `NT_RCKPT_SEAL`, the last note.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Seal {
    /// XXH64 (seed [`SEAL_SEED`]) of the file from offset 0 up to this
    /// note's own header.
    pub hash: u64,
    pub reserved: u64,
}
pub const SEAL_SEED: u64 = 0x7263_6b70_745f_7631; // "rckpt_v1"

/// The runtime's block that the loader rewrites in the restored memory
/// before resuming it: what the restart command line said.
#[repr(C)]
pub struct RestartPatch {
    pub magic: [u8; 8],
    /// Absolute path future checkpoints go to (NUL-terminated).
    pub ckpt_path: [u8; 4096],
    pub relocatable: u32,
    /// Restarts so far.
    pub generation: u32,
    /// Debug levels and warning modes from the restart command line.
    pub debug: u32,
    pub warn: [u8; 8],
    pub reserved: u32,
    /// Largest deleted file a checkpoint saves (`-_condor_ghost_limit`).
    pub ghost_limit: u64,
    /// The command stream's descriptor (`rckpt-loader --cmd-fd`), or -1.
    pub cmd_fd: i32,
    pub pad: u32,
}
const_assert_eq!(core::mem::size_of::<RestartPatch>(), 4144);
pub const PATCH_MAGIC: [u8; 8] = *b"RCKPTPAT";

/// Read a plain-old-data struct from bytes (bounds checked, unaligned).
pub fn pod_read<T: Copy>(b: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(core::mem::size_of::<T>())?;
    if end > b.len() {
        return None;
    }
    // SAFETY: the range is in bounds; T is a repr(C) POD of integers.
    Some(unsafe { core::ptr::read_unaligned(b.as_ptr().add(off) as *const T) })
}

/// The bytes of a plain-old-data struct.
pub fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) POD of integers without padding.
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) }
}

pub fn page_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// `e_machine` names for messages.
pub fn machine_name(m: u32) -> &'static str {
    match m {
        3 => "i386",
        62 => "x86_64",
        40 => "arm",
        183 => "aarch64",
        243 => "riscv",
        8 => "mips",
        20 => "ppc",
        21 => "ppc64",
        22 => "s390",
        _ => "an unknown architecture",
    }
}
