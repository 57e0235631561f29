//! Fuzzing the image reader: damaged and lying images must be refused,
//! never crash a reader, and get the same verdict from `rckpt info` and
//! `rckpt-loader --check`; an image `--check` accepts must restore.
//!
//! Why a hand-written mutation loop (with `fastrand`, already in the
//! lock file through `tempfile`) and not cargo-fuzz, bolero or proptest:
//! cargo-fuzz needs nightly, which we do not have; bolero on stable is a
//! random-input engine without coverage feedback, so it adds nothing here
//! but a dependency tree, and proptest's shrinking would re-run
//! subprocesses and restarts for minutes per failure. What finds bugs in
//! this reader is knowing the format: the mutations ([`common::mutate`])
//! are structure-aware (program headers, notes, segment table, header
//! fields, with the seal and segment checksums recomputed so that the
//! lies get past the integrity checks), each is reproducible from the run
//! seed and its number, and a failing mutant is saved to a file.
//!
//! One test, in three phases sharing the time budget, on seeds made at
//! test time (the counter fixture, x86_64 and, when available, i386):
//!
//! 1. in process (30%): `Image::parse` then `verify_stream` (every run,
//!    the trailer), exactly as `rckpt info` reads a file, must not panic;
//! 2. out of process (40%): `rckpt info --json` and `LOADER --check
//!    --relocatable` must exit 0 or 1, not by a signal, never print
//!    "internal error" or "panicked", and agree, except where the loader
//!    refuses for a reason about this machine ([`MACHINE_REASONS`]);
//! 3. restarts (30%, at most `RCKPT_FUZZ_RESTARTS` per class): a
//!    structural lie `--check` accepts is restarted (`LOADER
//!    --relocatable`). The loader must never fail "after the point of no
//!    return", exit 3, hang, or refuse what `--check` accepted. If the
//!    lie is one a validator can see in the image (an address the loader
//!    uses, a segment at 0, past the top, overlapping, a bad prot or
//!    kind, the vDSO layout: `Mutant::detectable`), the program must also
//!    finish with exactly the uninterrupted output and exit 0; a lie that
//!    describes a consistent process (code moved to free space, a heap
//!    made read-only) may crash the restored program: that is a faithful
//!    restore of what the image says.
//!
//! Environment: `RCKPT_FUZZ_SECS` (default 60) bounds the whole run,
//! seed-making included; `RCKPT_FUZZ_SEED` sets the RNG seed (printed at
//! the start); `RCKPT_FUZZ_RESTARTS` (default 30). Mutant N of phase P
//! draws from its own RNG seeded by (seed, P, N), so it is the same in any
//! run with the same seed (the seed images themselves differ from run to
//! run: addresses are random). A failure prints the seed, the mutant's
//! number and the mutation in words, and saves the mutant under the
//! test's temporary directory, which is then kept.
//!
//!     cargo test --release --test fuzz -- --nocapture      # CI: 60 s
//!     cargo make fuzz                                      # 15 minutes
//!     RCKPT_FUZZ_SEED=123 RCKPT_FUZZ_SECS=30 cargo test --release --test fuzz -- --nocapture
//!
//! `cargo test --test fuzz` (debug) also turns arithmetic overflow in the
//! in-process reader into a panic, which a release build lets wrap.
//! Each distinct failure found so far is pinned in `tests/fuzz_regressions.rs`.

#[allow(unused_macros)]
mod common;

