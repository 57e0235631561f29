//! The `-_condor_*` command-line flags of a relinked program (the HTCondor
//! standard-universe interface, kept exactly). Pure parsing: the runtime
//! removes the flags from argv before the program's `main` sees it.

/// Warning kinds, in the order of [`Flags::warn`].
pub const WARN_KINDS: [&[u8]; 5] = [b"ALL", b"NOTICE", b"READWRITE", b"UNSUP", b"BADURL"];
pub const WARN_NOTICE: usize = 1;
pub const WARN_READWRITE: usize = 2;
pub const WARN_UNSUP: usize = 3;
/// Warning modes.
pub const MODE_OFF: u8 = 0;
pub const MODE_ON: u8 = 1;
pub const MODE_ONCE: u8 = 2;
/// Largest deleted file a checkpoint saves unless `-_condor_ghost_limit`
/// says otherwise.
pub const DEFAULT_GHOST_LIMIT: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags<'a> {
    /// `-_condor_ckpt FILE` / `-_condor_restart FILE` (the last one wins).
    pub file: Option<&'a [u8]>,
    /// Some `-_condor_restart` was given.
    pub restart: bool,
    pub relocatable: bool,
    /// Number of `-_condor_D_<LEVEL>` flags (any turns debug output on).
    pub debug: u32,
    /// Mode per kind in [`WARN_KINDS`] order (index 0, ALL, is unused after
    /// parsing: it sets the others).
    pub warn: [u8; 5],
    pub debug_wait: bool,
    pub aggravate_bugs: bool,
    /// `-_condor_ghost_limit SIZE` in bytes (the last one wins).
    pub ghost_limit: Option<u64>,
    /// `-_condor_cmd_fd FD`: the command stream's descriptor.
    pub cmd_fd: Option<i32>,
    /// `-_condor_cmd_file FILE`: the command stream's file.
    pub cmd_file: Option<&'a [u8]>,
}

