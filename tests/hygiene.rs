//! A restarted process looks like the original, generation after
//! generation: 50 checkpoint/restart cycles leave the mappings and the
//! image exactly as they were after the first restart (no scratch memory
//! of the writer, no placeholder of the loader left behind), and the
//! output of all generations together is the uninterrupted output.

#[macro_use]
mod common;

use common::*;

const GENERATIONS: usize = 50;

/// What a generation looks like: the address ranges of its /proc/PID/maps
/// and of its image's segments (adjacent ranges joined: whether the kernel
/// merges two neighbouring mappings depends on the order their pages were
/// first touched, which is not the process's shape), and the bytes its
/// image stores (its file size less head and trailer, whose lengths follow
/// the mapping count).
#[derive(Debug, PartialEq, Eq, Clone)]
struct Shape {
    maps: Vec<(u64, u64)>,
    segments: Vec<(u64, u64)>,
    stored: u64,
}

/// Sorted ranges with touching neighbours joined.
fn joined(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

fn maps_of(pid: i32) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    joined(
        text.lines()
            .map(|l| {
                let (a, b) = l.split(' ').next().unwrap().split_once('-').unwrap();
                (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap())
            })
            .collect(),
    )
}

fn image_shape(img: &std::path::Path) -> (Vec<(u64, u64)>, u64) {
    let b = std::fs::read(img).unwrap();
    let segs = image::segments(&b);
    (joined(segs.iter().map(|d| (d.vaddr, d.vaddr + d.len)).collect()), segs.iter().map(|d| d.stored).sum())
}

fn fifty_generations(arch: Arch) {
    let t = T::new("hygiene", arch);
    let (prog, want) = counter(&t, &[]);
    let img = t.p("gen.ckpt");
    let gate = t.p("gen.gate");
    let mut p = t.spawn("gen0", &[s(&prog), "-_condor_ckpt".into(), s(&img), N.into(), s(&gate)]);
    p.wait_ready();
    p.checkpoint_and_stop();
    let mut out = p.stdout();
    let mut first: Option<Shape> = None;
    for g in 1..=GENERATIONS {
        let mut r = t.spawn(&format!("gen{g}"), &t.restart_argv(&prog, &img, Via::Program, false));
        r.wait_lines(1);
        let maps = maps_of(r.pid);
        r.checkpoint_and_stop();
        out.push_str(&r.stdout());
        let (segments, stored) = image_shape(&img);
        let shape = Shape { maps, segments, stored };
        match &first {
            None => first = Some(shape),
            Some(f) => assert_eq!(&shape, f, "generation {g} differs from the first restart"),
        }
    }
    t.touch(&gate);
    let mut r = t.spawn("last", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    out.push_str(&r.stdout());
    assert_text(&out, &want, "all generations' output");
}

arch_tests!(fifty_generations);