use common::mutate::{seed, Mutant, Seed};
use common::*;
use rckpt_rt_core::image::{self, Image};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Config {
    secs: u64,
    seed: u64,
    restarts: usize,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

impl Config {
    fn from_env() -> Config {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        Config {
            secs: env_u64("RCKPT_FUZZ_SECS").unwrap_or(60),
            seed: env_u64("RCKPT_FUZZ_SEED").unwrap_or(now.as_nanos() as u64 % 1_000_000_007),
            restarts: env_u64("RCKPT_FUZZ_RESTARTS").unwrap_or(30) as usize,
        }
    }
}

/// The RNG of mutant `n` of phase `phase`.
fn rng_for(seed: u64, phase: u64, n: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ phase.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

// ---------------------------------------------------------------------------
// Failures: grouped by a key, the first of each kept with its mutant file

struct Report {
    seed: u64,
    /// key -> (count, the first occurrence in words)
    failures: BTreeMap<String, (usize, String)>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn fail(&mut self, t: &T, s: &Seed, phase: &str, n: u64, m: &Mutant, bytes: &[u8], key: String, what: String) {
        let key = format!("{} {phase}: {} : {key}", s.arch.name(), m.kind());
        let next = self.failures.len();
        let e = self.failures.entry(key).or_insert_with(|| {
            let saved = t.p(&format!("failure-{next}.ckpt"));
            std::fs::write(&saved, bytes).unwrap();
            let text = format!(
                "RCKPT_FUZZ_SEED={} {} mutant #{n} of the {phase} phase: {}\n  {what}\n  mutant saved as {}",
                self.seed,
                s.arch.name(),
                m.describe(&s.layout),
                saved.display()
            );
            eprintln!("FAILURE {text}");
            (0, text)
        });
        e.0 += 1;
    }
}

/// Replace the mutant's path and numbers, so that one bug is one key.
fn normalize(msg: &str, img: &Path) -> String {
    let msg = msg.replace(&format!("{}:", img.display()), "IMG:");
    let mut out = String::new();
    let mut in_num = false;
    for c in msg.chars() {
        let digit = c.is_ascii_hexdigit() && (in_num || c.is_ascii_digit());
        if digit || (in_num && c == 'x') {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Phase 1: in process

static PANIC_MSG: Mutex<String> = Mutex::new(String::new());

/// Read `bytes` as `rckpt info` does (`src/info.rs::run`): the head read
/// in steps from the file `path`, parsed, then the data and trailer
/// verified in the same pass. Ok(verdict) or Err(panic).
fn read_in_process(bytes: &[u8], path: &Path) -> Result<bool, String> {
    let r = std::panic::catch_unwind(|| {
        let len = bytes.len() as u64;
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::open(path).unwrap();
        let mut input = image::Input { fd: file.as_raw_fd(), pos: 0 };
        let mut head = vec![0u8; image::MAX_HEAD as usize];
        let Ok(head) = image::read_head(&mut input, &mut head, len) else { return false };
        let Ok(img) = Image::parse(head, len) else { return false };
        let mut sums = vec![0u64; img.nseg() + img.nghosts()];
        image::verify_stream(&img, &mut input, &mut sums, &mut vec![0u8; 1 << 20]).is_ok()
    });
    r.map_err(|_| std::mem::take(&mut *PANIC_MSG.lock().unwrap()))
}

fn in_process(seeds: &[(T, Seed)], cfg: &Config, until: Instant, report: &mut Report) -> u64 {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| *PANIC_MSG.lock().unwrap() = info.to_string()));
    let mut n = 0;
    while Instant::now() < until {
        let (t, s) = &seeds[n as usize % seeds.len()];
        let m = Mutant::random(&mut rng_for(cfg.seed, 1, n), &s.bytes, &s.layout, false);
        let bytes = m.apply(&s.bytes, &s.layout);
        if let Err(panic) = read_in_process(&bytes, &t.p("inproc.ckpt")) {
            let key = normalize(panic.lines().next().unwrap_or(""), Path::new("/"));
            report.fail(t, s, "in-process", n, &m, &bytes, format!("panicked: {key}"), format!("the reader panicked: {panic}"));
        }
        n += 1;
    }
    std::panic::set_hook(hook);
    n
}

// ---------------------------------------------------------------------------
// Phase 2: out of process

/// How a command ended and what it printed.
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// The reason of a refusal: the stderr line, or the integrity verdict
    /// `rckpt info --json` prints when only a checksum fails.
    fn reason(&self) -> String {
        if let Some(l) = self.stderr.lines().next() {
            return l.to_string();
        }
        serde_json::from_str::<serde_json::Value>(&self.stdout)
            .ok()
            .and_then(|v| v["integrity"].as_str().map(|s| format!("integrity: {s}")))
            .unwrap_or_default()
    }
}

/// Run `argv` in `dir` with output to files there, killed after `timeout`.
fn run_bounded(dir: &Path, label: &str, argv: &[String], timeout: Duration) -> Outcome {
    let (out, err) = (dir.join(format!("{label}.out")), dir.join(format!("{label}.err")));
    let mut c = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv[0]));
    let start = Instant::now();
    let (st, timed_out) = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break (st, false);
        }
        if start.elapsed() > timeout {
            let _ = c.kill();
            break (c.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Outcome { code: st.code(), signal: st.signal(), stdout: read(&out), stderr: read(&err), timed_out }
}

/// Refusals about this machine, not the image, which `rckpt info` cannot
/// know about: `--check` may refuse these where `info` accepts.
const MACHINE_REASONS: [&str; 6] = [
    "image needs CPU features this machine lacks",
    "-byte xsave area; this CPU has",
    "image is for ",
    "the vDSO of this kernel differs",
    "cannot reopen fd ",
    "cannot map ",
];

/// A crash of one reader, if it had one.
fn crash(o: &Outcome) -> Option<String> {
    if o.timed_out {
        Some("hung".into())
    } else if let Some(sig) = o.signal {
        Some(format!("killed by signal {sig}"))
    } else if !matches!(o.code, Some(0 | 1)) {
        Some(format!("exit status {:?}", o.code))
    } else if o.stderr.contains("internal error") || o.stderr.contains("panicked") {
        Some("internal error".into())
    } else {
        None
    }
}

fn info_argv(img: &Path) -> Vec<String> {
    vec![s(&product().rckpt), "info".into(), "--json".into(), s(img)]
}

fn check_argv(s: &Seed, img: &Path) -> Vec<String> {
    vec![common::s(s.arch.loader()), "--check".into(), "--relocatable".into(), common::s(img)]
}

/// Both readers on one mutant; a crash or a disagreement is reported.
/// Returns whether `--check` accepted it.
fn both_readers(t: &T, s: &Seed, n: u64, m: &Mutant, bytes: &[u8], report: &mut Report) -> bool {
    let img = t.p("mutant.ckpt");
    std::fs::write(&img, bytes).unwrap();
    let info = run_bounded(&t.dir, "info", &info_argv(&img), Duration::from_secs(30));
    let check = run_bounded(&t.dir, "check", &check_argv(s, &img), Duration::from_secs(30));
    let show = |o: &Outcome| format!("status {:?} signal {:?}: {}", o.code, o.signal, o.reason());
    for (who, o) in [("rckpt info", &info), ("rckpt-loader --check", &check)] {
        if let Some(c) = crash(o) {
            let first: Vec<&str> = o.stderr.lines().take(3).collect();
            let what = format!("{who} {c}: {}", first.join(" / "));
            report.fail(t, s, "out-of-process", n, m, bytes, format!("{who} {c}"), what);
        }
    }
    let machine = !check.ok() && MACHINE_REASONS.iter().any(|r| check.stderr.contains(r));
    if crash(&info).is_none() && crash(&check).is_none() && info.ok() != check.ok() && !machine {
        let (acc, refuser) = if info.ok() { ("info accepts, --check refuses", &check) } else { ("--check accepts, info refuses", &info) };
        let key = format!("{acc}: {}", normalize(&refuser.reason(), &img));
        let what = format!("{acc}\n  info:    {}\n  --check: {}", show(&info), show(&check));
        report.fail(t, s, "out-of-process", n, m, bytes, key, what);
    }
    check.ok()
}

fn out_of_process(seeds: &[(T, Seed)], cfg: &Config, until: Instant, report: &mut Report) -> u64 {
    let mut n = 0;
    while Instant::now() < until {
        let (t, s) = &seeds[n as usize % seeds.len()];
        let m = Mutant::random(&mut rng_for(cfg.seed, 2, n), &s.bytes, &s.layout, false);
        let bytes = m.apply(&s.bytes, &s.layout);
        both_readers(t, s, n, &m, &bytes, report);
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------
// Phase 3: restarts of lies that --check accepts

/// Restart an accepted mutant; `None` if it restored correctly. With
/// `faithful` (a lie the image cannot be caught in, see
/// [`Mutant::detectable`]) the restored program may die by a signal or
/// print something else: only the loader's own failures count.
fn restart_failure(t: &T, s: &Seed, img: &Path, faithful: bool) -> Option<(String, String)> {
    let argv = vec![common::s(s.arch.loader()), "--relocatable".into(), common::s(img)];
    let o = run_bounded(&t.dir, "restart", &argv, Duration::from_secs(20));
    let after = &s.want[s.before.len()..];
    let noise = o.stderr.lines().filter(|l| !l.starts_with("rckpt: warning") && !l.starts_with("rckpt: notice")).count();
    let key = if o.stderr.contains("after the point of no return") {
        format!("failed after the point of no return: {}", normalize(o.stderr.lines().next().unwrap_or(""), img))
    } else if o.timed_out || o.code == Some(3) || o.stderr.contains("internal error") {
        format!("loader {}", crash(&o).unwrap_or_default())
    } else if o.code == Some(1) && o.stdout.is_empty() && o.stderr.starts_with("rckpt-loader: ") {
        format!("refused what --check accepted: {}", normalize(&o.reason(), img))
    } else if faithful {
        return None;
    } else if let Some(c) = crash(&o) {
        format!("restarted process {c}")
    } else if o.stdout != after {
        "restarted process printed something else".to_string()
    } else if noise > 0 {
        format!("restarted process printed on stderr: {}", normalize(o.stderr.lines().next().unwrap_or(""), img))
    } else {
        return None;
    };
    let what = format!(
        "--check accepted it, the restart: status {:?} signal {:?}\n  stderr: {}\n  stdout (tail): {:?}",
        o.code,
        o.signal,
        tail(o.stderr.trim_end(), 500),
        tail(&o.stdout, 200)
    );
    Some((key, what))
}

fn restarts(seeds: &[(T, Seed)], cfg: &Config, until: Instant, report: &mut Report) -> (u64, u64) {
    let mut done = vec![0; seeds.len()];
    let mut n = 0;
    while Instant::now() < until && done.iter().any(|&d| d < cfg.restarts) {
        let k = n as usize % seeds.len();
        let (t, s) = &seeds[k];
        let m = Mutant::random(&mut rng_for(cfg.seed, 3, n), &s.bytes, &s.layout, true);
        n += 1;
        if done[k] >= cfg.restarts {
            continue;
        }
        let bytes = m.apply(&s.bytes, &s.layout);
        if both_readers(t, s, n - 1, &m, &bytes, report) {
            done[k] += 1;
            let limit = if s.arch == Arch::I386 { 1 << 32 } else { 1 << 47 };
            let faithful = !m.detectable(&s.layout, limit);
            if let Some((key, what)) = restart_failure(t, s, &t.p("mutant.ckpt"), faithful) {
                report.fail(t, s, "restart", n - 1, &m, &bytes, key, what);
            }
        }
    }
    (n, done.iter().sum::<usize>() as u64)
}

// ---------------------------------------------------------------------------

fn seeds() -> Vec<(T, Seed)> {
    let mut v = Vec::new();
    for arch in [Arch::X86_64, Arch::I386] {
        if arch == Arch::I386 && !arch.available() {
            continue;
        }
        let t = T::new("fuzz", arch);
        let sd = seed(&t);
        // The seed itself must pass every check and restore.
        let img = sd.img.clone();
        let mut report = Report { seed: 0, failures: BTreeMap::new() };
        let m = Mutant::new(common::mutate::Mutation::Truncate { len: sd.bytes.len() }, false);
        both_readers(&t, &sd, 0, &m, &sd.bytes, &mut report);
        assert!(report.failures.is_empty(), "the seed image {} is not accepted: {:?}", img.display(), report.failures);
        assert!(restart_failure(&t, &sd, &t.p("mutant.ckpt"), false).is_none(), "the seed image {} does not restore", img.display());
        v.push((t, sd));
    }
    v
}

#[test]
fn fuzz_image_reader() {
    let cfg = Config::from_env();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(cfg.secs);
    eprintln!("fuzz: RCKPT_FUZZ_SEED={} RCKPT_FUZZ_SECS={} RCKPT_FUZZ_RESTARTS={}", cfg.seed, cfg.secs, cfg.restarts);
    let seeds = seeds();
    let mut report = Report { seed: cfg.seed, failures: BTreeMap::new() };
    let left = deadline.saturating_duration_since(Instant::now());
    let t0 = Instant::now();
    let n1 = in_process(&seeds, &cfg, t0 + left.mul_f64(0.3), &mut report);
    let d1 = t0.elapsed();
    let n2 = out_of_process(&seeds, &cfg, t0 + left.mul_f64(0.7), &mut report);
    let d2 = t0.elapsed() - d1;
    let (n3, r3) = restarts(&seeds, &cfg, deadline, &mut report);
    let d3 = t0.elapsed() - d1 - d2;
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    eprintln!(
        "fuzz: seeds in {:.1} s; in-process {n1} mutants in {:.1} s ({:.0}/s); out-of-process {n2} in {:.1} s ({:.1}/s); \
         restart phase {n3} lies checked, {r3} restarted, in {:.1} s",
        (t0 - start).as_secs_f64(),
        d1.as_secs_f64(),
        rate(n1, d1),
        d2.as_secs_f64(),
        rate(n2, d2),
        d3.as_secs_f64()
    );
    if report.failures.is_empty() {
        return;
    }
    let mut text = format!("{} distinct failures (RCKPT_FUZZ_SEED={}):\n", report.failures.len(), cfg.seed);
    for (key, (count, first)) in &report.failures {
        text.push_str(&format!("\n[{count}x] {key}\n  {first}\n"));
    }
    // Keep the temporary directories: they hold the failing mutants.
    let dirs: Vec<PathBuf> = seeds.iter().map(|(t, _)| t.dir.clone()).collect();
    std::mem::forget(seeds);
    panic!("{text}\nmutants kept in {dirs:?}");
}
