//! Architecture-specific pieces of rckpt, one file per architecture with the
//! same function set: register capture from a signal frame, the xsave area,
//! the TLS base, the restore trampoline and the loader entry point.
//!
//! What both x86 flavours share (xsave, CPUID, rseq constants) is in
//! `x86_common.rs`, re-exported by each. Generic code only ever calls
//! `rckpt_arch::...`; nothing else in the project is conditional on the
//! target architecture but the system-call wrappers' argument splitting.
//!
//! Everything here may run inside a signal handler or in the loader after it
//! has unmapped the rest of the address space: no allocation, no formatting,
//! no panics, no libc.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

mod x86_common;

#[cfg_attr(target_arch = "x86_64", path = "x86_64.rs")]
#[cfg_attr(target_arch = "x86", path = "i386.rs")]
mod imp;

pub use imp::*;
