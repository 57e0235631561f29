//! XXH64 (Yann Collet's xxHash, 64-bit variant) and the page checksum rckpt
//! images use. Runs in the checkpoint handler: no allocation, no panics.

/// XXH64 of `data` with `seed` (the `xxhash-rust` crate's, which is
/// `no_std` and allocation-free).
#[inline]
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(data, seed)
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
