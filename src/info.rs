//! `rckpt info [--json] FILE`: what an image holds (program, architecture,
//! when, segments and sizes, open files, signal state) and whether it is
//! intact, checked by the same reader the loader uses.

use rckpt_rt_core::elf::{self, Class};
use rckpt_rt_core::format::*;
use rckpt_rt_core::image::{self, Image, ImageError};
use rckpt_rt_core::line::Line;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::path::Path;

fn describe(e: ImageError) -> String {
    let mut l = Line::new();
    e.describe(&mut l);
    String::from_utf8_lossy(l.as_bytes()).into_owned()
}

const SIGNAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

fn signame(s: usize) -> String {
    match s {
        1..=31 => SIGNAMES[s - 1].to_string(),
        _ => format!("SIGRT{}", s as i64 - 34),
    }
}

fn sigset(mask: u64) -> Vec<String> {
    (1..=64).filter(|s| mask & (1u64 << (s - 1)) != 0).map(signame).collect()
}

/// UTC date and time from seconds since the epoch (civil-from-days).
fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

fn prot(p: u32) -> String {
    format!("{}{}{}", if p & 1 != 0 { 'r' } else { '-' }, if p & 2 != 0 { 'w' } else { '-' }, if p & 4 != 0 { 'x' } else { '-' })
}

fn open_flags(f: u32) -> String {
    let mut v = vec![match f & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (bit, name) in [(0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o2000000, "O_CLOEXEC"), (0o200000, "O_DIRECTORY")] {
        if f & bit != 0 {
            v.push(name);
        }
    }
    v.join("|")
}

fn size(b: u64) -> String {
    if b >= 10 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 10 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", b >> 10)
    }
}

/// File names of mappings from NT_FILE, by start address.
fn file_names(img: &Image) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for n in img.all_notes() {
        if n.name != NOTE_CORE || n.ty != NT_FILE {
            continue;
        }
        let w = img.class.word();
        let rd = |o: usize| elf::rd_word(n.desc, o, img.class).unwrap_or(0);
        let count = rd(0) as usize;
        let names_at = 2 * w + count * 3 * w;
        let mut names = n.desc.get(names_at..).unwrap_or(&[]).split(|&c| c == 0);
        for i in 0..count {
            let start = rd(2 * w + i * 3 * w);
            let name = names.next().unwrap_or(&[]);
            out.push((start, String::from_utf8_lossy(name).into_owned()));
        }
    }
    out
}

/// Program name and arguments from NT_PRPSINFO.
fn psinfo(img: &Image) -> (String, String) {
    for n in img.all_notes() {
        if n.name == NOTE_CORE && n.ty == NT_PRPSINFO {
            // fname[16] and psargs[80] are the last 96 bytes.
            if n.desc.len() >= 96 {
                let tail = &n.desc[n.desc.len() - 96..];
                let s = |b: &[u8]| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).trim().to_string();
                return (s(&tail[..16]), s(&tail[16..]));
            }
        }
    }
    (String::new(), String::new())
}

fn xfeature_names(mask: u64) -> Vec<&'static str> {
    const NAMES: [(u32, &str); 12] = [
        (0, "x87"),
        (1, "SSE"),
        (2, "AVX"),
        (3, "MPX-BNDREGS"),
        (4, "MPX-BNDCSR"),
        (5, "AVX-512-opmask"),
        (6, "AVX-512-ZMM_Hi256"),
        (7, "AVX-512-Hi16_ZMM"),
        (9, "PKRU"),
        (11, "CET-U"),
        (17, "AMX-TILECFG"),
        (18, "AMX-TILEDATA"),
    ];
    NAMES.iter().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, n)| *n).collect()
}

