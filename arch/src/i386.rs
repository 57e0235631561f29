//! i386 (ILP32): signal-frame layout, x87/SSE/AVX state, TLS through
//! `set_thread_area` and the %gs selector, the restore trampoline and the
//! loader entry. System calls use `int 0x80`: it needs no vDSO, so it works
//! at every step of a restore, wherever the vDSO is at that moment.
//!
//! References: `arch/x86/include/uapi/asm/sigcontext.h` (sigcontext_32,
//! _fpstate_32), `arch/x86/include/asm/user_32.h` (user_regs_struct, the
//! NT_PRSTATUS order), `arch/x86/kernel/signal_32.c` (rt_sigreturn reads the
//! frame at `sp - 4`; the frame is pretcode, sig, pinfo, puc, siginfo, uc).

pub use crate::x86_common::*;
use crate::x86_common::{fpstate_from_fxsave, rd};
use core::arch::{asm, naked_asm};

pub const NAME: &str = "i386";
/// `EM_386`.
pub const ELF_MACHINE: u16 = 3;
/// `ELFCLASS32`.
pub const ELF_CLASS: u8 = 1;
/// `__kernel_uid_t` is 16 bits in i386's `elf_prpsinfo`.
pub const PRPSINFO_UID_BYTES: usize = 2;
/// Words in `elf_gregset_t`.
pub const NGREG: usize = 17;
/// Fixed address the loader is linked at (see `linker/loader-i386.ld`):
/// between non-PIE programs (0x08048000 and their heap) and PIE ones
/// (0x56..), below the mmap area (0xf7..) and the stack.
pub const LOADER_BASE: usize = 0x2000_0000;
/// Top of the user address space of a 32-bit process on a 64-bit kernel.
pub const USER_MAX: usize = 0xffff_e000;
/// No other class to hand images to.
pub const COMPANION_LOADERS: &[&[u8]] = &[];
pub const COMPANION_MACHINE: u16 = 0;

pub type GRegs = [usize; NGREG];
pub const GREG_PC: usize = 12;
pub const GREG_SP: usize = 15;
pub const GREG_NAMES: [&str; NGREG] =
    ["ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs", "orig_eax", "eip", "cs", "eflags", "esp", "ss"];

// struct ucontext: uc_flags, uc_link, stack_t (12 bytes), sigcontext_32 (88).
const UC_MCONTEXT: usize = 20;
const UC_SIGMASK: usize = UC_MCONTEXT + 88;
/// Offset of the ucontext inside `struct rt_sigframe` (pretcode, sig, pinfo,
/// puc, 128-byte siginfo).
const FRAME_UC: usize = 16 + 128;
// Offsets inside struct sigcontext_32.
const SC_GS: usize = 0;
const SC_FS: usize = 4;
const SC_ES: usize = 8;
const SC_DS: usize = 12;
const SC_DI: usize = 16;
const SC_SI: usize = 20;
const SC_BP: usize = 24;
const SC_SP: usize = 28;
const SC_BX: usize = 32;
const SC_DX: usize = 36;
const SC_CX: usize = 40;
const SC_AX: usize = 44;
const SC_IP: usize = 56;
const SC_CS: usize = 60;
const SC_FLAGS: usize = 64;
const SC_SS: usize = 72;
const SC_FPSTATE: usize = 76;

/// `struct _fpstate_32` starts with the 112-byte fnsave image (its last
/// word holds `status` and `magic`); the fxsave/xsave image follows.
const FNSAVE_SIZE: usize = 112;
/// `NT_PRFPREG` on i386 is `user_i387_struct`, the 108-byte fnsave image.
pub const PRFPREG_SIZE: usize = 108;

const SYS_MUNMAP: usize = 91;
const SYS_RT_SIGRETURN: usize = 173;
const SYS_SET_THREAD_AREA: usize = 243;
const SYS_GET_THREAD_AREA: usize = 244;

/// The interrupted registers in `NT_PRSTATUS` (user_regs_struct) order.
///
/// # Safety
/// `uc` must point to the `ucontext` the kernel passed to an `SA_SIGINFO`
/// handler of this process.
pub unsafe fn gregs_from_ucontext(uc: *const u8, _tls: &Tls) -> GRegs {
    let sc = unsafe { uc.add(UC_MCONTEXT) };
    // SAFETY (all reads): offsets are inside struct sigcontext_32.
    let g = |off: usize| -> usize { (unsafe { rd::<u32>(sc, off) }) as usize };
    let s = |off: usize| -> usize { (unsafe { rd::<u16>(sc, off) }) as usize };
    [
        g(SC_BX),
        g(SC_CX),
        g(SC_DX),
        g(SC_SI),
        g(SC_DI),
        g(SC_BP),
        g(SC_AX),
        s(SC_DS),
        s(SC_ES),
        s(SC_FS),
        s(SC_GS),
        usize::MAX,
        g(SC_IP),
        s(SC_CS),
        g(SC_FLAGS),
        g(SC_SP),
        s(SC_SS),
    ]
}

