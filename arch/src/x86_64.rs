//! x86_64 (LP64): signal-frame layout, xsave, FS/GS base, the restore
//! trampoline and the loader entry.
//!
//! References: `arch/x86/include/uapi/asm/sigcontext.h`,
//! `arch/x86/include/asm/user_64.h` (user_regs_struct, the NT_PRSTATUS
//! register order), `arch/x86/kernel/signal_64.c` (rt_sigreturn finds its
//! frame at `sp - 8`, so the caller points `sp` at the ucontext).

pub use crate::x86_common::*;
use crate::x86_common::{fpstate_from_fxsave, rd};
use core::arch::{asm, naked_asm};

pub const NAME: &str = "x86_64";
/// `EM_X86_64`.
pub const ELF_MACHINE: u16 = 62;
/// `ELFCLASS64`.
pub const ELF_CLASS: u8 = 2;
/// Size of the uid/gid fields of `elf_prpsinfo` (`__kernel_uid_t`).
pub const PRPSINFO_UID_BYTES: usize = 4;
/// Words in `elf_gregset_t` (`sizeof(struct user_regs_struct) / 8`).
pub const NGREG: usize = 27;
/// Fixed address the loader is linked at (see `linker/loader-x86_64.ld`): far
/// below both the PIE base (0x55..) and the mmap base (0x7f..), far above
/// non-PIE programs and their heaps.
pub const LOADER_BASE: usize = 0x1000_0000_0000;
/// Lowest and highest user addresses an image may use on this architecture.
pub const USER_MAX: usize = 0x7fff_ffff_f000;
/// The loader for the other class this architecture runs (32-bit images),
/// looked up next to this loader's own executable, in this order.
pub const COMPANION_LOADERS: &[&[u8]] = &[b"rckpt-loader-i386", b"../i686-unknown-linux-gnu/release/rckpt-loader"];
/// `e_machine` of images the companion restores.
pub const COMPANION_MACHINE: u16 = 3;

pub type GRegs = [usize; NGREG];

/// Index of the instruction pointer and stack pointer in [`GRegs`].
pub const GREG_PC: usize = 16;
pub const GREG_SP: usize = 19;
/// Names of the [`GRegs`] words, for `rckpt info`.
pub const GREG_NAMES: [&str; NGREG] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs",
    "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

// Offsets inside `struct ucontext` (uc_flags, uc_link, stack_t uc_stack,
// struct sigcontext uc_mcontext, sigset_t uc_sigmask).
const UC_MCONTEXT: usize = 40;
const UC_SIGMASK: usize = UC_MCONTEXT + 256;
// Offsets inside `struct sigcontext_64`.
const SC_R8: usize = 0;
const SC_DI: usize = 64;
const SC_SI: usize = 72;
const SC_BP: usize = 80;
const SC_BX: usize = 88;
const SC_DX: usize = 96;
const SC_AX: usize = 104;
const SC_CX: usize = 112;
const SC_SP: usize = 120;
const SC_IP: usize = 128;
const SC_FLAGS: usize = 136;
const SC_CS: usize = 144;
const SC_SS: usize = 150;
const SC_FPSTATE: usize = 184;

const SYS_MUNMAP: usize = 11;
const SYS_RT_SIGRETURN: usize = 15;
const SYS_ARCH_PRCTL: usize = 158;
const ARCH_SET_GS: usize = 0x1001;
const ARCH_SET_FS: usize = 0x1002;
const ARCH_GET_FS: usize = 0x1003;
const ARCH_GET_GS: usize = 0x1004;

/// The interrupted registers in `NT_PRSTATUS` (user_regs_struct) order.
///
/// # Safety
/// `uc` must point to the `ucontext` the kernel passed to an `SA_SIGINFO`
/// handler of this process.
pub unsafe fn gregs_from_ucontext(uc: *const u8, tls: &Tls) -> GRegs {
    let (fs_base, gs_base) = (tls[0] as usize, tls[1] as usize);
    let sc = unsafe { uc.add(UC_MCONTEXT) };
    // SAFETY (all reads below): offsets are inside struct sigcontext_64.
    let r = |i: usize| -> usize { unsafe { rd::<usize>(sc, SC_R8 + 8 * i) } };
    let g = |off: usize| -> usize { unsafe { rd::<usize>(sc, off) } };
    let cs = unsafe { rd::<u16>(sc, SC_CS) } as usize;
    let ss = unsafe { rd::<u16>(sc, SC_SS) } as usize;
    [
        r(7),
        r(6),
        r(5),
        r(4),
        g(SC_BP),
        g(SC_BX),
        r(3),
        r(2),
        r(1),
        r(0),
        g(SC_AX),
        g(SC_CX),
        g(SC_DX),
        g(SC_SI),
        g(SC_DI),
        usize::MAX,
        g(SC_IP),
        cs,
        g(SC_FLAGS),
        g(SC_SP),
        if ss == 0 { 0x2b } else { ss },
        fs_base,
        gs_base,
        0,
        0,
        0,
        0,
    ]
}

