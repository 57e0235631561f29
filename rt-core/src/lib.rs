//! rckpt's freestanding core: everything that runs inside the checkpoint
//! signal handler of a relinked program or inside the loader while it
//! restores an image.
//!
//! `#![no_std]`, no allocation, no libc: raw system calls only (see [`sys`],
//! the complete list). Modules that run in signal or restore context say so
//! and list what is forbidden there. The image format ([`format`], [`elf`],
//! [`image`]) is also used by the std-side `rckpt` tool, so that one reader
//! decides what a valid image is.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cmd;
pub mod elf;
pub mod flags;
pub mod format;
pub mod hash;
pub mod image;
pub mod line;
pub mod migrate;
pub mod procfs;
pub mod restore;
pub mod sys;
pub mod writer;
