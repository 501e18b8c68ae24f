//! A small seeded PRNG (splitmix64): the only source of variation in a synthetic scenario, so the
//! same spec always gives the same bytes.

use heapster_dataflows::hash::{fnv1a, spread};

/// Stream tags for [`Rng::derive`]: each concern draws from its own stream, so adding a timeline
/// event never renames a pod and one node's numbers never depend on another's.
pub const PLAN: u64 = 1;
pub const SAMPLE: u64 = 2;
pub const TIMELINE: u64 = 3;
pub const ADDED_NODE: u64 = 4;
pub const IMAGE: u64 = 5;
pub const EVENTS: u64 = 6;

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
pub const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

pub struct Rng(u64);

impl Rng {
    /// An independent stream for `(seed, parts...)`.
    pub fn derive(seed: u64, parts: &[u64]) -> Rng {
        let mut state = spread(seed ^ 0x5851_f42d_4c95_7f2d);
        for &part in parts {
            state = spread(state ^ spread(part.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        }
        Rng(state)
    }

    /// A stream keyed by a string (image digests and sizes follow the image name).
    pub fn keyed(seed: u64, tag: u64, key: &str) -> Rng {
        // Stable across platforms and releases, unlike `DefaultHasher`.
        Rng::derive(seed, &[tag, fnv1a(key.as_bytes())])
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        spread(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `x` scaled by a factor drawn from `lo_pct..=hi_pct` percent.
    pub fn scale(&mut self, x: u64, lo_pct: u64, hi_pct: u64) -> u64 {
        (u128::from(x) * u128::from(self.range(lo_pct, hi_pct)) / 100) as u64
    }

    /// Spread over `lo..hi` octave by octave, as resource usage spreads across real workloads
    /// (many small containers, a few large ones).
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(1);
        let octaves = u64::from((hi / lo).max(1).ilog2()).max(1);
        let base = lo << self.below(octaves);
        (base + self.below(base)).min(hi)
    }

    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(alphabet[self.index(alphabet.len())])).collect()
    }

    pub fn hex(&mut self, n: usize) -> String {
        self.chars(HEX, n)
    }

    /// A version-4 UUID, as the API server assigns to objects.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            8 + (b >> 62),
            (b >> 48) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let draw = |parts: &[u64]| {
            let mut r = Rng::derive(7, parts);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(&[SAMPLE, 3, 1]), draw(&[SAMPLE, 3, 1]));
        assert_ne!(draw(&[SAMPLE, 3, 1]), draw(&[SAMPLE, 1, 3]));
        assert_ne!(draw(&[SAMPLE]), draw(&[PLAN]));
    }

    #[test]
    fn draws_stay_in_bounds() {
        let mut r = Rng::derive(1, &[]);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let v = r.range(3, 5);
            assert!((3..=5).contains(&v));
            let l = r.log_range(1_000, 400_000);
            assert!((1_000..=400_000).contains(&l), "{l}");
        }
        assert_eq!(r.below(0), 0);
        let uuid = r.uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
    }
}