/// The FPU/SSE/AVX state saved in the frame.
///
/// # Safety
/// As for [`gregs_from_ucontext`].
pub unsafe fn fpstate_from_ucontext(uc: *const u8) -> Option<FpState> {
    // SAFETY: the fpstate pointer field is inside struct sigcontext_64.
    let p: *const u8 = unsafe { rd(uc.add(UC_MCONTEXT), SC_FPSTATE) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the kernel wrote the fxsave area (and any xsave area) at `p`;
    // on x86_64 NT_PRFPREG is that fxsave area.
    Some(unsafe { fpstate_from_fxsave(p, p, FXSAVE_SIZE) })
}

/// The signal mask the interrupted code ran with (restored by sigreturn).
///
/// # Safety
/// As for [`gregs_from_ucontext`].
pub unsafe fn sigmask_from_ucontext(uc: *const u8) -> u64 {
    // SAFETY: uc_sigmask is inside struct ucontext.
    unsafe { rd(uc, UC_SIGMASK) }
}

/// The stack pointer `rt_sigreturn` must see to restore the frame whose
/// ucontext is at `uc_addr` (the kernel reads the frame at `sp - 8`).
pub fn sigreturn_sp(uc_addr: usize) -> usize {
    uc_addr
}

unsafe fn arch_prctl(code: usize, arg: usize) -> isize {
    let ret: isize;
    // SAFETY: arch_prctl only touches FS/GS base or writes the word at `arg`
    // (GET codes), which the caller provides.
    unsafe {
        asm!(
            "syscall",            // arch_prctl(code, arg)
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") code,
            in("rsi") arg,
            lateout("rcx") _,     // syscall clobbers rcx (return rip) and r11 (rflags)
            lateout("r11") _,
            options(nostack)
        )
    };
    ret
}

/// The thread's TLS state as the image stores it: FS and GS base.
pub type Tls = [u64; 2];

/// Save the calling thread's TLS state.
pub fn tls_save() -> Tls {
    let (fs, gs) = tls_base();
    [fs as u64, gs as u64]
}

/// Restore TLS state saved by [`tls_save`]. Returns the negative errno.
///
/// # Safety
/// As for [`set_tls_base`].
pub unsafe fn tls_restore(t: &Tls) -> Result<(), isize> {
    // SAFETY: forwarded contract.
    unsafe { set_tls_base(t[0] as usize, t[1] as usize) }
}

/// The thread's TLS bases (FS, GS).
fn tls_base() -> (usize, usize) {
    let (mut fs, mut gs) = (0usize, 0usize);
    // SAFETY: GET codes write one word to the address given, a local here.
    unsafe {
        arch_prctl(ARCH_GET_FS, &mut fs as *mut usize as usize);
        arch_prctl(ARCH_GET_GS, &mut gs as *mut usize as usize);
    }
    (fs, gs)
}

/// Set the thread's TLS bases. Returns the negative errno on failure.
///
/// # Safety
/// Code that uses TLS (the program's libc) must not run again until the
/// bases point to valid TLS blocks.
unsafe fn set_tls_base(fs: usize, gs: usize) -> Result<(), isize> {
    // SAFETY: per the caller's contract.
    let r = unsafe { arch_prctl(ARCH_SET_FS, fs) };
    if r < 0 {
        return Err(r);
    }
    if gs != 0 {
        // SAFETY: as above.
        let r = unsafe { arch_prctl(ARCH_SET_GS, gs) };
        if r < 0 {
            return Err(r);
        }
    }
    Ok(())
}

/// Words per entry of the restore tail's operation list: the system call
/// number and six arguments.
pub const OP_WORDS: usize = 7;
/// Marks the end of the list: `[OP_END, sigreturn sp, page, page length]`.
pub const OP_END: usize = usize::MAX;

/// The last step of a restore, linked into every relinked program (so it is
/// part of the restored image). It runs a flat list of system calls the
/// loader prepared (first: unmap the loader; then whatever could not be
/// restored while the loader occupied its addresses), unmaps the page that
/// holds the list (unless that length is 0: the tail itself was copied
/// there), and `rt_sigreturn`s into the checkpoint handler's signal frame,
/// which restores every register, the full xsave state, the signal mask and
/// the alternate stack.
///
/// Entered by [`jump_to_tail`] with `rsp` pointing at the list. Uses no
/// stack: `rsp` walks the list. A failing call traps (`ud2`): by then the
/// loader is gone and there is no one to report to.
///
/// # Safety
/// Only the loader enters it, through [`jump_to_tail`].
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rckpt_restore_tail() -> ! {
    naked_asm!(
        "2:",
        "mov rax, [rsp]",        // system call number
        "cmp rax, -1",           // OP_END?
        "je 3f",
        "mov rdi, [rsp + 8]",    // arguments 1-6
        "mov rsi, [rsp + 16]",
        "mov rdx, [rsp + 24]",
        "mov r10, [rsp + 32]",
        "mov r8, [rsp + 40]",
        "mov r9, [rsp + 48]",
        "syscall",
        "cmp rax, -4095",        // -4095..-1 is an error
        "jae 4f",
        "add rsp, 56",           // next entry
        "jmp 2b",
        "3:",
        "mov r12, [rsp + 8]",    // the frame's sp
        "mov rdi, [rsp + 16]",   // the list's page
        "mov rsi, [rsp + 24]",   // and its length (0: keep it)
        "test rsi, rsi",
        "jz 5f",
        "mov eax, {munmap}",     // munmap(page, len): the list is gone now
        "syscall",
        "5:",
        "mov rsp, r12",          // rt_sigreturn reads the frame at rsp - 8
        "mov eax, {sigreturn}",
        "syscall",
        "4:",
        "ud2",
        munmap = const SYS_MUNMAP,
        sigreturn = const SYS_RT_SIGRETURN,
    )
}

/// Enter [`rckpt_restore_tail`] (at `tail`, in the restored image or copied)
/// with its operation list at `ops`.
///
/// # Safety
/// `tail` must hold the tail's code and `ops` a complete list whose first
/// entry unmaps the loader; the image must be restored apart from what the
/// list does.
pub unsafe fn jump_to_tail(tail: usize, ops: usize) -> ! {
    // SAFETY: per the caller's contract; control never comes back.
    unsafe {
        asm!(
            "mov rsp, {ops}",    // the tail walks the list with rsp
            "jmp {tail}",
            tail = in(reg) tail,
            ops = in(reg) ops,
            options(noreturn)
        )
    }
}

/// Define the loader's `_start`: switch from the kernel's stack (which the
/// loader later unmaps, as it may collide with the image) to a stack inside
/// the loader's own image, then call `$main(initial_sp)`.
#[macro_export]
macro_rules! loader_entry {
    ($main:path, $stack:path, $stack_size:expr) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "mov rdi, rsp",                     // arg: argc, argv[], envp[], auxv[]
                "lea rsp, [rip + {stack} + {size}]", // top of the loader's own stack
                "and rsp, -16",                     // SysV alignment before the call
                "xor ebp, ebp",                     // end of the frame chain
                "call {main}",                      // never returns
                "ud2",
                stack = sym $stack,
                size = const $stack_size,
                main = sym $main,
            )
        }
    };
}

