//! Seeding and sampling. One generator per run, derived from (batch seed,
//! run index) only, and every sampling routine written here rather than
//! borrowed from `rand`, so a run's draws are fixed by this file and the
//! PCG64 algorithm (value-stable in `rand_pcg`) on any machine, forever.

use rand_core::Rng;
use rand_pcg::Pcg64;

/// SplitMix64's finaliser: a bijective, well-mixed hash of a 64-bit value.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug)]
pub struct RunRng(Pcg64);

impl RunRng {
    /// Neighbouring run indices get unrelated states and streams: both go
    /// through SplitMix64 so PCG's correlated-streams caveat does not apply.
    pub fn new(seed: u64, run_index: u64) -> Self {
        let a = splitmix64(seed);
        let b = splitmix64(a ^ run_index);
        let c = splitmix64(b ^ 0x5EED_5EED_5EED_5EED);
        let d = splitmix64(c.wrapping_add(run_index));
        let state = (u128::from(b) << 64) | u128::from(c);
        let stream = (u128::from(d) << 64) | u128::from(a);
        RunRng(Pcg64::new(state, stream))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let n64 = u64::from(n);
        let mut m = (self.next_u64() >> 32) * n64;
        if (m as u32) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u32) < threshold {
                m = (self.next_u64() >> 32) * n64;
            }
        }
        (m >> 32) as u32
    }

    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        if lo >= hi {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_pinned() {
        // If this fails, every stored batch's runs changed: the generator or
        // its seeding moved. That must never happen silently.
        let mut r = RunRng::new(42, 7);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [u64; 3] = [
        15556223473591827533,
        4724760001056287740,
        12135941542517381756,
    ];

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = RunRng::new(1, 2);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.below(7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        for _ in 0..1000 {
            let v = r.between(50, 100);
            assert!((50..=100).contains(&v));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn neighbouring_runs_differ() {
        let a = RunRng::new(5, 0).next_u64();
        let b = RunRng::new(5, 1).next_u64();
        let c = RunRng::new(6, 0).next_u64();
        assert!(a != b && a != c && b != c);
    }
}
