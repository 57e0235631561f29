//! `rckpt-loader [--relocatable] [--ckpt FILE] [--check] [--ghost-limit SIZE]
//! [--cmd-fd N] IMAGE`: restore a checkpoint image into this process and
//! resume it (`--ghost-limit` sets the restarted program's
//! `-_condor_ghost_limit`; `--cmd-fd` keeps descriptor N open as the
//! restarted program's command stream).
//!
//! A static, libc-free executable linked at a fixed address
//! (`linker/loader-<arch>.ld`). Its `_start` switches to a stack inside its
//! own image, since the kernel's stack may sit where the image needs memory.
//! All working memory is static (.bss), so the whole loader is one range
//! that the restored program's `rckpt_restore_tail` unmaps.
//!
//! Exit status: 0 for `--check` on a good image, 1 when an image is refused
//! (with one line on stderr, before anything is restored), 2 for usage
//! errors. On success it does not return: the process becomes the program.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::AtomicU64;
use rckpt_rt_core::flags::{parse_size, MODE_OFF, MODE_ON, MODE_ONCE, WARN_KINDS};
use rckpt_rt_core::image;
use rckpt_rt_core::line::Line;
use rckpt_rt_core::restore::{self, Buffers, Options};
use rckpt_rt_core::sys;

const STACK_SIZE: usize = 1 << 20;
static mut STACK: [u8; STACK_SIZE] = [0; STACK_SIZE];
static mut HEAD: [u8; image::MAX_HEAD as usize] = [0; image::MAX_HEAD as usize];
static mut MAPS: [u8; 2 << 20] = [0; 2 << 20];
static mut IO: [u8; 1 << 20] = [0; 1 << 20];
static mut PLACED: [u64; 128] = [0; 128];
static mut PIECES: [restore::Piece; 32768] = [restore::Piece::EMPTY; 32768];
static mut SUMS: [AtomicU64; restore::MAX_SUMS] = [const { AtomicU64::new(0) }; restore::MAX_SUMS];
static mut HOLD: [usize; restore::MAX_SEGS] = [0; restore::MAX_SEGS];
/// "fd N": what messages call an image read from a descriptor.
static mut FD_NAME: [u8; 16] = [0; 16];
static mut HELPER_STACK: [u8; 64 << 10] = [0; 64 << 10];

rckpt_arch::loader_entry!(loader_main, STACK, STACK_SIZE);

extern "C" {
    /// Bounds of the loader's image, from the linker script.
    static __loader_start: u8;
    static __loader_end: u8;
}

const USAGE: &str =
    "usage: rckpt-loader [--relocatable] [--ckpt FILE] [--check] [--debug] [--warning KIND MODE] [--ghost-limit SIZE] [--cmd-fd N] (IMAGE | --fd N)";

fn usage(msg: &str) -> ! {
    Line::new().t("rckpt-loader: ").t(msg).emit();
    Line::new().t(USAGE).emit();
    sys::exit_group(2)
}

unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

