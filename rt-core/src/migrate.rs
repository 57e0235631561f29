//! `migrate_to HOST PORT` of the command stream: the image goes, in one
//! pass, to a TCP connection; the migration counts as done only when the
//! receiver (`rckpt-loader --fd N`, which a relinked program's
//! `migrate_from N` runs) answers that it read and verified the whole
//! image: [`crate::restore::ACK`] then the image's head seal, on the same
//! connection. A refused connection, a receiver that goes away or refuses
//! the image, or no answer within [`TIMEOUT_SECS`] is a failure: the job
//! keeps running here.
//!
//! HOST is an IPv4 or IPv6 address, or a name from `/etc/hosts` (the
//! runtime has no resolver library: a starter that wants DNS passes the
//! address it resolved).
//!
//! Runs in the checkpoint signal handler: no allocation, no `core::fmt`, no
//! panics, no libc.
// A `Failure` carries a path (no allocator to box it), as in `writer`.
#![allow(clippy::result_large_err)]

use crate::restore::ACK;
use crate::sys::{self, Fd};
use crate::writer::{self, Failure, Request};
use core::sync::atomic::{AtomicUsize, Ordering};

/// How long a connect, each send, and the wait for the answer may take, in
/// seconds: 60, or `RCKPT_MIGRATE_TIMEOUT` from the program's environment
/// (read once, before `main`).
pub static TIMEOUT_SECS: AtomicUsize = AtomicUsize::new(60);

/// Send a checkpoint of the calling process (described by `req`, as for
/// [`writer::checkpoint`]) to the process listening at HOST:PORT, and wait
/// for its acknowledgement.
pub fn migrate_to(host: &[u8], port: u16, req: &Request) -> Result<(), Failure> {
    let mut addr = [0u8; 28];
    let len = resolve(host, port, &mut addr).ok_or(Failure {
        what: "unknown host (an IPv4 or IPv6 address, or a name in /etc/hosts)",
        errno: None,
        file: None,
        invalid: None,
    })?;
    let family = u16::from_le_bytes([addr[0], addr[1]]);
    let fd = sys::socket_stream(family).map_err(|e| sys_failure("creating a socket", e))?;
    let r = send(fd, &addr[..len], req);
    let _ = sys::close(fd);
    r
}

fn sys_failure(what: &'static str, e: sys::Errno) -> Failure {
    Failure { what, errno: Some(e), file: None, invalid: None }
}

/// Connect, stream the image, read the answer.
fn send(fd: Fd, addr: &[u8], req: &Request) -> Result<(), Failure> {
    sys::set_timeouts(fd, TIMEOUT_SECS.load(Ordering::Relaxed)).map_err(|e| sys_failure("setting socket timeouts", e))?;
    sys::connect(fd, addr).map_err(|e| sys_failure("connecting", e))?;
    let st = writer::checkpoint_to_fd(req, fd)?;
    let mut ack = [0u8; 16];
    let mut got = 0;
    while got < ack.len() {
        match sys::read(fd, &mut ack[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(sys::Errno::EINTR) => {}
            Err(e) => return Err(sys_failure("waiting for the receiver's acknowledgement", e)),
        }
    }
    if got < ack.len() || ack[..8] != ACK || ack[8..] != st.seal.to_le_bytes() {
        return Err(Failure { what: "the receiver did not acknowledge the image", errno: None, file: None, invalid: None });
    }
    Ok(())
}

/// HOST and PORT as a `sockaddr_in` (16 bytes) or `sockaddr_in6` (28) in
/// `out`; returns its length. Names are looked up in /etc/hosts.
fn resolve(host: &[u8], port: u16, out: &mut [u8; 28]) -> Option<usize> {
    if let Some(a) = parse_ipv4(host) {
        out[..2].copy_from_slice(&sys::AF_INET.to_le_bytes());
        out[2..4].copy_from_slice(&port.to_be_bytes());
        out[4..8].copy_from_slice(&a);
        return Some(16);
    }
    if let Some(a) = parse_ipv6(host) {
        out[..2].copy_from_slice(&sys::AF_INET6.to_le_bytes());
        out[2..4].copy_from_slice(&port.to_be_bytes());
        out[8..24].copy_from_slice(&a);
        return Some(28);
    }
    let mut buf = [0u8; 16 << 10];
    let n = sys::read_file(b"/etc/hosts", &mut buf).ok()?;
    for line in buf[..n].split(|&c| c == b'\n') {
        let line = line.split(|&c| c == b'#').next().unwrap_or(&[]);
        let mut words = line.split(|&c| c == b' ' || c == b'\t').filter(|w| !w.is_empty());
        let Some(addr) = words.next() else { continue };
        if words.any(|w| w == host) && addr != host {
            return resolve(addr, port, out);
        }
    }
    None
}

/// `a.b.c.d`, each part a decimal 0-255.
pub fn parse_ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&c| c == b'.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *o = u8::try_from(p.iter().fold(0u32, |v, &d| v * 10 + (d - b'0') as u32)).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// An IPv6 address in the text forms of RFC 4291 (hex groups, one `::`;
/// no embedded IPv4, no zone).
pub fn parse_ipv6(s: &[u8]) -> Option<[u8; 16]> {
    let mut head = [0u16; 8];
    let mut tail = [0u16; 8];
    let (mut nh, mut nt) = (0, 0);
    let (before, after) = match s.windows(2).position(|w| w == b"::") {
        Some(k) => (&s[..k], Some(&s[k + 2..])),
        None => (s, None),
    };
    let group = |g: &[u8]| -> Option<u16> {
        if g.is_empty() || g.len() > 4 {
            return None;
        }
        g.iter().try_fold(0u16, |v, &c| Some(v * 16 + (c as char).to_digit(16)? as u16))
    };
    for g in before.split(|&c| c == b':').filter(|g| !(before.is_empty() && g.is_empty())) {
        *head.get_mut(nh)? = group(g)?;
        nh += 1;
    }
    if let Some(after) = after {
        for g in after.split(|&c| c == b':').filter(|g| !(after.is_empty() && g.is_empty())) {
            *tail.get_mut(nt)? = group(g)?;
            nt += 1;
        }
        if nh + nt > 7 {
            return None;
        }
    } else if nh != 8 {
        return None;
    }
    let mut words = [0u16; 8];
    words[..nh].copy_from_slice(&head[..nh]);
    words[8 - nt..].copy_from_slice(&tail[..nt]);
    let mut out = [0u8; 16];
    for (k, w) in words.iter().enumerate() {
        out[2 * k..2 * k + 2].copy_from_slice(&w.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_ipv4(b"127.0.0.1"), Some([127, 0, 0, 1]));
        assert_eq!(parse_ipv4(b"256.0.0.1"), None);
        assert_eq!(parse_ipv4(b"1.2.3"), None);
        assert_eq!(parse_ipv4(b"1.2.3.4.5"), None);
        let lo = parse_ipv6(b"::1").unwrap();
        assert_eq!(lo[15], 1);
        assert!(lo[..15].iter().all(|&b| b == 0));
        assert_eq!(parse_ipv6(b"fe80::1:2").unwrap()[..2], [0xfe, 0x80]);
        assert_eq!(parse_ipv6(b"1:2:3:4:5:6:7:8").map(|a| a[15]), Some(8));
        assert_eq!(parse_ipv6(b"1:2:3:4:5:6:7"), None);
        assert_eq!(parse_ipv6(b"1::2::3"), None);
        assert_eq!(parse_ipv6(b"12345::"), None);
    }
}
