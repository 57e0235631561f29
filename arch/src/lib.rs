//! Architecture-specific pieces of rckpt, one file per architecture with the
//! same function set: register capture from a signal frame, the xsave area,
//! the TLS base, the restore trampoline and the loader entry point.
//!
//! Generic code only ever calls `rckpt_arch::...`; nothing else in the project
//! is conditional on the target architecture.
//!
//! Everything here may run inside a signal handler or in the loader after it
//! has unmapped the rest of the address space: no allocation, no formatting,
//! no panics, no libc.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg_attr(target_arch = "x86_64", path = "x86_64.rs")]
#[cfg_attr(target_arch = "x86", path = "i386.rs")]
mod imp;

pub use imp::*;
