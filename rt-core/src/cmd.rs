//! The command stream (`-_condor_cmd_fd N`, `-_condor_cmd_file FILE`):
//! HTCondor's command-file language, parsed here in pure functions, and
//! the line reader that splits the stream into lines. The runtime
//! (`crt/src/cmd.rs`) only executes.
//!
//! One command a line, words separated by blanks (space, tab), blank lines
//! ignored:
//!
//! ```text
//! iwd PATH | fd N PATH MODE | ckpt PATH | restart [PATH]
//! migrate_to HOST PORT | migrate_from FD | exit STATUS | end
//! ```
//!
//! The reader runs in the checkpoint signal handler (after `end`, every
//! SIGTSTP reads a batch): no allocation, no `core::fmt`, no panics, no
//! libc. It reads into a fixed buffer and never asks `read` for more bytes
//! than it can keep, so several commands delivered at once by a pipe wait
//! in the buffer for the next call.

use crate::line::Line;
use crate::procfs::dec;
use crate::sys::Errno;

/// Longest line (without its newline): a path of `PATH_MAX` bytes plus a
/// verb, a descriptor number and a MODE.
pub const MAX_LINE: usize = 4096 + 256;

/// One command, borrowing its words from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Iwd(&'a [u8]),
    /// Open `path` with open(2) `flags` (mode 0666, less the umask) and
    /// move it to descriptor `fd`.
    Fd {
        fd: i32,
        path: &'a [u8],
        flags: u32,
    },
    Ckpt(&'a [u8]),
    /// `restart PATH`, or bare `restart`: from the current checkpoint file.
    Restart(Option<&'a [u8]>),
    MigrateTo {
        host: &'a [u8],
        port: u16,
    },
    MigrateFrom(i32),
    Exit(i32),
    End,
}

/// What is wrong with a line (the line number is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError<'a> {
    UnknownVerb(&'a [u8]),
    /// The usage of the verb whose word count is wrong (`"fd N PATH MODE"`).
    WordCount(&'static str),
    /// A descriptor argument that is not a number: the verb and the word.
    BadFd(&'static str, &'a [u8]),
    BadStatus(&'a [u8]),
    BadPort(&'a [u8]),
    BadMode(&'a [u8], ModeError<'a>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeError<'a> {
    UnknownName(&'a [u8]),
    /// `||`, a leading or a trailing `|`, or an empty MODE.
    EmptyName,
    /// More than one of `O_RDONLY`, `O_WRONLY`, `O_RDWR`.
    TwoAccessModes,
    /// Starts with a digit but is not a decimal or 0x-hex 32-bit number.
    BadNumber,
}

const VERBS: &str = "iwd, fd, ckpt, restart, migrate_to, migrate_from, exit or end";

impl CmdError<'_> {
    /// The message after "rckpt: command stream line N: ".
    pub fn describe(&self, l: &mut Line) {
        match *self {
            CmdError::UnknownVerb(v) => l.t("unknown command '").s(v).t("' (expected ").t(VERBS).t(")"),
            CmdError::WordCount(usage) => {
                let verb = usage.split(' ').next().unwrap_or(usage);
                l.t("wrong number of words for ").t(verb).t(" (expected: ").t(usage).t(")")
            }
            CmdError::BadFd(verb, w) => l.t(verb).t(": bad descriptor '").s(w).t("' (expected a number from 0 to 2147483647)"),
            CmdError::BadStatus(w) => l.t("exit: bad status '").s(w).t("' (expected a number from 0 to 255)"),
            CmdError::BadPort(w) => l.t("migrate_to: bad port '").s(w).t("' (expected a number from 1 to 65535)"),
            CmdError::BadMode(m, e) => {
                l.t("fd: bad MODE '").s(m).t("': ");
                match e {
                    ModeError::UnknownName(n) => l.t("unknown flag '").s(n).t("'"),
                    ModeError::EmptyName => l.t("empty flag name"),
                    ModeError::TwoAccessModes => l.t("more than one of O_RDONLY, O_WRONLY, O_RDWR"),
                    ModeError::BadNumber => l.t("not a 32-bit decimal or 0x-hex number"),
                };
                l.t(" (expected open(2) flag names joined by |, e.g. O_WRONLY|O_CREAT|O_TRUNC, or a number)")
            }
        };
    }
}

/// open(2) flag names and their values (the same on x86_64 and i386).
pub const OPEN_FLAGS: [(&str, u32); 19] = [
    ("O_RDONLY", 0),
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_NDELAY", 0o4000),
    ("O_DSYNC", 0o10000),
    ("O_SYNC", 0o4010000),
    ("O_RSYNC", 0o4010000),
    ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000),
];

/// A MODE: open(2) flag names joined by `|`, or a number (decimal, or hex
/// with `0x`) taken as the flags value.
pub fn parse_mode(m: &[u8]) -> Result<u32, ModeError<'_>> {
    if m.first().is_some_and(|c| c.is_ascii_digit()) {
        let v = match m.strip_prefix(b"0x").or_else(|| m.strip_prefix(b"0X")) {
            Some(h) => hex(h),
            None => dec(m),
        };
        return v.and_then(|v| u32::try_from(v).ok()).ok_or(ModeError::BadNumber);
    }
    let mut flags = 0;
    let mut access = 0;
    for name in m.split(|&c| c == b'|') {
        if name.is_empty() {
            return Err(ModeError::EmptyName);
        }
        let Some(&(n, v)) = OPEN_FLAGS.iter().find(|(n, _)| n.as_bytes() == name) else {
            return Err(ModeError::UnknownName(name));
        };
        if matches!(n, "O_RDONLY" | "O_WRONLY" | "O_RDWR") {
            access += 1;
            if access > 1 {
                return Err(ModeError::TwoAccessModes);
            }
        }
        flags |= v;
    }
    Ok(flags)
}

fn hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    b.iter().try_fold(0u64, |v, &c| Some(v << 4 | (c as char).to_digit(16)? as u64))
}

fn is_blank(c: &u8) -> bool {
    *c == b' ' || *c == b'\t'
}

/// The line's words (split on blanks, empty pieces dropped).
pub fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(is_blank).filter(|w| !w.is_empty())
}

fn fd_number<'a>(verb: &'static str, w: &'a [u8]) -> Result<i32, CmdError<'a>> {
    dec(w).and_then(|v| i32::try_from(v).ok()).ok_or(CmdError::BadFd(verb, w))
}

/// Parse one line (without its newline). `Ok(None)` for a blank line.
pub fn parse_line(line: &[u8]) -> Result<Option<Command<'_>>, CmdError<'_>> {
    let mut w: [&[u8]; 5] = [b""; 5];
    let mut n = 0;
    for word in words(line) {
        if n < w.len() {
            w[n] = word;
        }
        n += 1;
    }
    if n == 0 {
        return Ok(None);
    }
    let args = n - 1;
    let need = |k: usize, usage: &'static str| if args == k { Ok(()) } else { Err(CmdError::WordCount(usage)) };
    let c = match w[0] {
        b"iwd" => {
            need(1, "iwd PATH")?;
            Command::Iwd(w[1])
        }
        b"fd" => {
            need(3, "fd N PATH MODE")?;
            let fd = fd_number("fd", w[1])?;
            let flags = parse_mode(w[3]).map_err(|e| CmdError::BadMode(w[3], e))?;
            Command::Fd { fd, path: w[2], flags }
        }
        b"ckpt" => {
            need(1, "ckpt PATH")?;
            Command::Ckpt(w[1])
        }
        b"restart" => match args {
            0 => Command::Restart(None),
            1 => Command::Restart(Some(w[1])),
            _ => return Err(CmdError::WordCount("restart [PATH]")),
        },
        b"migrate_to" => {
            need(2, "migrate_to HOST PORT")?;
            let port = dec(w[2]).and_then(|v| u16::try_from(v).ok()).filter(|&p| p != 0).ok_or(CmdError::BadPort(w[2]))?;
            Command::MigrateTo { host: w[1], port }
        }
        b"migrate_from" => {
            need(1, "migrate_from FD")?;
            Command::MigrateFrom(fd_number("migrate_from", w[1])?)
        }
        b"exit" => {
            need(1, "exit STATUS")?;
            Command::Exit(dec(w[1]).filter(|&v| v <= 255).ok_or(CmdError::BadStatus(w[1]))? as i32)
        }
        b"end" => {
            need(0, "end")?;
            Command::End
        }
        v => return Err(CmdError::UnknownVerb(v)),
    };
    Ok(Some(c))
}

/// Why no line could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Line `n` is longer than [`MAX_LINE`]; the rest of it is skipped by
    /// the next call.
    TooLong(u32),
    /// `read` failed before line `n` was complete.
    Io(u32, Errno),
}

