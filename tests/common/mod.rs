//! Shared harness for rckpt's integration tests.
//!
//! * [`product`] builds rckpt once per test binary (`cargo build --release`)
//!   and hands out the paths of `rckpt` and `rckpt-loader`.
//! * [`T`] is one test's world: a private temporary directory, the
//!   architecture under test, fixture compilation with `rckpt compile`, and
//!   process spawning with stdout/stderr redirected to files there.
//! * [`Proc`] is a running child: readiness polling on its output files,
//!   signals, waiting with a timeout. A `Proc` that is dropped unwaited (a
//!   failing test) is killed and reaped: no zombie is left behind.
//! * [`require_tool`] and friends: skip (print "SKIPPED: ...") when an
//!   optional tool or privilege is missing, or fail when
//!   `RCKPT_REQUIRE_ALL=1`.
//! * [`image`]: reading and patching checkpoint images (reseal included).
//! * [`mutate`]: damaged and lying images for the fuzz harness.
//! * [`Arch`] and [`arch_tests!`]: every core round trip is a function of
//!   the architecture, with one `#[test]` per architecture.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long any single wait (for output, for an exit) may take before the
/// test fails. Generous: tests run in parallel on 2 cores.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(2);

pub const SIGUSR1: i32 = libc::SIGUSR1;
pub const SIGUSR2: i32 = libc::SIGUSR2;
pub const SIGTSTP: i32 = libc::SIGTSTP;
pub const SIGWINCH: i32 = libc::SIGWINCH;
pub const SIGKILL: i32 = libc::SIGKILL;

// ---------------------------------------------------------------------------
// The product

pub struct Product {
    pub root: PathBuf,
    pub rckpt: PathBuf,
    pub loader: PathBuf,
}

/// Build the product once per test binary and return its paths.
pub fn product() -> &'static Product {
    static P: OnceLock<Product> = OnceLock::new();
    P.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run cargo build --release");
        assert!(out.status.success(), "cargo build --release failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let rel = root.join("target").join("release");
        let p = Product { rckpt: rel.join("rckpt"), loader: rel.join("rckpt-loader"), root };
        for f in [&p.rckpt, &p.loader, &rel.join("librckpt_crt.a")] {
            assert!(f.exists(), "{} missing after cargo build --release", f.display());
        }
        p
    })
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

// ---------------------------------------------------------------------------
// Architectures

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    /// 32-bit programs (`-m32`), restored by the i686 loader.
    I386,
}

