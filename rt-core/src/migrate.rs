//! Migration hooks of the command stream (`migrate_to HOST PORT`).
//!
//! Placeholder: the streamed image and its TCP transport are being built
//! separately; until then `migrate_to` fails (the job keeps running, and an
//! `exit` after it is refused). `migrate_from FD` needs nothing here: the
//! runtime executes the loader with `--fd FD` in place of an image path.
//!
//! Runs in the checkpoint signal handler: no allocation, no `core::fmt`, no
//! panics, no libc.
// A `Failure` carries a path (no allocator to box it), as in `writer`.
#![allow(clippy::result_large_err)]

use crate::writer::{Failure, Request};

/// Send a checkpoint of the calling process (described by `req`, as for
/// [`crate::writer::checkpoint`]) to the process listening at HOST:PORT.
pub fn migrate_to(host: &[u8], port: u16, req: &Request) -> Result<(), Failure> {
    let _ = (host, port, req);
    Err(Failure { what: "migration is not built yet", errno: None, file: None, invalid: None })
}
