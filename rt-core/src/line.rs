//! One-line messages built in a fixed buffer and written to stderr with a
//! single `write`, usable in a signal handler (no allocation, no `core::fmt`).

use crate::sys::{self, Errno};

pub struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Line { buf: [0; 1024], len: 0 }
    }
    /// Bytes are cut at the buffer's end, never overflowing it.
    pub fn s(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }
    pub fn t(&mut self, s: &str) -> &mut Self {
        self.s(s.as_bytes())
    }
    pub fn u(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        self.s(decimal(v, &mut d))
    }
    pub fn i(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.t("-").u(v.unsigned_abs())
        } else {
            self.u(v as u64)
        }
    }
    pub fn x(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 16];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.t("0x").s(&d[i..])
    }
    /// The errno's description ("No space left on device").
    pub fn e(&mut self, e: Errno) -> &mut Self {
        match e.description() {
            Some(d) => self.t(d),
            None => self.t("errno ").i(e.into_raw() as i64),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Write the line plus a newline to stderr in one `write`.
    pub fn emit(&mut self) {
        self.buf[self.len] = b'\n';
        let _ = sys::write_all(2, &self.buf[..self.len + 1]);
        self.len = 0;
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

/// `v` in decimal, written at the end of `buf`; returns those digits.
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}