/// The FPU/SSE/AVX state saved in the frame.
///
/// # Safety
/// As for [`gregs_from_ucontext`].
pub unsafe fn fpstate_from_ucontext(uc: *const u8) -> Option<FpState> {
    // SAFETY: the fpstate pointer field is inside struct sigcontext_32.
    let p = unsafe { rd::<u32>(uc.add(UC_MCONTEXT), SC_FPSTATE) } as usize as *const u8;
    if p.is_null() {
        return None;
    }
    // SAFETY: `magic` is the u16 at offset 110 of _fpstate_32.
    let magic: u16 = unsafe { rd(p, 110) };
    if magic == 0xffff {
        // No FXSR: only the fnsave image exists.
        return Some(FpState { ptr: p, len: 0, xfeatures: 1, legacy: p, legacy_len: PRFPREG_SIZE });
    }
    // SAFETY: with FXSR the fxsave image follows the fnsave image.
    let fx = unsafe { p.add(FNSAVE_SIZE) };
    // SAFETY: the kernel wrote the fxsave image (and any xsave area) at
    // `fx`; NT_PRFPREG is the fnsave image before it.
    Some(unsafe { fpstate_from_fxsave(fx, p, PRFPREG_SIZE) })
}

/// # Safety
/// As for [`gregs_from_ucontext`].
pub unsafe fn sigmask_from_ucontext(uc: *const u8) -> u64 {
    // SAFETY: uc_sigmask is inside struct ucontext.
    unsafe { rd(uc, UC_SIGMASK) }
}

/// The stack pointer `rt_sigreturn` must see for the frame whose ucontext
/// is at `uc_addr`: the kernel reads the frame at `sp - 4`.
pub fn sigreturn_sp(uc_addr: usize) -> usize {
    uc_addr - FRAME_UC + 4
}

/// The TLS descriptor %gs selects, as `struct user_desc`:
/// `[entry_number | base << 32, limit | flags << 32]`.
pub type Tls = [u64; 2];

fn gs_selector() -> u32 {
    let gs: u32;
    // SAFETY: reading a segment register.
    unsafe { asm!("mov {0:e}, gs", out(reg) gs, options(nomem, nostack, preserves_flags)) };
    gs & 0xffff
}

unsafe fn syscall1(nr: usize, a: usize) -> isize {
    let r: isize;
    // SAFETY: the caller passes a valid system call and argument.
    unsafe {
        asm!(
            "int 0x80",          // syscall nr(ebx)
            inlateout("eax") nr as isize => r,
            in("ebx") a,
            options(nostack)
        )
    };
    r
}

pub fn tls_save() -> Tls {
    let mut desc = [0u32; 4];
    desc[0] = gs_selector() >> 3;
    if desc[0] == 0 {
        return [0, 0];
    }
    // SAFETY: get_thread_area fills the user_desc at the given address.
    let r = unsafe { syscall1(SYS_GET_THREAD_AREA, desc.as_mut_ptr() as usize) };
    if r < 0 {
        return [0, 0];
    }
    [desc[0] as u64 | (desc[1] as u64) << 32, desc[2] as u64 | (desc[3] as u64) << 32]
}

/// # Safety
/// The TLS block the descriptor points to must be restored.
pub unsafe fn tls_restore(t: &Tls) -> Result<(), isize> {
    if t[0] == 0 && t[1] == 0 {
        return Ok(());
    }
    let mut desc = [t[0] as u32, (t[0] >> 32) as u32, t[1] as u32, (t[1] >> 32) as u32];
    // SAFETY: set_thread_area reads the user_desc; the entry number is the
    // one the restored %gs selector (from the signal frame) refers to.
    let r = unsafe { syscall1(SYS_SET_THREAD_AREA, desc.as_mut_ptr() as usize) };
    if r < 0 {
        Err(r)
    } else {
        Ok(())
    }
}

