//! A restarted process looks like the original, generation after
//! generation: 50 checkpoint/restart cycles leave the mappings and the
//! image exactly as they were after the first restart (no scratch memory
//! of the writer, no placeholder of the loader left behind), and the
//! output of all generations together is the uninterrupted output.

#[macro_use]
mod common;

use common::*;

const GENERATIONS: usize = 50;

/// What a generation looks like: its /proc/PID/maps (count and bytes) and
/// its image (segments, bytes mapped, apparent file size).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Shape {
    maps: usize,
    maps_bytes: u64,
    segments: usize,
    mapped: u64,
    file: u64,
}

fn maps_of(pid: i32) -> (usize, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let sizes: Vec<u64> = text
        .lines()
        .map(|l| {
            let range = l.split(' ').next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
        })
        .collect();
    (sizes.len(), sizes.iter().sum())
}

fn image_shape(img: &std::path::Path) -> (usize, u64, u64) {
    let b = std::fs::read(img).unwrap();
    let segs = image::segments(&b);
    (segs.len(), segs.iter().map(|d| d.len).sum(), b.len() as u64)
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
        let (maps, maps_bytes) = maps_of(r.pid);
        r.checkpoint_and_stop();
        out.push_str(&r.stdout());
        let (segments, mapped, file) = image_shape(&img);
        let shape = Shape { maps, maps_bytes, segments, mapped, file };
        match first {
            None => first = Some(shape),
            Some(f) => assert_eq!(shape, f, "generation {g} differs from the first restart"),
        }
    }
    t.touch(&gate);
    let mut r = t.spawn("last", &t.restart_argv(&prog, &img, Via::Program, false));
    r.expect_exit(0);
    out.push_str(&r.stdout());
    assert_text(&out, &want, "all generations' output");
}

arch_tests!(fifty_generations);