/// Splits a stream into lines in a fixed buffer. Bytes read past a line's
/// end stay here for the next call. Line numbers count from 1 for the
/// whole stream.
pub struct LineReader {
    buf: [u8; MAX_LINE + 1],
    start: usize,
    end: usize,
    /// Lines returned (or refused as too long) so far.
    pub lineno: u32,
    /// Discarding the rest of a line that was too long.
    skipping: bool,
}

impl LineReader {
    pub const fn new() -> Self {
        LineReader { buf: [0; MAX_LINE + 1], start: 0, end: 0, lineno: 0, skipping: false }
    }

    /// Forget everything: a new stream.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.lineno = 0;
        self.skipping = false;
    }

    /// The next line, without its newline, and its number; `Ok(None)` at
    /// end of stream (a last line without a newline is still a line).
    /// `read` fills a buffer like read(2) (0: end of stream); EINTR is
    /// retried.
    pub fn next_line(&mut self, mut read: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Option<(u32, &[u8])>, ReadError> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let nl = pending.iter().position(|&c| c == b'\n');
            if self.skipping {
                match nl {
                    Some(k) => {
                        self.start += k + 1;
                        self.skipping = false;
                        continue;
                    }
                    None => {
                        self.start = 0;
                        self.end = 0;
                    }
                }
            } else if let Some(k) = nl {
                let s = self.start;
                self.start += k + 1;
                self.lineno += 1;
                return Ok(Some((self.lineno, &self.buf[s..s + k])));
            } else if pending.len() > MAX_LINE {
                self.lineno += 1;
                self.skipping = true;
                self.start = 0;
                self.end = 0;
                return Err(ReadError::TooLong(self.lineno));
            }
            // Make room: move the incomplete line to the front.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = loop {
                match read(&mut self.buf[self.end..]) {
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(ReadError::Io(self.lineno + 1, e)),
                    Ok(n) => break n.min(self.buf.len() - self.end),
                }
            };
            if n == 0 {
                if self.skipping || self.end == 0 {
                    self.skipping = false;
                    return Ok(None);
                }
                // The last line, without a newline.
                let e = self.end;
                self.end = 0;
                self.lineno += 1;
                return Ok(Some((self.lineno, &self.buf[..e])));
            }
            self.end += n;
        }
    }
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: CmdError) -> heapless::String<1024> {
        let mut l = Line::new();
        e.describe(&mut l);
        heapless::String::try_from(core::str::from_utf8(l.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn commands() {
        assert_eq!(parse_line(b""), Ok(None));
        assert_eq!(parse_line(b" \t  "), Ok(None));
        assert_eq!(parse_line(b"iwd /data/job"), Ok(Some(Command::Iwd(b"/data/job"))));
        assert_eq!(
            parse_line(b"  fd\t1  out.txt   O_WRONLY|O_CREAT|O_TRUNC "),
            Ok(Some(Command::Fd { fd: 1, path: b"out.txt", flags: 0o1101 }))
        );
        assert_eq!(parse_line(b"ckpt job.ckpt"), Ok(Some(Command::Ckpt(b"job.ckpt"))));
        assert_eq!(parse_line(b"restart job.ckpt"), Ok(Some(Command::Restart(Some(b"job.ckpt")))));
        assert_eq!(parse_line(b"restart"), Ok(Some(Command::Restart(None))));
        assert_eq!(parse_line(b"migrate_to node7 9618"), Ok(Some(Command::MigrateTo { host: b"node7", port: 9618 })));
        assert_eq!(parse_line(b"migrate_to h 1"), Ok(Some(Command::MigrateTo { host: b"h", port: 1 })));
        assert_eq!(parse_line(b"migrate_to h 65535"), Ok(Some(Command::MigrateTo { host: b"h", port: 65535 })));
        assert_eq!(parse_line(b"migrate_from 5"), Ok(Some(Command::MigrateFrom(5))));
        assert_eq!(parse_line(b"exit 0"), Ok(Some(Command::Exit(0))));
        assert_eq!(parse_line(b"exit 255"), Ok(Some(Command::Exit(255))));
        assert_eq!(parse_line(b"end"), Ok(Some(Command::End)));
        assert_eq!(parse_line(b"fd 2147483647 f 0"), Ok(Some(Command::Fd { fd: i32::MAX, path: b"f", flags: 0 })));
    }

    #[test]
    fn command_errors() {
        use CmdError::*;
        assert_eq!(parse_line(b"frob x"), Err(UnknownVerb(b"frob")));
        assert_eq!(parse_line(b"END"), Err(UnknownVerb(b"END")));
        assert_eq!(parse_line(b"iwd"), Err(WordCount("iwd PATH")));
        assert_eq!(parse_line(b"iwd a b"), Err(WordCount("iwd PATH")));
        assert_eq!(parse_line(b"fd 1 out"), Err(WordCount("fd N PATH MODE")));
        assert_eq!(parse_line(b"fd 1 a b c d e f"), Err(WordCount("fd N PATH MODE")));
        assert_eq!(parse_line(b"ckpt"), Err(WordCount("ckpt PATH")));
        assert_eq!(parse_line(b"restart a b"), Err(WordCount("restart [PATH]")));
        assert_eq!(parse_line(b"migrate_to h"), Err(WordCount("migrate_to HOST PORT")));
        assert_eq!(parse_line(b"migrate_from"), Err(WordCount("migrate_from FD")));
        assert_eq!(parse_line(b"exit"), Err(WordCount("exit STATUS")));
        assert_eq!(parse_line(b"end now"), Err(WordCount("end")));
        assert_eq!(parse_line(b"fd x f O_RDONLY"), Err(BadFd("fd", b"x")));
        assert_eq!(parse_line(b"fd -1 f O_RDONLY"), Err(BadFd("fd", b"-1")));
        assert_eq!(parse_line(b"fd 2147483648 f O_RDONLY"), Err(BadFd("fd", b"2147483648")));
        assert_eq!(parse_line(b"fd 1 f O_WRONY"), Err(BadMode(b"O_WRONY", ModeError::UnknownName(b"O_WRONY"))));
        assert_eq!(parse_line(b"migrate_from 3x"), Err(BadFd("migrate_from", b"3x")));
        assert_eq!(parse_line(b"migrate_to h 0"), Err(BadPort(b"0")));
        assert_eq!(parse_line(b"migrate_to h 65536"), Err(BadPort(b"65536")));
        assert_eq!(parse_line(b"migrate_to h http"), Err(BadPort(b"http")));
        assert_eq!(parse_line(b"exit 256"), Err(BadStatus(b"256")));
        assert_eq!(parse_line(b"exit -1"), Err(BadStatus(b"-1")));
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode(b"O_RDONLY"), Ok(0));
        assert_eq!(parse_mode(b"O_WRONLY|O_CREAT|O_TRUNC"), Ok(0o1101));
        assert_eq!(parse_mode(b"O_WRONLY|O_CREAT|O_APPEND"), Ok(0o2101));
        assert_eq!(parse_mode(b"O_RDWR"), Ok(2));
        assert_eq!(parse_mode(b"O_CREAT|O_EXCL|O_RDWR|O_CLOEXEC"), Ok(0o2000302));
        assert_eq!(parse_mode(b"O_CREAT"), Ok(0o100)); // read-only by default, as open(2)
        assert_eq!(parse_mode(b"577"), Ok(577));
        assert_eq!(parse_mode(b"0x241"), Ok(0x241));
        assert_eq!(parse_mode(b"0X241"), Ok(0x241));
        assert_eq!(parse_mode(b"0"), Ok(0));
        assert_eq!(parse_mode(b"4294967295"), Ok(u32::MAX));
        for (name, v) in OPEN_FLAGS {
            assert_eq!(parse_mode(name.as_bytes()), Ok(v), "{name}");
        }
    }

    #[test]
    fn mode_errors() {
        use ModeError::*;
        assert_eq!(parse_mode(b""), Err(EmptyName));
        assert_eq!(parse_mode(b"O_WRONLY||O_CREAT"), Err(EmptyName));
        assert_eq!(parse_mode(b"|O_WRONLY"), Err(EmptyName));
        assert_eq!(parse_mode(b"O_WRONLY|"), Err(EmptyName));
        assert_eq!(parse_mode(b"O_WRONLY|O_CRAET"), Err(UnknownName(b"O_CRAET")));
        assert_eq!(parse_mode(b"o_wronly"), Err(UnknownName(b"o_wronly")));
        assert_eq!(parse_mode(b"O_RDONLY|O_WRONLY"), Err(TwoAccessModes));
        assert_eq!(parse_mode(b"O_RDWR|O_RDWR"), Err(TwoAccessModes));
        assert_eq!(parse_mode(b"0x"), Err(BadNumber));
        assert_eq!(parse_mode(b"0xg1"), Err(BadNumber));
        assert_eq!(parse_mode(b"12a"), Err(BadNumber));
        assert_eq!(parse_mode(b"4294967296"), Err(BadNumber));
        assert_eq!(parse_mode(b"0x100000000"), Err(BadNumber));
    }

    #[test]
    fn messages() {
        assert_eq!(
            msg(CmdError::UnknownVerb(b"frob")),
            "unknown command 'frob' (expected iwd, fd, ckpt, restart, migrate_to, migrate_from, exit or end)"
        );
        assert_eq!(msg(CmdError::WordCount("fd N PATH MODE")), "wrong number of words for fd (expected: fd N PATH MODE)");
        assert_eq!(msg(CmdError::BadFd("fd", b"x")), "fd: bad descriptor 'x' (expected a number from 0 to 2147483647)");
        assert_eq!(msg(CmdError::BadStatus(b"256")), "exit: bad status '256' (expected a number from 0 to 255)");
        assert_eq!(msg(CmdError::BadPort(b"0")), "migrate_to: bad port '0' (expected a number from 1 to 65535)");
        assert_eq!(
            msg(CmdError::BadMode(b"O_WRONY", ModeError::UnknownName(b"O_WRONY"))),
            "fd: bad MODE 'O_WRONY': unknown flag 'O_WRONY' (expected open(2) flag names joined by |, e.g. O_WRONLY|O_CREAT|O_TRUNC, or a number)"
        );
    }

    /// A fake stream: `chunks` delivered one per read (cut to the buffer).
    struct Fake<'a> {
        chunks: &'a [&'a [u8]],
        i: usize,
        off: usize,
        eintr: bool,
    }
    impl Fake<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
            if self.eintr {
                self.eintr = false;
                return Err(Errno::EINTR);
            }
            self.eintr = true;
            let Some(c) = self.chunks.get(self.i) else { return Ok(0) };
            let n = (c.len() - self.off).min(buf.len());
            buf[..n].copy_from_slice(&c[self.off..self.off + n]);
            self.off += n;
            if self.off == c.len() {
                self.i += 1;
                self.off = 0;
            }
            Ok(n)
        }
    }

    fn collect(r: &mut LineReader, f: &mut Fake) -> heapless::Vec<(u32, heapless::Vec<u8, 64>), 16> {
        let mut v = heapless::Vec::new();
        while let Some((n, l)) = r.next_line(|b| f.read(b)).unwrap() {
            v.push((n, heapless::Vec::from_slice(l).unwrap())).unwrap();
        }
        v
    }

    #[test]
    fn lines_split_and_kept() {
        let mut r = LineReader::new();
        // Several commands in one read, one split across reads, a last line
        // without a newline; EINTR before every read.
        let mut f = Fake { chunks: &[b"ckpt a\nend\nfd 1 ", b"x O_RDONLY\n\nexit 0"], i: 0, off: 0, eintr: true };
        let v = collect(&mut r, &mut f);
        let got: heapless::Vec<(u32, &[u8]), 16> = v.iter().map(|(n, l)| (*n, &l[..])).collect();
        assert_eq!(&got[..], &[(1, &b"ckpt a"[..]), (2, b"end"), (3, b"fd 1 x O_RDONLY"), (4, b""), (5, b"exit 0")]);
        // After the end of the stream: still the end, numbering kept.
        assert_eq!(r.next_line(|_| Ok(0)), Ok(None));
        assert_eq!(r.lineno, 5);
        r.reset();
        assert_eq!(r.lineno, 0);
    }

    #[test]
    fn stops_at_each_line() {
        // Bytes past a line end wait in the buffer: the second call does
        // not read.
        let mut r = LineReader::new();
        let mut reads = 0;
        let mut data: &[u8] = b"ckpt a\nend\n";
        let mut rd = |b: &mut [u8]| {
            reads += 1;
            let n = data.len().min(b.len());
            b[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            Ok(n)
        };
        assert_eq!(r.next_line(&mut rd), Ok(Some((1, &b"ckpt a"[..]))));
        assert_eq!(r.next_line(&mut rd), Ok(Some((2, &b"end"[..]))));
        assert_eq!(reads, 1);
    }

    #[test]
    fn too_long_and_errors() {
        let mut long = [b'x'; MAX_LINE + 10];
        long[MAX_LINE + 9] = b'\n';
        let ok = [b'y'; MAX_LINE];
        let chunks: [&[u8]; 4] = [b"end\n", &long, &ok, b"\nend\n"];
        let mut f = Fake { chunks: &chunks, i: 0, off: 0, eintr: false };
        let mut r = LineReader::new();
        assert_eq!(r.next_line(|b| f.read(b)), Ok(Some((1, &b"end"[..]))));
        assert_eq!(r.next_line(|b| f.read(b)), Err(ReadError::TooLong(2)));
        // The rest of the long line is skipped; a line of MAX_LINE fits.
        let (n, l) = r.next_line(|b| f.read(b)).unwrap().unwrap();
        assert_eq!((n, l.len()), (3, MAX_LINE));
        assert_eq!(r.next_line(|b| f.read(b)), Ok(Some((4, &b"end"[..]))));
        assert_eq!(r.next_line(|b| f.read(b)), Ok(None));
        assert_eq!(r.next_line(|_| Err(Errno::EIO)), Err(ReadError::Io(5, Errno::EIO)));
    }
}