/// # Safety
/// Called once by `_start` with the kernel's initial stack pointer.
unsafe extern "C" fn loader_main(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argv pointers.
    let argc = unsafe { *sp };
    // SAFETY: as above; argv[i] for i < argc are NUL-terminated strings.
    let arg = |i: usize| -> &'static [u8] { unsafe { cstr(*sp.add(1 + i) as *const u8) } };

    let mut opts = Options {
        image: b"",
        image_fd: None,
        ckpt: None,
        relocatable: false,
        debug: false,
        aggravate_bugs: false,
        warn: [MODE_ON; 5],
        ghost_limit: None,
        cmd_fd: None,
    };
    let mut check = false;
    let mut from_program = false;
    let mut image = None;
    let mut fd_name: Option<&'static [u8]> = None;
    let mut i = 1;
    while i < argc {
        let a = arg(i);
        let mut next = || {
            i += 1;
            if i >= argc {
                usage("missing argument");
            }
            arg(i)
        };
        match a {
            b"--relocatable" | b"-_condor_relocatable" => opts.relocatable = true,
            b"--ckpt" => opts.ckpt = Some(next()),
            b"--fd" => {
                let n = next();
                match rckpt_rt_core::procfs::dec(n) {
                    Some(v) if v <= i32::MAX as u64 => opts.image_fd = Some(v as i32),
                    _ => usage("--fd needs a descriptor number"),
                }
                // SAFETY: single-threaded; written once, here.
                let name = unsafe { &mut *addr_of_mut!(FD_NAME) };
                let k = n.len().min(12);
                name[..3].copy_from_slice(b"fd ");
                name[3..3 + k].copy_from_slice(&n[..k]);
                fd_name = Some(&name[..3 + k]);
            }
            b"--check" => check = true,
            // Internal: set by a relinked program's `-_condor_restart`.
            b"--from-program" => from_program = true,
            b"--debug" => opts.debug = true,
            b"--aggravate-bugs" => opts.aggravate_bugs = true,
            b"--ghost-limit" => {
                let Some(v) = parse_size(next()) else { usage("--ghost-limit needs a size in bytes, optionally with a K, M or G suffix") };
                opts.ghost_limit = Some(v);
            }
            b"--cmd-fd" => {
                let v = next();
                let Some(n) = rckpt_rt_core::procfs::dec(v).and_then(|n| i32::try_from(n).ok()) else {
                    usage("--cmd-fd needs a descriptor number")
                };
                if let Err(e) = sys::fcntl(n, sys::F_GETFD, 0) {
                    Line::new().t("rckpt-loader: --cmd-fd ").s(v).t(": ").e(e).emit();
                    sys::exit_group(2)
                }
                opts.cmd_fd = Some(n);
            }
            b"--warning" => {
                let kind = next();
                let mode = next();
                let Some(k) = WARN_KINDS.iter().position(|&x| x == kind) else { usage("unknown warning kind") };
                let m = match mode {
                    b"OFF" => MODE_OFF,
                    b"ON" => MODE_ON,
                    b"ONCE" => MODE_ONCE,
                    _ => usage("unknown warning mode"),
                };
                if k == 0 {
                    opts.warn = [m; 5];
                } else {
                    opts.warn[k] = m;
                }
            }
            b"--help" | b"-h" => {
                Line::new().t(USAGE).emit();
                sys::exit_group(0)
            }
            b"--" => {
                i += 1;
                if i < argc {
                    image = Some(arg(i));
                }
                i += 1;
                if i < argc {
                    usage("more than one image given");
                }
                break;
            }
            _ if a.first() == Some(&b'-') => usage("unknown option"),
            _ => {
                if image.is_some() {
                    usage("more than one image given");
                }
                image = Some(a)
            }
        }
        i += 1;
    }
    let image = match (image, fd_name) {
        (Some(_), Some(_)) => usage("give an image path or --fd N, not both"),
        (None, None) => usage("no image given"),
        (Some(p), None) | (None, Some(p)) => p,
    };
    opts.image = image;
    // SAFETY: envp follows argv's NULL on the initial stack.
    let envp = unsafe { sp.add(argc + 2) } as *const *const u8;
    // SAFETY: argv as the kernel laid it out.
    let argv = unsafe { sp.add(1) } as *const *const u8;
    if opts.image_fd.is_none() {
        hand_to_companion(image, argv, envp, from_program);
    }

    // Only the addresses of the linker-defined symbols are taken.
    let loader = { (addr_of!(__loader_start) as usize, addr_of!(__loader_end) as usize) };
    // SAFETY: the loader is single-threaded and these statics are used only
    // here, once.
    let bufs = unsafe {
        Buffers {
            head: &mut *addr_of_mut!(HEAD),
            maps: &mut *addr_of_mut!(MAPS),
            io: &mut *addr_of_mut!(IO),
            placed: &mut *addr_of_mut!(PLACED),
            hold: &mut *addr_of_mut!(HOLD),
            pieces: &mut *addr_of_mut!(PIECES),
            sums: &mut *addr_of_mut!(SUMS),
            helper_stack: &mut *addr_of_mut!(HELPER_STACK),
        }
    };
    let plan = match restore::prepare(&opts, bufs, loader) {
        Ok(p) => p,
        Err(e) => {
            let mut l = Line::new();
            l.t("rckpt-loader: ").s(image).t(": ");
            e.describe(&mut l);
            l.emit();
            sys::exit_group(1)
        }
    };
    if check {
        Line::new().t("rckpt-loader: ").s(image).t(": OK, ").u(plan.img.nseg() as u64).t(" segments verified").emit();
        sys::exit_group(0)
    }
    plan.commit()
}

