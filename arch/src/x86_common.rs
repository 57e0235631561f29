//! What x86_64 and i386 share: the xsave area (CPUID leaf 0xD, XCR0),
//! the fxsave layout, and glibc's rseq constants for x86. Both `x86_64.rs`
//! and `i386.rs` re-export all of it, so the arch API stays one function set.

use core::arch::asm;
#[cfg(target_arch = "x86")]
use core::arch::x86::__cpuid_count;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::__cpuid_count;

/// The signature glibc registers rseq with (`RSEQ_SIG` for x86).
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// The length glibc 2.35+ registers its rseq area with.
pub const RSEQ_LEN: u32 = 32;

/// `FP_XSTATE_MAGIC1`: the fxsave area's software bytes describe an xsave area.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Offset of the software-reserved bytes inside the 512-byte fxsave area.
pub const FX_SW_OFFSET: usize = 464;
/// Size of the legacy fxsave area (`NT_PRFPREG` on x86_64).
pub const FXSAVE_SIZE: usize = 512;

/// The FPU/vector state the kernel saved in a signal frame.
#[derive(Clone, Copy)]
pub struct FpState {
    /// Start of the (standard-format) xsave area; its first 512 bytes are the
    /// fxsave area.
    pub ptr: *const u8,
    /// Bytes of the xsave area (512 when only fxsave state is present).
    pub len: usize,
    /// State-component bitmap the frame was saved with (XCR0 subset).
    pub xfeatures: u64,
    /// The `NT_PRFPREG` bytes: the fxsave area on x86_64, the fnsave image
    /// on i386.
    pub legacy: *const u8,
    pub legacy_len: usize,
}

#[inline(always)]
pub(crate) unsafe fn rd<T: Copy>(base: *const u8, off: usize) -> T {
    // SAFETY: callers pass a pointer to a kernel-built ucontext or fpstate
    // and offsets inside it; reads are unaligned-safe.
    unsafe { core::ptr::read_unaligned(base.add(off) as *const T) }
}

/// The state in an fxsave area `fx` the kernel wrote into a signal frame:
/// the whole xsave area when its software bytes say there is one, else the
/// 512-byte fxsave area; `legacy` is what `NT_PRFPREG` holds.
///
/// # Safety
/// `fx` must point to the fxsave area of a kernel-built signal frame (at
/// least 512 bytes, followed by the xsave area the software bytes describe).
pub(crate) unsafe fn fpstate_from_fxsave(fx: *const u8, legacy: *const u8, legacy_len: usize) -> FpState {
    // SAFETY: the software bytes lie inside the 512-byte fxsave area.
    let magic: u32 = unsafe { rd(fx, FX_SW_OFFSET) };
    if magic != FP_XSTATE_MAGIC1 {
        return FpState { ptr: fx, len: FXSAVE_SIZE, xfeatures: 0b11, legacy, legacy_len };
    }
    // SAFETY: struct _fpx_sw_bytes: magic1, extended_size, xfeatures, xstate_size.
    let xfeatures: u64 = unsafe { rd(fx, FX_SW_OFFSET + 8) };
    let xstate_size: u32 = unsafe { rd(fx, FX_SW_OFFSET + 16) };
    FpState { ptr: fx, len: xstate_size as usize, xfeatures, legacy, legacy_len }
}

fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = __cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// XCR0, the state components the OS enabled (x87|SSE when there is no xsave).
pub fn xcr0() -> u64 {
    const OSXSAVE: u32 = 1 << 27;
    if cpuid(1, 0)[2] & OSXSAVE == 0 {
        return 0b11;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv with ecx=0 is valid once CPUID says OSXSAVE.
    unsafe {
        asm!(
            "xgetbv",             // edx:eax = XCR[ecx]
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        )
    };
    ((hi as u64) << 32) | lo as u64
}

/// Bytes of the standard-format xsave area for the components in XCR0
/// (CPUID leaf 0xD, sub-leaf 0, EBX). Never a constant: it grows with CPUs.
pub fn xsave_size() -> u32 {
    if xcr0() == 0b11 {
        return FXSAVE_SIZE as u32;
    }
    cpuid(0xd, 0)[1]
}

/// Human names of the xsave components, by bit, for error messages.
pub fn xfeature_name(bit: u32) -> &'static str {
    match bit {
        0 => "x87",
        1 => "SSE",
        2 => "AVX",
        3 => "MPX-BNDREGS",
        4 => "MPX-BNDCSR",
        5 => "AVX-512-opmask",
        6 => "AVX-512-ZMM_Hi256",
        7 => "AVX-512-Hi16_ZMM",
        9 => "PKRU",
        11 => "CET-U",
        17 => "AMX-TILECFG",
        18 => "AMX-TILEDATA",
        19 => "APX",
        _ => "unknown",
    }
}

/// Rewrite the software bytes of a copied xsave area the way core files and
/// ptrace present them: the first word of `sw_reserved` is XCR0 (gdb reads it
/// at offset 464 to learn which components are present, and assumes Intel's
/// standard offsets for them).
///
/// Components this CPU stores at another offset (AMD Zen keeps PKRU at 2432,
/// not 2688) are left out of that word, so that gdb 13, which only knows
/// Intel's layout, still reads the x87/SSE/AVX state instead of rejecting the
/// whole note; the area is cut after the last component shown. Returns the
/// length to keep. The restore path never reads this copy.
pub fn xsave_for_core(area: &mut [u8], xcr0: u64) -> usize {
    const STANDARD: [(u32, u32); 7] = [(2, 576), (3, 960), (4, 1024), (5, 1088), (6, 1152), (7, 1664), (9, 2688)];
    let mut shown = xcr0 & 0b11;
    let mut len = FXSAVE_SIZE + 64; // legacy area + xsave header
    for (bit, off) in STANDARD {
        let [size, offset, ..] = cpuid(0xd, bit);
        if xcr0 & (1 << bit) != 0 && offset == off {
            shown |= 1 << bit;
            len = len.max((offset + size) as usize);
        }
    }
    let len = len.min(area.len());
    if area.len() >= FX_SW_OFFSET + 8 {
        area[FX_SW_OFFSET..FX_SW_OFFSET + 8].copy_from_slice(&shown.to_le_bytes());
    }
    len
}