/// The `sa_restorer` for the runtime's own handlers: `rt_sigreturn`. x86_64
/// has no vDSO trampoline, so every `SA_SIGINFO` handler needs one.
///
/// # Safety
/// Only the kernel "calls" this, as the return address of a signal frame.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rckpt_sigreturn_restorer() -> ! {
    naked_asm!(
        "mov eax, {sigreturn}", // rt_sigreturn(): the frame is at rsp - 8
        "syscall",
        "ud2",
        sigreturn = const SYS_RT_SIGRETURN,
    )
}

/// Start a helper task that shares this address space: `clone(flags,
/// stack_top - 16, 0, ctid)`; the child calls `f(arg)`, which must never
/// return (it ends with the `exit` system call). Returns the child's id, or
/// a negative errno. Used by the loader to read an image with two CPUs.
///
/// # Safety
/// `stack_top` must be the 16-aligned top of memory that nothing else uses
/// while the child runs; `flags` must include `CLONE_VM` (the child runs
/// `f` on that stack in this address space) and no `CLONE_SETTLS` etc.
#[unsafe(naked)]
pub unsafe extern "C" fn spawn_helper(
    flags: usize,
    stack_top: usize,
    f: unsafe extern "C" fn(usize) -> !,
    arg: usize,
    ctid: *mut u32,
) -> isize {
    naked_asm!(
        "mov [rsi - 16], rdx",   // the child pops f and arg from its stack
        "mov [rsi - 8], rcx",
        "sub rsi, 16",
        "mov eax, {clone}",      // clone(flags, newsp, 0, ctid, 0)
        "xor edx, edx",
        "mov r10, r8",
        "xor r8d, r8d",
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "pop rax",               // child: f
        "pop rdi",               // arg; rsp is stack_top again (16-aligned)
        "xor ebp, ebp",
        "call rax",
        "ud2",
        "2:",
        "ret",                   // parent: the child's id or -errno
        clone = const 56,
    )
}

/// The thread pointer glibc's `__rseq_offset` is relative to.
pub fn thread_pointer() -> usize {
    tls_base().0
}

/// `memcpy` for the libc-free loader (`rep movsb`; fast on every CPU with ERMS).
///
/// # Safety
/// As `memcpy(3)`: valid, non-overlapping ranges.
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!(
            "rep movsb",           // copy rcx bytes from [rsi] to [rdi]
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        )
    }
}

/// `memset` for the loader (`rep stosb`).
///
/// # Safety
/// As `memset(3)`.
pub unsafe fn fill_bytes(dst: *mut u8, v: u8, n: usize) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!(
            "rep stosb",           // store al into rcx bytes at [rdi]
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") v,
            options(nostack, preserves_flags)
        )
    }
}