/// Start a helper task that shares this address space: `clone(flags,
/// stack_top - 20, 0, 0, ctid)`; the child calls `f(arg)`, which must never
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
        "push ebx",
        "push esi",
        "push edi",
        "mov ebx, [esp + 16]",   // flags
        "mov ecx, [esp + 20]",   // stack_top
        "mov eax, [esp + 24]",   // f
        "mov edx, [esp + 28]",   // arg
        "mov [ecx - 20], eax",   // child stack: f, then arg at top - 16
        "mov [ecx - 16], edx",
        "sub ecx, 20",
        "xor edx, edx",          // clone(flags, newsp, 0, 0, ctid)
        "xor esi, esi",
        "mov edi, [esp + 32]",
        "mov eax, {clone}",
        "int 0x80",
        "test eax, eax",
        "jnz 2f",
        "pop eax",               // child: f; arg at [esp], esp 16-aligned
        "xor ebp, ebp",
        "call eax",
        "ud2",
        "2:",
        "pop edi",
        "pop esi",
        "pop ebx",
        "ret",                   // parent: the child's id or -errno
        clone = const 120,
    )
}

/// The thread pointer glibc's `__rseq_offset` is relative to: %gs's base.
pub fn thread_pointer() -> usize {
    (tls_save()[0] >> 32) as usize
}

pub const OP_WORDS: usize = 7;
pub const OP_END: usize = usize::MAX;

/// The restore tail (see the x86_64 version): `esp` walks the operation
/// list, so all six argument registers are free for the calls.
///
/// # Safety
/// Only the loader enters it, through [`jump_to_tail`].
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rckpt_restore_tail() -> ! {
    naked_asm!(
        "2:",
        "mov eax, [esp]",        // system call number
        "cmp eax, -1",           // OP_END?
        "je 3f",
        "mov ebx, [esp + 4]",    // arguments 1-6
        "mov ecx, [esp + 8]",
        "mov edx, [esp + 12]",
        "mov esi, [esp + 16]",
        "mov edi, [esp + 20]",
        "mov ebp, [esp + 24]",
        "int 0x80",
        "cmp eax, -4095",        // -4095..-1 is an error
        "jae 4f",
        "add esp, 28",           // next entry
        "jmp 2b",
        "3:",
        "mov edx, [esp + 4]",    // the frame's sp
        "mov ebx, [esp + 8]",    // the list's page
        "mov ecx, [esp + 12]",   // and its length (0: keep it)
        "test ecx, ecx",
        "jz 5f",
        "mov eax, {munmap}",     // munmap(page, len); int 0x80 keeps edx
        "int 0x80",
        "5:",
        "mov esp, edx",          // rt_sigreturn reads the frame at esp - 4
        "mov eax, {sigreturn}",
        "int 0x80",
        "4:",
        "ud2",
        munmap = const SYS_MUNMAP,
        sigreturn = const SYS_RT_SIGRETURN,
    )
}

/// # Safety
/// As the x86_64 version.
pub unsafe fn jump_to_tail(tail: usize, ops: usize) -> ! {
    // SAFETY: per the caller's contract; control never comes back.
    unsafe {
        asm!(
            "mov esp, {ops}",
            "jmp {tail}",
            tail = in(reg) tail,
            ops = in(reg) ops,
            options(noreturn)
        )
    }
}

/// `sa_restorer` for the runtime's handlers.
///
/// # Safety
/// Only the kernel "calls" this, as the return address of a signal frame.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rckpt_sigreturn_restorer() -> ! {
    naked_asm!(
        "mov eax, {sigreturn}",
        "int 0x80",
        "ud2",
        sigreturn = const SYS_RT_SIGRETURN,
    )
}

/// # Safety
/// As `memcpy(3)`.
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!(
            "xchg esi, {src}",   // LLVM reserves esi: borrow it for the copy
            "rep movsb",         // copy ecx bytes from [esi] to [edi]
            "xchg esi, {src}",   // and give it back
            src = inout(reg) src => _,
            inout("ecx") n => _,
            inout("edi") dst => _,
            options(nostack, preserves_flags)
        )
    }
}

/// # Safety
/// As `memset(3)`.
pub unsafe fn fill_bytes(dst: *mut u8, v: u8, n: usize) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!(
            "rep stosb",         // store al into ecx bytes at [edi]
            inout("ecx") n => _,
            inout("edi") dst => _,
            in("al") v,
            options(nostack, preserves_flags)
        )
    }
}

/// The loader's `_start` (see the x86_64 version).
#[macro_export]
macro_rules! loader_entry {
    ($main:path, $stack:path, $stack_size:expr) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "mov eax, esp",                    // initial sp: argc, argv[], envp[], auxv[]
                "lea esp, [{stack} + {size}]",     // the loader's own stack (absolute: non-PIE)
                "and esp, -16",
                "sub esp, 12",                     // keep 16-byte alignment at the call
                "push eax",                        // cdecl argument
                "xor ebp, ebp",
                "call {main}",
                "ud2",
                stack = sym $stack,
                size = const $stack_size,
                main = sym $main,
            )
        }
    };
}