pub fn run(path: &Path, json_out: bool) -> Result<i32, String> {
    // `-`: the image comes on standard input (a pipe, a socket), read in
    // one pass like any image.
    let stdin = path.as_os_str() == "-";
    let file = if stdin { None } else { Some(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?) };
    let fd = file.as_ref().map_or(0, |f| f.as_raw_fd());
    let meta = file.as_ref().map(|f| f.metadata()).transpose().map_err(|e| format!("{}: {e}", path.display()))?;
    let len = meta.as_ref().filter(|m| m.is_file()).map_or(u64::MAX, |m| m.len());
    let shown = if stdin { "standard input".to_string() } else { path.display().to_string() };
    // The same head the loader reads, the same validation, the same
    // checksums in the same single pass: the same verdict.
    let mut input = image::Input { fd, pos: 0 };
    let mut head = vec![0u8; image::MAX_HEAD as usize];
    let head = image::read_head(&mut input, &mut head, len).map_err(|e| format!("{shown}: {}", describe(e)))?;
    let img = Image::parse(head, len).map_err(|e| format!("{shown}: {}", describe(e)))?;
    let h = img.header;
    let mut sums = vec![0u64; img.nseg() + img.nghosts()];
    let integrity = image::verify_stream(&img, &mut input, &mut sums, &mut vec![0u8; 1 << 20]).map_err(describe);
    let len = if len == u64::MAX { input.pos } else { len };
    let ghosts: Vec<Value> = (0..img.nghosts())
        .filter_map(|i| img.ghost(i))
        .map(|(d, p)| {
            json!({
                "path": String::from_utf8_lossy(p),
                "size": d.size,
                "stored": d.stored,
                "memfd": d.flags & ghost_flags::MEMFD != 0,
            })
        })
        .collect();

    let names = file_names(&img);
    let (prog, args) = psinfo(&img);
    let segs: Vec<Value> = (0..img.nseg())
        .map(|i| {
            let d = img.seg(i);
            let name = match d.kind {
                seg_kind::HEAP => "[heap]".to_string(),
                seg_kind::STACK => "[stack]".to_string(),
                _ => names.iter().find(|(s, _)| *s == d.vaddr).map(|(_, n)| n.clone()).unwrap_or_default(),
            };
            json!({
                "start": format!("{:#x}", d.vaddr),
                "end": format!("{:#x}", d.vaddr + d.len),
                "size": d.len,
                "stored": d.stored,
                "prot": prot(d.prot),
                "kind": seg_kind::name(d.kind),
                "name": name,
            })
        })
        .collect();
    let fds: Vec<Value> = img
        .fds()
        .map(|(d, p)| {
            json!({
                "fd": d.fd,
                "kind": fd_kind::name(d.kind),
                "path": String::from_utf8_lossy(p),
                "flags": open_flags(d.flags),
                "offset": d.pos,
                "restored": d.fd > 2 && d.kind != fd_kind::OTHER,
                "ghost": if d.kind == fd_kind::GHOST { json!(d.ghost) } else { Value::Null },
            })
        })
        .collect();
    let handlers: Vec<Value> = (1..=64)
        .filter_map(|s| {
            let d = img.sig(s);
            match d.handler {
                0 => None,
                1 => Some(json!({"signal": signame(s), "action": "ignore"})),
                a => Some(json!({"signal": signame(s), "action": "handler", "address": format!("{a:#x}")})),
            }
        })
        .collect();
    let mapped: u64 = (0..img.nseg()).map(|i| img.seg(i).len).sum();
    let stored: u64 = (0..img.nseg()).map(|i| img.seg(i).stored).sum();
    let arch = machine_name(h.machine);
    let comm = String::from_utf8_lossy(h.comm.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    let disk = {
        use std::os::unix::fs::MetadataExt;
        meta.as_ref().map_or(len, |m| m.blocks() * 512)
    };
    let v = json!({
        "file": shown,
        "program": if prog.is_empty() { comm } else { prog },
        "args": args,
        "arch": arch,
        "class": match img.class { Class::Elf32 => "ELF32", Class::Elf64 => "ELF64" },
        "format_version": h.version,
        "time": h.time_sec,
        "time_utc": utc(h.time_sec),
        "signal": signame(h.signal as usize),
        "pid": h.pid,
        "generation": h.generation,
        "cwd": String::from_utf8_lossy(img.cwd),
        "umask": format!("{:03o}", h.umask),
        "xsave_bytes": h.xsave_len,
        "cpu_features": xfeature_names(h.xfeatures),
        "segments": segs,
        "mapped_bytes": mapped,
        "stored_bytes": stored,
        "file_bytes": len,
        "disk_bytes": disk,
        "open_files": fds,
        "ghost_files": ghosts,
        "signal_handlers": handlers,
        "blocked": sigset(h.blocked),
        "pending": sigset(h.pending),
        "timers": img
            .timers()
            .iter()
            .zip(TIMER_NAMES)
            .filter(|(t, _)| t.value_us != 0)
            .map(|(t, name)| json!({ "timer": name, "left_us": t.value_us, "interval_us": t.interval_us }))
            .collect::<Vec<_>>(),
        "integrity": match &integrity { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_text(&v);
    }
    Ok(if integrity.is_ok() { 0 } else { 1 })
}

fn print_text(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    println!("rckpt image {}", s("file"));
    println!("  program      {}   ({})", s("program"), s("args"));
    println!("  arch         {} ({} core file, format version {})", s("arch"), s("class"), v["format_version"]);
    println!("  taken        {} on {}, pid {}, restart generation {}", s("time_utc"), s("signal"), v["pid"], v["generation"]);
    println!("  cwd          {}   (umask {})", s("cwd"), s("umask"));
    let feats: Vec<&str> = v["cpu_features"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    println!("  cpu state    {} xsave bytes; {}", v["xsave_bytes"], feats.join(" "));
    let segs = v["segments"].as_array().cloned().unwrap_or_default();
    println!(
        "  segments     {} mapped, {} stored; file {} apparent, {} on disk ({} segments)",
        size(v["mapped_bytes"].as_u64().unwrap_or(0)),
        size(v["stored_bytes"].as_u64().unwrap_or(0)),
        size(v["file_bytes"].as_u64().unwrap_or(0)),
        size(v["disk_bytes"].as_u64().unwrap_or(0)),
        segs.len()
    );
    for g in &segs {
        println!(
            "    {:>18} {:>18} {} {:<6} {:>10} stored  {}",
            g["start"].as_str().unwrap_or(""),
            g["end"].as_str().unwrap_or(""),
            g["prot"].as_str().unwrap_or(""),
            g["kind"].as_str().unwrap_or(""),
            size(g["stored"].as_u64().unwrap_or(0)),
            g["name"].as_str().unwrap_or("")
        );
    }
    println!("  open files");
    for f in v["open_files"].as_array().cloned().unwrap_or_default() {
        println!(
            "    fd {:<3} {:<8} {}  {} offset {}{}",
            f["fd"],
            f["kind"].as_str().unwrap_or(""),
            f["path"].as_str().unwrap_or(""),
            f["flags"].as_str().unwrap_or(""),
            f["offset"],
            if f["restored"].as_bool() == Some(true) {
                ""
            } else if f["fd"].as_i64().unwrap_or(0) <= 2 {
                "  (taken from the restarting environment)"
            } else {
                "  (not restored)"
            }
        );
    }
    let ghosts = v["ghost_files"].as_array().cloned().unwrap_or_default();
    if !ghosts.is_empty() {
        println!("  deleted files (saved in the image, recreated on restart)");
        for (i, g) in ghosts.iter().enumerate() {
            println!(
                "    ghost {i:<3} {}{}  {} bytes, {} stored",
                g["path"].as_str().unwrap_or(""),
                if g["memfd"].as_bool() == Some(true) { " (memfd)" } else { "" },
                g["size"],
                size(g["stored"].as_u64().unwrap_or(0)),
            );
        }
    }
    let hs: Vec<String> = v["signal_handlers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| format!("{}:{}", h["signal"].as_str().unwrap_or(""), h["action"].as_str().unwrap_or("")))
        .collect();
    println!("  signals      {}", hs.join(" "));
    let list = |k: &str| -> String {
        let a: Vec<&str> = v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        if a.is_empty() {
            "none".into()
        } else {
            a.join(" ")
        }
    };
    println!("  blocked      {}", list("blocked"));
    println!("  pending      {}", list("pending"));
    let timers: Vec<String> = v["timers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let secs = |k: &str| t[k].as_u64().unwrap_or(0) as f64 / 1e6;
            let every = if t["interval_us"].as_u64().unwrap_or(0) != 0 {
                format!(", then every {:.3} s", secs("interval_us"))
            } else {
                String::new()
            };
            format!("{} {:.3} s left{every}", t["timer"].as_str().unwrap_or(""), secs("left_us"))
        })
        .collect();
    println!("  timers       {}", if timers.is_empty() { "none".to_string() } else { timers.join("; ") });
    println!("  integrity    {}", s("integrity"));
}
