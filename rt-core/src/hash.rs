//! XXH64 (Yann Collet's xxHash, 64-bit variant) and the page checksum rckpt
//! images use. Runs in the checkpoint handler: no allocation, no panics.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

#[inline(always)]
fn merge(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

#[inline(always)]
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn u32_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w) as u64
}

/// XXH64 of `data` with `seed`.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut i = 0;
    let mut h = if len >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) = (seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1));
        while i + 32 <= len {
            v1 = round(v1, u64_at(data, i));
            v2 = round(v2, u64_at(data, i + 8));
            v3 = round(v3, u64_at(data, i + 16));
            v4 = round(v4, u64_at(data, i + 24));
            i += 32;
        }
        let mut h = v1.rotate_left(1).wrapping_add(v2.rotate_left(7)).wrapping_add(v3.rotate_left(12)).wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        merge(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len as u64);
    while i + 8 <= len {
        h ^= round(0, u64_at(data, i));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        i += 8;
    }
    if i + 4 <= len {
        h ^= u32_at(data, i).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        i += 4;
    }
    while i < len {
        h ^= (data[i] as u64).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Page size of the image format (x86 and i386 alike).
pub const PAGE: usize = 4096;

/// A segment's checksum, independent of how its data is split into runs and
/// of which all-zero pages were stored or left as holes: the wrapping sum,
/// over the segment's non-zero pages, of XXH64(page, seed = page index).
#[derive(Clone, Copy, Default)]
pub struct SegSum(pub u64);

impl SegSum {
    /// Add the pages of `data`, which starts at page `first_page` of the
    /// segment. `data.len()` is a multiple of [`PAGE`] except possibly for a
    /// last partial page, which is hashed as if padded with zeros.
    pub fn add_pages(&mut self, first_page: u64, data: &[u8]) {
        for (k, page) in data.chunks(PAGE).enumerate() {
            if is_zero(page) {
                continue;
            }
            let h = if page.len() == PAGE {
                xxh64(page, first_page + k as u64)
            } else {
                let mut full = [0u8; PAGE];
                full[..page.len()].copy_from_slice(page);
                xxh64(&full, first_page + k as u64)
            };
            self.0 = self.0.wrapping_add(h);
        }
    }
}

/// True if every byte is zero (word at a time).
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        if u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_reference_vectors() {
        // Published vectors of the reference implementation.
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"Nobody inspects the spammish repetition", 0), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn segsum_ignores_zero_pages_and_run_split() {
        let mut data = [0u8; 4 * PAGE];
        data[PAGE + 5] = 7;
        data[3 * PAGE] = 1;
        let mut whole = SegSum::default();
        whole.add_pages(0, &data);
        let mut split = SegSum::default();
        split.add_pages(1, &data[PAGE..2 * PAGE]);
        split.add_pages(3, &data[3 * PAGE..]);
        assert_eq!(whole.0, split.0);
        assert_ne!(whole.0, 0);
    }
}