impl Arch {
    /// Extra compiler flags selecting the architecture.
    pub fn cflags(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::I386 => &["-m32"],
        }
    }
    /// rckpt's name for it (as in loader messages).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
        }
    }
    /// `e_machine` of its images.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::I386 => 3,
        }
    }
    /// Word size of its images.
    pub fn bits(self) -> u32 {
        match self {
            Arch::X86_64 => 64,
            Arch::I386 => 32,
        }
    }
    /// The architecture argument of `setarch`.
    pub fn setarch_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i686",
        }
    }
    /// The loader that restores its images.
    pub fn loader(self) -> PathBuf {
        match self {
            Arch::X86_64 => product().loader.clone(),
            Arch::I386 => product().root.join("target/i686-unknown-linux-gnu/release/rckpt-loader"),
        }
    }
    /// Whether its runtime can be built here (builds it once); otherwise
    /// see [`skip`].
    pub fn available(self) -> bool {
        match self {
            Arch::X86_64 => {
                product();
                true
            }
            Arch::I386 => {
                static I386: OnceLock<Result<(), String>> = OnceLock::new();
                let r = I386.get_or_init(|| {
                    let p = product();
                    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                    let out = Command::new(cargo)
                        .args(["build", "--release", "--target", "i686-unknown-linux-gnu", "-p", "rckpt-crt", "-p", "rckpt-loader"])
                        .current_dir(&p.root)
                        .stdin(Stdio::null())
                        .output()
                        .map_err(|e| e.to_string())?;
                    if !out.status.success() {
                        return Err(format!(
                            "the i386 runtime does not build (rustup target add i686-unknown-linux-gnu?):\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    let probe = Command::new("cc")
                        .args(["-m32", "-x", "c", "-", "-o", "/dev/null"])
                        .stdin(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn();
                    let ok = probe
                        .and_then(|mut c| {
                            use std::io::Write;
                            c.stdin.take().unwrap().write_all(b"int main(void){return 0;}\n")?;
                            c.wait()
                        })
                        .map(|st| st.success())
                        .unwrap_or(false);
                    if !ok {
                        return Err("cc -m32 cannot link (gcc-multilib missing?)".into());
                    }
                    Ok(())
                });
                match r {
                    Ok(()) => true,
                    Err(e) => skip(e),
                }
            }
        }
    }
}

/// `arch_tests!(name, ...)` makes, for each `fn name(arch: Arch)`, a module
/// `name` with one `#[test]` per architecture (`name::x86_64`, ...).
macro_rules! arch_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn x86_64() {
                super::$name($crate::common::Arch::X86_64)
            }
            #[test]
            fn i386() {
                if $crate::common::Arch::I386.available() {
                    super::$name($crate::common::Arch::I386)
                }
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// Optional tools and privileges

fn require_all() -> bool {
    std::env::var("RCKPT_REQUIRE_ALL").map(|v| v == "1").unwrap_or(false)
}

/// Report a missing prerequisite: panics under `RCKPT_REQUIRE_ALL=1`, else
/// prints "SKIPPED: why" and returns false (the test then returns).
pub fn skip(why: &str) -> bool {
    if require_all() {
        panic!("RCKPT_REQUIRE_ALL=1 but this test cannot run: {why}");
    }
    println!("SKIPPED: {why}");
    eprintln!("SKIPPED: {why}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// True if `tool` is on PATH; otherwise see [`skip`].
pub fn require_tool(tool: &str) -> bool {
    which(tool).is_some() || skip(&format!("{tool} is not installed"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> bool {
    is_root() || skip(&format!("{what} needs root"))
}

/// A private mount namespace is available (`unshare -m`, as root).
pub fn require_mount_ns() -> bool {
    if !require_tool("unshare") || !require_root("a private mount namespace") {
        return false;
    }
    let ok = Command::new("unshare")
        .args(["-m", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || skip("unshare -m does not work here (no mount namespaces)")
}

/// Address-space randomization can be turned off (`setarch ARCH -R`).
pub fn require_setarch(arch: Arch) -> bool {
    if !require_tool("setarch") {
        return false;
    }
    let ok = Command::new("setarch")
        .args([arch.setarch_name(), "-R", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || skip("setarch -R does not work here")
}

/// CPU flags from /proc/cpuinfo.
pub fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().find(|l| l.starts_with("flags")).map(|l| l.split_whitespace().any(|w| w == flag)).unwrap_or(false))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// One test's world

pub struct T {
    pub dir: PathBuf,
    pub arch: Arch,
    _tmp: tempfile::TempDir,
}

/// Turn anything path- or string-like into an argument.
pub fn s(p: impl AsRef<OsStr>) -> String {
    p.as_ref().to_str().expect("test paths are UTF-8").to_string()
}

impl T {
    pub fn new(name: &str, arch: Arch) -> T {
        product();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("rckpt-{name}-{}-", arch.name()))
            .tempdir()
            .expect("cannot create a temporary directory");
        let dir = tmp.path().canonicalize().unwrap();
        T { dir, arch, _tmp: tmp }
    }

    /// A path inside the test directory.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Same as [`T::p`], as a string argument.
    pub fn ps(&self, rel: &str) -> String {
        s(self.p(rel))
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let d = self.p(rel);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Create (or open) a gate file, releasing fixtures that wait for it.
    pub fn touch(&self, path: impl AsRef<Path>) {
        std::fs::write(path, b"").unwrap();
    }

    /// `rckpt compile cc -O2 -I fixtures <arch flags> -o OUT <srcs> <extra>`
    /// in the test directory; sources are fixture file names.
    pub fn compile(&self, out: &str, srcs: &[&str], extra: &[&str]) -> PathBuf {
        self.compile_with("cc", out, srcs, extra)
    }

    pub fn compile_with(&self, compiler: &str, out: &str, srcs: &[&str], extra: &[&str]) -> PathBuf {
        let fx = fixtures_dir();
        let mut args: Vec<String> = vec!["compile".into(), compiler.into(), "-O2".into()];
        args.push(format!("-I{}", fx.display()));
        args.extend(self.arch.cflags().iter().map(|a| a.to_string()));
        args.push("-o".into());
        args.push(self.ps(out));
        for src in srcs {
            let p = if Path::new(src).is_absolute() || src.ends_with(".o") { self.dir.join(src) } else { fx.join(src) };
            args.push(s(p));
        }
        // After the sources, so that libraries (-lm) resolve.
        args.extend(extra.iter().map(|a| a.to_string()));
        let o = Command::new(&product().rckpt).args(&args).current_dir(&self.dir).output().unwrap();
        assert!(
            o.status.success(),
            "rckpt {} failed ({}):\n{}{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let exe = self.p(out);
        assert!(exe.exists(), "rckpt compile did not produce {}", exe.display());
        exe
    }

    /// Run a plain command to completion in the test dir (not a fixture).
    pub fn run_tool(&self, argv: &[String]) -> std::process::Output {
        let o = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv[0]));
        o
    }

    /// Start `argv` in the test directory with stdin from /dev/null and
    /// stdout/stderr going to `LABEL.out` / `LABEL.err` there.
    pub fn spawn(&self, label: &str, argv: &[String]) -> Proc {
        self.spawn_in(label, argv, &self.dir)
    }

    pub fn spawn_in(&self, label: &str, argv: &[String], cwd: &Path) -> Proc {
        self.spawn_with(label, argv, cwd, |_| {})
    }

    pub fn spawn_with(&self, label: &str, argv: &[String], cwd: &Path, tweak: impl FnOnce(&mut Command)) -> Proc {
        let out = self.p(&format!("{label}.out"));
        let err = self.p(&format!("{label}.err"));
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        // SAFETY: only an async-signal-safe system call between fork and
        // exec: descriptors the test harness inherited (jobserver pipes...)
        // must not leak into the fixtures, whose checkpoints would record
        // them.
        unsafe {
            c.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32 /* CLOSE_RANGE_CLOEXEC */);
                Ok(())
            });
        }
        tweak(&mut c);
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", argv.join(" ")));
        Proc { pid: child.id() as i32, child: Some(child), status: None, out, err, label: label.to_string(), argv: argv.join(" ") }
    }

    /// Run to completion (with the timeout) and return the finished Proc.
    pub fn run(&self, label: &str, argv: &[String]) -> Proc {
        let mut p = self.spawn(label, argv);
        p.wait();
        p
    }

    pub fn run_in(&self, label: &str, argv: &[String], cwd: &Path) -> Proc {
        let mut p = self.spawn_in(label, argv, cwd);
        p.wait();
        p
    }

    /// The command line restarting `image` of `prog` (this test's arch).
    pub fn restart_argv(&self, prog: &Path, image: &Path, via: Via, relocatable: bool) -> Vec<String> {
        restart_argv_for(self.arch, prog, image, via, relocatable)
    }

    /// This test's architecture's loader.
    pub fn loader(&self) -> String {
        s(self.arch.loader())
    }

    /// Make the test directory usable by an unprivileged user.
    pub fn open_up(&self) {
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

/// How to restart an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `./prog -_condor_restart FILE`
    Program,
    /// `rckpt-loader FILE`
    Loader,
}

/// The command line that restarts `image` (of program `prog`, compiled
/// for `arch`).
pub fn restart_argv_for(arch: Arch, prog: &Path, image: &Path, via: Via, relocatable: bool) -> Vec<String> {
    match via {
        Via::Program => {
            let mut v = vec![s(prog), "-_condor_restart".into(), s(image)];
            if relocatable {
                v.push("-_condor_relocatable".into());
            }
            v
        }
        Via::Loader => {
            let mut v = vec![s(arch.loader())];
            if relocatable {
                v.push("--relocatable".into());
            }
            v.push(s(image));
            v
        }
    }
}

/// Prefix a command line so it runs as the unprivileged user 65534 (when
/// root; an unprivileged test runner already is one).
pub fn as_nobody(mut argv: Vec<String>) -> Vec<String> {
    if !is_root() {
        return argv;
    }
    argv[0] = reachable_by_nobody(&argv[0]);
    let mut v: Vec<String> = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].iter().map(|x| x.to_string()).collect();
    v.extend(argv);
    v
}

/// A program under the source tree (a loader in target/) may sit below a
/// directory the unprivileged user cannot enter (a checkout in /root):
/// such programs run from a world-readable copy in the temporary directory,
/// refreshed once per test process (the build may have changed them).
fn reachable_by_nobody(prog: &str) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static COPIES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let path = Path::new(prog);
    let Ok(rel) = path.strip_prefix(&product().root) else { return prog.to_string() };
    let mut copies = COPIES.lock().unwrap();
    let copies = copies.get_or_insert_with(HashMap::new);
    if let Some(c) = copies.get(prog) {
        return c.clone();
    }
    let dir = std::env::temp_dir().join("rckpt-nobody-bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(rel.to_string_lossy().replace('/', "_"));
    // Copy under a temporary name and rename: another test process may be
    // running the previous copy.
    let tmp = dir.join(format!(".{}.{}", copy.file_name().unwrap().to_string_lossy(), std::process::id()));
    std::fs::copy(path, &tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &copy).unwrap();
    copies.insert(prog.to_string(), s(&copy));
    s(&copy)
}

/// Prefix a command line with `setarch ARCH -R` (no address randomization).
pub fn no_aslr(arch: Arch, argv: Vec<String>) -> Vec<String> {
    let mut v = vec!["setarch".to_string(), arch.setarch_name().to_string(), "-R".to_string()];
    v.extend(argv);
    v
}

// ---------------------------------------------------------------------------
// Running children

pub struct Proc {
    pub pid: i32,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pub out: PathBuf,
    pub err: PathBuf,
    pub label: String,
    pub argv: String,
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

impl Proc {
    pub fn stdout(&self) -> String {
        read_lossy(&self.out)
    }
    pub fn stderr(&self) -> String {
        read_lossy(&self.err)
    }
    pub fn stdout_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.out).unwrap_or_default()
    }

    /// Everything known about this process, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}] `{}` (pid {}), status {:?}\n--- stdout ({}) ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.argv,
            self.pid,
            self.status,
            self.out.display(),
            tail(&self.stdout(), 3000),
            tail(&self.stderr(), 3000)
        )
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.status = Some(st);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Wait until `cond(stdout, stderr)` holds. Fails (killing the child)
    /// on timeout, or if the child exits first and the condition still
    /// does not hold.
    pub fn wait_until(&mut self, what: &str, cond: impl Fn(&str, &str) -> bool) {
        let start = Instant::now();
        loop {
            let exited = self.poll_exit().is_some();
            if cond(&self.stdout(), &self.stderr()) {
                return;
            }
            if exited {
                panic!("process exited before {what}:\n{}", self.describe());
            }
            if start.elapsed() > TIMEOUT {
                self.kill();
                panic!("timed out waiting for {what}:\n{}", self.describe());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait until stdout contains `needle`.
    pub fn wait_stdout(&mut self, needle: &str) {
        let n = needle.to_string();
        self.wait_until(&format!("{needle:?} on stdout"), move |o, _| o.contains(&n));
    }

    /// Wait until stderr contains `needle`.
    pub fn wait_stderr(&mut self, needle: &str) {
        let n = needle.to_string();
        self.wait_until(&format!("{needle:?} on stderr"), move |_, e| e.contains(&n));
    }

    /// Wait for the fixture's "ready" line.
    pub fn wait_ready(&mut self) {
        self.wait_until("the \"ready\" line", |o, _| o.lines().any(|l| l == "ready"));
    }

    /// Wait until stdout holds at least `n` complete lines.
    pub fn wait_lines(&mut self, n: usize) {
        self.wait_until(&format!("{n} complete lines on stdout"), move |o, _| o.matches('\n').count() >= n);
    }

    pub fn signal(&self, sig: i32) {
        assert!(self.status.is_none(), "signal {sig} to a process that already exited:\n{}", self.describe());
        // SAFETY: kill(2) on our own unreaped child (the PID cannot be reused
        // before we wait for it).
        let r = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed: {}", self.pid, std::io::Error::last_os_error());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.status = Some(st);
            }
        }
    }

    /// Wait for the exit (failing, after killing it, on timeout).
    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.poll_exit() {
                return st;
            }
            if start.elapsed() > TIMEOUT {
                self.kill();
                panic!("timed out waiting for the process to exit:\n{}", self.describe());
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Wait, then assert a normal exit with `code`.
    pub fn expect_exit(&mut self, code: i32) {
        let st = self.wait();
        assert_eq!(st.code(), Some(code), "expected exit status {code}:\n{}", self.describe());
    }

    /// Wait, then assert death by `sig`.
    pub fn expect_signal(&mut self, sig: i32) {
        let st = self.wait();
        assert_eq!(st.signal(), Some(sig), "expected death by signal {sig}:\n{}", self.describe());
    }

    /// SIGTSTP: checkpoint, after which the process must die by SIGUSR2.
    pub fn checkpoint_and_stop(&mut self) {
        self.signal(SIGTSTP);
        self.expect_signal(SIGUSR2);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test: never leave a running child or a zombie behind.
        self.kill();
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Pid and state (`R`, `S`, `Z`, ...) of every process whose parent is
/// `pid`, from `/proc/*/stat` (`/proc/PID/task/*/children` needs
/// CONFIG_PROC_CHILDREN).
pub fn children_of(pid: i32) -> Vec<(i32, char)> {
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else { continue };
        let mut f = stat[close + 1..].split_whitespace();
        let (state, ppid) = (f.next().and_then(|x| x.chars().next()), f.next().and_then(|x| x.parse::<i32>().ok()));
        if let (Some(state), Some(ppid), Ok(child)) = (state, ppid, stat[..close].split(' ').next().unwrap_or("").parse::<i32>()) {
            if ppid == pid {
                v.push((child, state));
            }
        }
    }
    v
}

/// Wait (at most 10 s, far more than a writer needs to end once its image
/// is in place) until the program has no child left: its SIGUSR2 writer has
/// ended and been reaped, not left a zombie.
pub fn wait_writer_reaped(p: &Proc, what: &str) {
    let start = std::time::Instant::now();
    loop {
        let kids = children_of(p.pid);
        if kids.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{what}: the program still has children (pid, state) {kids:?}:\n{}",
            p.describe()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Poll until `path` exists (a checkpoint: rename makes it complete).
pub fn wait_file(p: &mut Proc, path: &Path) {
    let path = path.to_path_buf();
    p.wait_until(&format!("{} to exist", path.display()), move |_, _| path.exists());
}

/// Poll until `path` is a different file than `old` (rename of a new image
/// over an old one changes the inode).
pub fn wait_replaced(p: &mut Proc, path: &Path, old_ino: u64) {
    use std::os::unix::fs::MetadataExt;
    let path = path.to_path_buf();
    p.wait_until(&format!("{} to be replaced", path.display()), move |_, _| path.metadata().map(|m| m.ino() != old_ino).unwrap_or(false));
}

pub fn ino(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    path.metadata().unwrap_or_else(|e| panic!("{}: {e}", path.display())).ino()
}

/// Assert that `text` equals `want`, showing a readable diff point.
#[track_caller]
pub fn assert_text(text: &str, want: &str, what: &str) {
    if text != want {
        let tl: Vec<&str> = text.lines().collect();
        let wl: Vec<&str> = want.lines().collect();
        let i = tl.iter().zip(wl.iter()).position(|(a, b)| a != b).unwrap_or(tl.len().min(wl.len()));
        panic!(
            "{what}: differs at line {} (got {} lines, expected {}):\n  got:      {:?}\n  expected: {:?}\n--- got (tail) ---\n{}\n--- expected (tail) ---\n{}",
            i + 1,
            tl.len(),
            wl.len(),
            tl.get(i),
            wl.get(i),
            tail(text, 1500),
            tail(want, 1500)
        );
    }
}

// ---------------------------------------------------------------------------
// The counter fixture and its round trip (shared by several test files)

/// Lines the counter prints; far more than any test lets it print before
/// opening its gate, so it never finishes early.
pub const N: &str = "20000";

/// Compile the counter and return it with its uninterrupted output.
pub fn counter(t: &T, extra: &[&str]) -> (PathBuf, String) {
    let prog = t.compile("counter", &["counter.c"], extra);
    let gate = t.p("open-gate");
    t.touch(&gate);
    let mut p = t.run("uninterrupted", &[s(&prog), N.into(), s(&gate)]);
    p.expect_exit(0);
    let out = p.stdout();
    assert!(out.starts_with("0 ") && out.contains("\nready\n1 ") && out.contains("\n19999 "), "{}", p.describe());
    assert!(out.ends_with('\n') && out.lines().last().unwrap().starts_with("done "), "{}", p.describe());
    (prog, out)
}

pub type Wrap = fn(Arch, Vec<String>) -> Vec<String>;

pub fn plain(_: Arch, v: Vec<String>) -> Vec<String> {
    v
}

/// The fixture protocol's round trip (see fx.h). A control run, told to go
/// on with SIGWINCH instead of being checkpointed, must print `head`, "go",
/// then `after`; a run stopped with SIGTSTP at "ready" must have printed
/// `head`, and a restart of its image through each of `vias` "restarted",
/// then `after`, with nothing on stderr.
pub fn fixture_roundtrip(t: &T, prog: &Path, head: &str, after: &str, vias: &[Via]) {
    let name = prog.file_name().unwrap().to_string_lossy().to_string();
    let mut c = t.spawn("control", &[s(prog)]);
    c.wait_ready();
    c.signal(SIGWINCH);
    c.expect_exit(0);
    assert_text(&c.stdout(), &format!("{head}go\n{after}"), &format!("{name} without a checkpoint"));

    let img = t.p(&format!("{name}.ckpt"));
    let mut p = t.spawn("orig", &[s(prog), "-_condor_ckpt".into(), s(&img)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    assert_text(&p.stdout(), head, &format!("{name} up to the checkpoint"));
    for (i, &via) in vias.iter().enumerate() {
        let mut r = t.spawn(&format!("restart{i}"), &t.restart_argv(prog, &img, via, false));
        r.expect_exit(0);
        assert_text(&r.stdout(), &format!("restarted\n{after}"), &format!("{name} after a restart ({via:?})"));
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

/// Run the counter, SIGTSTP it after "ready", restart it to completion, and
/// check that both outputs together are the uninterrupted output.
pub fn counter_roundtrip(t: &T, prog: &Path, want: &str, label: &str, run_wrap: Wrap, restart_wrap: Wrap, via: Via) {
    let img = t.p(&format!("{label}.ckpt"));
    let gate = t.p(&format!("{label}.gate"));
    let mut p = t.spawn(&format!("{label}-orig"), &run_wrap(t.arch, vec![s(prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]));
    p.wait_ready();
    p.checkpoint_and_stop();
    assert!(img.exists(), "no checkpoint file {} after SIGTSTP:\n{}", img.display(), p.describe());
    assert!(!t.p(&format!("{label}.ckpt.tmp")).exists(), "{label}.ckpt.tmp left behind");
    let before = p.stdout();
    assert!(want.starts_with(&before), "the original run printed something else:\n{}", p.describe());
    assert!(!before.contains("done"), "the counter finished before the checkpoint:\n{}", p.describe());
    assert_eq!(p.stderr(), "", "the original run printed on stderr:\n{}", p.describe());

    t.touch(&gate);
    let mut r = t.spawn(&format!("{label}-restart"), &restart_wrap(t.arch, t.restart_argv(prog, &img, via, false)));
    r.expect_exit(0);
    assert_ne!(r.pid, p.pid);
    let after = r.stdout();
    assert!(!after.contains("ready"), "main ran again after the restart:\n{}", r.describe());
    assert_text(&format!("{before}{after}"), want, &format!("{label}: original + restarted output"));
    assert_eq!(r.stderr(), "", "the restart printed on stderr:\n{}", r.describe());
}

/// Command-line wrapper running as the unprivileged user (see [`as_nobody`]).
pub fn nobody(_: Arch, v: Vec<String>) -> Vec<String> {
    as_nobody(v)
}

// ---------------------------------------------------------------------------
// Images

pub mod mutate;

pub mod image {
    use rckpt_rt_core::elf::Notes;
    use rckpt_rt_core::format::*;
    use rckpt_rt_core::hash::xxh64;

    /// Offset and length of the PT_NOTE area (ELF64 or ELF32).
    pub fn notes_area(b: &[u8]) -> (usize, usize) {
        assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
        let u16at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as usize;
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
        let (phoff, off, len) = if b[4] == 2 {
            let ph = u64at(32);
            (ph, u64at(ph + 8), u64at(ph + 32))
        } else {
            let ph = u32at(28);
            (ph, u32at(ph + 4), u32at(ph + 16))
        };
        let _ = u16at;
        assert_eq!(u32at(phoff), 4, "the first program header is not PT_NOTE");
        (off, len)
    }

    /// A note: absolute offsets of its header and descriptor, and the
    /// descriptor's length.
    #[derive(Clone, Copy, Debug)]
    pub struct NoteAt {
        pub header: usize,
        pub desc: usize,
        pub len: usize,
        pub ty: u32,
    }

    pub fn notes(b: &[u8]) -> Vec<(Vec<u8>, NoteAt)> {
        let (off, len) = notes_area(b);
        let area = &b[off..off + len];
        let base = area.as_ptr() as usize;
        Notes::new(area)
            .map(|n| {
                (
                    n.name.to_vec(),
                    NoteAt { header: off + n.header_at, desc: off + (n.desc.as_ptr() as usize - base), len: n.desc.len(), ty: n.ty },
                )
            })
            .collect()
    }

    pub fn find_note(b: &[u8], name: &[u8], ty: u32) -> Option<NoteAt> {
        notes(b).into_iter().find(|(n, a)| n == name && a.ty == ty).map(|(_, a)| a)
    }

    /// Recompute the head's seal over everything before the seal note, and
    /// the trailer's, which is seeded with it.
    pub fn reseal(b: &mut [u8]) {
        let seal = find_note(b, NOTE_RCKPT, NT_RCKPT_SEAL).expect("image has no seal note");
        let h = xxh64(&b[..seal.header], SEAL_SEED);
        b[seal.desc..seal.desc + 8].copy_from_slice(&h.to_le_bytes());
        reseal_trailer(b);
    }

    /// Offset and length of the trailer (the second PT_NOTE), if the
    /// program headers still say where it is.
    pub fn trailer_area(b: &[u8]) -> Option<(usize, usize)> {
        let word = |o: usize, n: usize| -> Option<usize> {
            let v = b.get(o..o + n)?;
            Some(if n == 8 { u64::from_le_bytes(v.try_into().ok()?) as usize } else { u32::from_le_bytes(v.try_into().ok()?) as usize })
        };
        let (off, len) = if b.get(4) == Some(&2) {
            let ph = word(32, 8)?.checked_add(56)?;
            (word(ph.checked_add(8)?, 8)?, word(ph.checked_add(32)?, 8)?)
        } else {
            let ph = word(28, 4)?.checked_add(32)?;
            (word(ph.checked_add(4)?, 4)?, word(ph.checked_add(16)?, 4)?)
        };
        b.get(off..off.checked_add(len)?)?;
        Some((off, len))
    }

    /// The trailer's notes: (sums descriptor offset, end note header
    /// offset, end descriptor offset), absolute.
    fn trailer_notes(b: &[u8]) -> Option<(usize, usize, usize)> {
        let (off, len) = trailer_area(b)?;
        let area = &b[off..off + len];
        let base = area.as_ptr() as usize;
        let v: Vec<(usize, usize)> = Notes::new(area).map(|n| (off + n.header_at, off + (n.desc.as_ptr() as usize - base))).collect();
        (v.len() == 2).then(|| (v[0].1, v[1].0, v[1].1))
    }

    /// Recompute the trailer's end seal (seeded with the head's seal); a
    /// trailer the program headers no longer lead to is left alone.
    pub fn reseal_trailer(b: &mut [u8]) {
        let Some(seal) = find_note(b, NOTE_RCKPT, NT_RCKPT_SEAL) else { return };
        let head = u64::from_le_bytes(b[seal.desc..seal.desc + 8].try_into().unwrap());
        let (Some((off, _)), Some((_, end_hdr, end_desc))) = (trailer_area(b), trailer_notes(b)) else { return };
        if end_desc + 8 > b.len() {
            return;
        }
        let h = xxh64(&b[off..end_hdr], head);
        b[end_desc..end_desc + 8].copy_from_slice(&h.to_le_bytes());
    }

    /// The run table (NT_RCKPT_RUNS), in file order.
    pub fn runs(b: &[u8]) -> Vec<RunDesc> {
        let n = find_note(b, NOTE_RCKPT, NT_RCKPT_RUNS).expect("image has no run table");
        let sz = core::mem::size_of::<RunDesc>();
        (0..n.len / sz).map(|i| pod_read(b, n.desc + i * sz).unwrap()).collect()
    }

    /// The runs of segment (or, from `nseg` on, ghost file) `owner`.
    pub fn runs_of(b: &[u8], owner: usize) -> Vec<RunDesc> {
        runs(b).into_iter().filter(|r| r.owner as usize == owner).collect()
    }

    /// The checksum the trailer holds for `owner`.
    pub fn sum(b: &[u8], owner: usize) -> u64 {
        let (sums, _, _) = trailer_notes(b).expect("no trailer");
        u64::from_le_bytes(b[sums + 8 * owner..sums + 8 * owner + 8].try_into().unwrap())
    }

    /// Put `v` as `owner`'s checksum in the trailer, and reseal it.
    pub fn set_sum(b: &mut [u8], owner: usize, v: u64) {
        let Some((sums, _, _)) = trailer_notes(b) else { return };
        if let Some(dst) = b.get_mut(sums + 8 * owner..sums + 8 * owner + 8) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        reseal_trailer(b);
    }

    /// What `owner`'s checksum is for the data its runs hold now (bytes
    /// past the end of the file count as missing).
    pub fn compute_sum(b: &[u8], owner: usize) -> u64 {
        let mut sum = rckpt_rt_core::hash::SegSum::default();
        for r in runs_of(b, owner) {
            let s = (r.file_off as usize).min(b.len());
            let e = (r.file_off.saturating_add(r.len) as usize).min(b.len()).max(s);
            sum.add_pages(r.offset / 4096, &b[s..e]);
        }
        sum.0
    }

    pub fn header(b: &[u8]) -> ImageHeader {
        let n = find_note(b, NOTE_RCKPT, NT_RCKPT_HEADER).expect("image has no header note");
        pod_read(b, n.desc).expect("header note too short")
    }

    /// Change the rckpt header and reseal.
    pub fn patch_header(b: &mut [u8], f: impl FnOnce(&mut ImageHeader)) {
        let n = find_note(b, NOTE_RCKPT, NT_RCKPT_HEADER).expect("image has no header note");
        let mut h: ImageHeader = pod_read(b, n.desc).unwrap();
        f(&mut h);
        b[n.desc..n.desc + core::mem::size_of::<ImageHeader>()].copy_from_slice(pod_bytes(&h));
        reseal(b);
    }

    /// The segment table (NT_RCKPT_SEGS).
    pub fn segments(b: &[u8]) -> Vec<SegDesc> {
        let n = find_note(b, NOTE_RCKPT, NT_RCKPT_SEGS).expect("image has no segment table");
        let sz = core::mem::size_of::<SegDesc>();
        (0..n.len / sz).map(|i| pod_read(b, n.desc + i * sz).unwrap()).collect()
    }

    /// The first segment that stores data, and the file offset of its first
    /// non-zero byte.
    pub fn first_data_byte(b: &[u8]) -> (usize, usize) {
        runs(b)
            .iter()
            .filter(|r| (r.owner as usize) < segments(b).len())
            .find_map(|r| {
                let range = r.file_off as usize..(r.file_off + r.len) as usize;
                b[range.clone()].iter().position(|&x| x != 0).map(|k| (r.owner as usize, range.start + k))
            })
            .expect("no segment with data")
    }

    /// The file offset of the last non-zero byte of segment `i`'s data.
    pub fn last_data_byte(b: &[u8], i: usize) -> usize {
        runs_of(b, i)
            .iter()
            .rev()
            .find_map(|r| {
                let range = r.file_off as usize..(r.file_off + r.len) as usize;
                b[range.clone()].iter().rposition(|&x| x != 0).map(|k| range.start + k)
            })
            .expect("segment without data")
    }
}
