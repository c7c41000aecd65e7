//! Randomness as a parameter. Production uses [`OsEntropy`]: a ChaCha12 CSPRNG per thread,
//! seeded and periodically reseeded from the operating system (`rand`'s `ThreadRng`), which
//! avoids a system call for every token. Tests may use [`SeededEntropy`] for repeatable values.

use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of random bytes.
pub trait Entropy: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

/// A CSPRNG seeded from the operating system (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        // ThreadRng panics only if the OS cannot seed it; there is no safe way to go on issuing
        // credentials then.
        rand::thread_rng().fill_bytes(buf);
    }
}

/// Deterministic bytes for tests: SHA-256 of a seed and a counter. Never for production.
#[derive(Debug)]
pub struct SeededEntropy {
    seed: u64,
    counter: AtomicU64,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let mut h = Sha256::new();
            h.update(self.seed.to_le_bytes());
            h.update(n.to_le_bytes());
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
pub fn random_from(entropy: &dyn Entropy, alphabet: &[u8], len: usize) -> String {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        entropy.fill(&mut buf);
        for &b in &buf {
            if (b as usize) < limit {
                out.push(alphabet[b as usize % alphabet.len()] as char);
                if out.len() == len {
                    break;
                }
            }
        }
    }
    out
}

/// Letters and digits.
pub fn random_alnum(entropy: &dyn Entropy, len: usize) -> String {
    random_from(entropy, ALNUM, len)
}

/// Decimal digits, the first never `0`.
pub fn random_digits(entropy: &dyn Entropy, len: usize) -> String {
    let first = random_from(entropy, b"123456789", 1);
    first + &random_from(entropy, b"0123456789", len.saturating_sub(1))
}

/// Lower-case hex.
pub fn random_hex(entropy: &dyn Entropy, len: usize) -> String {
    random_from(entropy, b"0123456789abcdef", len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabets_are_respected() {
        let e = SeededEntropy::new(7);
        let s = random_alnum(&e, 500);
        assert_eq!(s.len(), 500);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        let d = random_digits(&e, 17);
        assert_eq!(d.len(), 17);
        assert!(!d.starts_with('0'));
        assert!(d.bytes().all(|b| b.is_ascii_digit()));
        assert!(random_hex(&e, 32).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn seeded_entropy_repeats_and_os_entropy_does_not() {
        assert_eq!(
            random_alnum(&SeededEntropy::new(1), 40),
            random_alnum(&SeededEntropy::new(1), 40)
        );
        assert_ne!(random_alnum(&OsEntropy, 40), random_alnum(&OsEntropy, 40));
    }
}