/// An image of the other class this machine runs (a 32-bit image on
/// x86_64) goes to the loader built for it, found next to this one.
fn hand_to_companion(image: &[u8], argv: *const *const u8, envp: *const *const u8, from_program: bool) {
    if rckpt_arch::COMPANION_LOADERS.is_empty() {
        return;
    }
    let mut head = [0u8; 64];
    let Ok(mut p) = sys::CPath::from_bytes(image) else {
        return;
    };
    let Ok(fd) = sys::open(&mut p, sys::O_RDONLY | sys::O_CLOEXEC, 0) else {
        return;
    };
    let n = sys::read(fd, &mut head).unwrap_or(0);
    let _ = sys::close(fd);
    let is_companion = n >= 20 && head[..4] == *b"\x7fELF" && u16::from_le_bytes([head[18], head[19]]) == rckpt_arch::COMPANION_MACHINE;
    if !is_companion {
        return;
    }
    if from_program {
        // This loader is the copy a relinked program carries: there is no
        // installed companion next to it to hand over to.
        Line::new()
            .t("rckpt-loader: ")
            .s(image)
            .t(": image is for a 32-bit program; this program is ")
            .t(rckpt_arch::NAME)
            .t(": restart it with its own program or with rckpt-loader IMAGE")
            .emit();
        sys::exit_group(1);
    }
    let mut exe = sys::CPath::new();
    let Ok(mut me) = sys::CPath::from_bytes(b"/proc/self/exe") else {
        return;
    };
    if sys::readlink(&mut me, &mut exe).is_err() {
        return;
    }
    let dir_len = exe.as_bytes().iter().rposition(|&c| c == b'/').map_or(0, |k| k + 1);
    for rel in rckpt_arch::COMPANION_LOADERS {
        let mut cand = sys::CPath::new();
        if cand.push(&exe.as_bytes()[..dir_len]).and_then(|_| cand.push(rel)).is_err() {
            continue;
        }
        let Ok(fd) = sys::open(&mut cand, sys::O_PATH | sys::O_CLOEXEC, 0) else {
            continue;
        };
        // SAFETY: argv/envp are the kernel's NULL-terminated arrays.
        let e = unsafe { sys::fexecve(fd, argv, envp) };
        let _ = sys::close(fd);
        Line::new().t("rckpt-loader: cannot run the 32-bit loader: ").e(e).emit();
        sys::exit_group(1);
    }
    Line::new()
        .t("rckpt-loader: ")
        .s(image)
        .t(": a 32-bit image needs the i386 loader, which is not installed next to this one (build it with: cargo build --release --target i686-unknown-linux-gnu -p rckpt-loader)")
        .emit();
    sys::exit_group(1);
}

/// The compiler's memory intrinsics (there is no libc here).
///
/// # Safety
/// As `memcpy(3)`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { rckpt_arch::copy_bytes(dst, src, n) };
    dst
}

/// # Safety
/// As `memmove(3)`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize + n) {
        // SAFETY: forward copy is safe when dst is below src or disjoint.
        unsafe { rckpt_arch::copy_bytes(dst, src, n) };
    } else {
        let mut k = n;
        while k > 0 {
            k -= 1;
            // SAFETY: backward byte copy inside the caller's ranges.
            unsafe { core::ptr::write_volatile(dst.add(k), core::ptr::read_volatile(src.add(k))) };
        }
    }
    dst
}

/// # Safety
/// As `memset(3)`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, v: i32, n: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { rckpt_arch::fill_bytes(dst, v as u8, n) };
    dst
}

/// # Safety
/// As `memcmp(3)`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for k in 0..n {
        // SAFETY: inside the caller's ranges.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(k)), core::ptr::read_volatile(b.add(k))) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
/// As `bcmp(3)`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// As `strlen(3)`.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { cstr(s).len() }
}

/// Referenced from libcore's unwind tables (libcore is built for
/// panic=unwind); never called, since this binary aborts on panic.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    Line::new().t("rckpt-loader: internal error").emit();
    sys::exit_group(3)
}