impl Default for Flags<'_> {
    fn default() -> Self {
        Flags {
            file: None,
            restart: false,
            relocatable: false,
            debug: 0,
            warn: [MODE_ON; 5],
            debug_wait: false,
            aggravate_bugs: false,
            ghost_limit: None,
            cmd_fd: None,
            cmd_file: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagError<'a> {
    /// The flag needs an argument that is missing.
    Missing(&'a [u8], &'static str),
    BadKind(&'a [u8]),
    BadMode(&'a [u8]),
    BadLevel(&'a [u8]),
    Unknown(&'a [u8]),
    /// `-_condor_cmd_fd` with something else than a descriptor number.
    BadFd(&'a [u8]),
    /// Both `-_condor_cmd_fd` and `-_condor_cmd_file`.
    BothCmd,
    /// The flag and its malformed SIZE argument.
    BadSize(&'a [u8], &'a [u8]),
}

impl FlagError<'_> {
    /// Write the one-line message (without "rckpt: " or newline).
    pub fn describe(&self, l: &mut crate::line::Line) {
        match *self {
            FlagError::Missing(f, what) => l.s(f).t(" needs ").t(what),
            FlagError::BadKind(k) => l.t("-_condor_warning: unknown kind '").s(k).t("' (expected ALL, NOTICE, READWRITE, UNSUP or BADURL)"),
            FlagError::BadMode(m) => l.t("-_condor_warning: unknown mode '").s(m).t("' (expected ON, OFF or ONCE)"),
            FlagError::BadLevel(f) => l.s(f).t(": expected -_condor_D_<LEVEL>, e.g. -_condor_D_FULLDEBUG"),
            FlagError::Unknown(f) => l.t("unknown flag ").s(f),
            FlagError::BadFd(v) => l.t("-_condor_cmd_fd: bad descriptor '").s(v).t("' (expected a number from 0 to 2147483647)"),
            FlagError::BothCmd => l.t("-_condor_cmd_fd and -_condor_cmd_file cannot both be given (one command stream)"),
            FlagError::BadSize(f, v) => {
                l.s(f).t(": bad size '").s(v).t("' (expected a number of bytes, optionally with a K, M or G suffix, e.g. 256M)")
            }
        };
    }
}

/// A size in bytes: decimal digits, optionally followed by one of `K`,
/// `M`, `G` (either case; powers of 1024). `None` if malformed or if it
/// does not fit in 64 bits.
pub fn parse_size(b: &[u8]) -> Option<u64> {
    let (digits, shift) = match b.last()? {
        b'K' | b'k' => (&b[..b.len() - 1], 10),
        b'M' | b'm' => (&b[..b.len() - 1], 20),
        b'G' | b'g' => (&b[..b.len() - 1], 30),
        _ => (b, 0),
    };
    let v = crate::procfs::dec(digits)?;
    if v.leading_zeros() < shift {
        return None;
    }
    Some(v << shift)
}

/// Parse `n` arguments (argv[1..]), fetched by `arg(i)`. `remove(i)` is
/// called for every index that belongs to a flag.
pub fn parse<'a>(n: usize, arg: impl Fn(usize) -> &'a [u8], mut remove: impl FnMut(usize)) -> Result<Flags<'a>, FlagError<'a>> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < n {
        let a = arg(i);
        let Some(rest) = a.strip_prefix(b"-_condor_") else {
            i += 1;
            continue;
        };
        remove(i);
        let mut take = |what: &'static str| -> Result<&'a [u8], FlagError<'a>> {
            if i + 1 >= n {
                return Err(FlagError::Missing(a, what));
            }
            i += 1;
            remove(i);
            Ok(arg(i))
        };
        match rest {
            b"ckpt" => f.file = Some(take("a FILE argument")?),
            b"restart" => {
                f.file = Some(take("a FILE argument")?);
                f.restart = true;
            }
            b"relocatable" => f.relocatable = true,
            b"nowarn" => {
                f.warn[WARN_NOTICE] = MODE_OFF;
                f.warn[WARN_UNSUP] = MODE_OFF;
            }
            b"warning" => {
                let kind = take("KIND and MODE arguments")?;
                let mode = take("KIND and MODE arguments")?;
                let k = WARN_KINDS.iter().position(|&x| x == kind).ok_or(FlagError::BadKind(kind))?;
                let m = match mode {
                    b"OFF" => MODE_OFF,
                    b"ON" => MODE_ON,
                    b"ONCE" => MODE_ONCE,
                    _ => return Err(FlagError::BadMode(mode)),
                };
                if k == 0 {
                    f.warn = [m; 5];
                } else {
                    f.warn[k] = m;
                }
            }
            b"ghost_limit" => {
                let v = take("a SIZE argument")?;
                f.ghost_limit = Some(parse_size(v).ok_or(FlagError::BadSize(a, v))?);
            }
            b"debug_wait" => f.debug_wait = true,
            b"aggravate_bugs" => f.aggravate_bugs = true,
            b"cmd_fd" => {
                let v = take("an FD argument")?;
                f.cmd_fd = Some(crate::procfs::dec(v).and_then(|n| i32::try_from(n).ok()).ok_or(FlagError::BadFd(v))?);
            }
            b"cmd_file" => f.cmd_file = Some(take("a FILE argument")?),
            _ => match rest.strip_prefix(b"D_") {
                Some(level) if !level.is_empty() && level.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_') => {
                    f.debug += 1
                }
                Some(_) => return Err(FlagError::BadLevel(a)),
                None => return Err(FlagError::Unknown(a)),
            },
        }
        i += 1;
    }
    if f.cmd_fd.is_some() && f.cmd_file.is_some() {
        return Err(FlagError::BothCmd);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(args: &'a [&'a [u8]]) -> (Result<Flags<'a>, FlagError<'a>>, [bool; 16]) {
        let mut removed = [false; 16];
        let r = parse(args.len(), |i| args[i], |i| removed[i] = true);
        (r, removed)
    }

    #[test]
    fn flags_anywhere_and_last_file_wins() {
        let (r, rm) = run(&[b"x", b"-_condor_ckpt", b"a", b"y", b"-_condor_restart", b"b", b"-_condor_relocatable"]);
        let f = r.unwrap();
        assert_eq!(f.file, Some(&b"b"[..]));
        assert!(f.restart && f.relocatable);
        assert_eq!(&rm[..7], &[false, true, true, false, true, true, true]);
    }

    #[test]
    fn warnings_and_levels() {
        let (r, _) = run(&[b"-_condor_warning", b"ALL", b"OFF", b"-_condor_warning", b"UNSUP", b"ONCE", b"-_condor_D_FULLDEBUG"]);
        let f = r.unwrap();
        assert_eq!(f.warn, [0, 0, 0, 2, 0]);
        assert_eq!(f.debug, 1);
    }

    #[test]
    fn errors() {
        assert_eq!(run(&[b"-_condor_ckpt"]).0, Err(FlagError::Missing(b"-_condor_ckpt", "a FILE argument")));
        assert_eq!(run(&[b"-_condor_warning", b"FOO", b"ON"]).0, Err(FlagError::BadKind(b"FOO")));
        assert_eq!(run(&[b"-_condor_warning", b"ALL", b"MAYBE"]).0, Err(FlagError::BadMode(b"MAYBE")));
        assert_eq!(run(&[b"-_condor_cmd_fd"]).0, Err(FlagError::Missing(b"-_condor_cmd_fd", "an FD argument")));
        assert_eq!(run(&[b"-_condor_cmd_fd", b"x3"]).0, Err(FlagError::BadFd(b"x3")));
        assert_eq!(run(&[b"-_condor_cmd_fd", b"-1"]).0, Err(FlagError::BadFd(b"-1")));
        assert_eq!(run(&[b"-_condor_cmd_fd", b"2147483648"]).0, Err(FlagError::BadFd(b"2147483648")));
        assert_eq!(run(&[b"-_condor_cmd_file"]).0, Err(FlagError::Missing(b"-_condor_cmd_file", "a FILE argument")));
        assert_eq!(run(&[b"-_condor_cmd_fd", b"3", b"-_condor_cmd_file", b"c"]).0, Err(FlagError::BothCmd));
        assert_eq!(run(&[b"-_condor_cmd_file", b"c", b"x", b"-_condor_cmd_fd", b"3"]).0, Err(FlagError::BothCmd));
        assert_eq!(run(&[b"-_condor_bogus"]).0, Err(FlagError::Unknown(b"-_condor_bogus")));
        assert_eq!(run(&[b"-_condor_D_"]).0, Err(FlagError::BadLevel(b"-_condor_D_")));
        assert_eq!(run(&[b"-_condor_ghost_limit"]).0, Err(FlagError::Missing(b"-_condor_ghost_limit", "a SIZE argument")));
        assert_eq!(run(&[b"-_condor_ghost_limit", b"12X"]).0, Err(FlagError::BadSize(b"-_condor_ghost_limit", b"12X")));
    }

    #[test]
    fn command_stream() {
        let (r, rm) = run(&[b"a", b"-_condor_cmd_fd", b"3", b"-_condor_ckpt", b"j.ckpt", b"b"]);
        let f = r.unwrap();
        assert_eq!((f.cmd_fd, f.cmd_file, f.file), (Some(3), None, Some(&b"j.ckpt"[..])));
        assert_eq!(&rm[..6], &[false, true, true, true, true, false]);
        let f = run(&[b"-_condor_cmd_file", b"cmds", b"-_condor_restart", b"r.ckpt"]).0.unwrap();
        assert_eq!((f.cmd_fd, f.cmd_file, f.restart), (None, Some(&b"cmds"[..]), true));
        assert_eq!(run(&[b"-_condor_cmd_fd", b"0"]).0.unwrap().cmd_fd, Some(0));
        assert_eq!(run(&[b"x"]).0.unwrap().cmd_fd, None);
    }

    #[test]
    fn ghost_limit() {
        let (r, rm) = run(&[b"a", b"-_condor_ghost_limit", b"128M", b"b"]);
        assert_eq!(r.unwrap().ghost_limit, Some(128 << 20));
        assert_eq!(&rm[..4], &[false, true, true, false]);
        assert_eq!(run(&[b"x"]).0.unwrap().ghost_limit, None);
        let (r, _) = run(&[b"-_condor_ghost_limit", b"1k", b"-_condor_ghost_limit", b"4096"]);
        assert_eq!(r.unwrap().ghost_limit, Some(4096));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"3K"), Some(3 << 10));
        assert_eq!(parse_size(b"64m"), Some(64 << 20));
        assert_eq!(parse_size(b"2G"), Some(2 << 30));
        assert_eq!(parse_size(b"17179869183G"), Some(17179869183 << 30));
        for bad in [&b""[..], b"K", b"-1", b"1.5G", b"12KB", b" 12", b"17179869184G", b"99999999999999999999"] {
            assert_eq!(parse_size(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
