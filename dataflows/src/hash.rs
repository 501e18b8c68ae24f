//! The one stable hash: the same on every run, worker, process, platform and release, which is
//! what routing a node to its worker, checksums and seeded test data need (std's hashers are
//! randomly seeded, and rustc-hash may change between releases).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `bytes`, 64 bits: a checksum that catches damage, not tampering.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

fn fnv1a_from(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The splitmix64 finalizer: spreads every input bit over the output, so the low bits that
/// `% workers` reads depend on the whole input.
pub fn spread(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A stable 64-bit hash of a sequence of strings (FNV-1a, then [`spread`]).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        h = fnv1a_from(h, part.as_bytes());
        // Separate parts so ("ab", "c") and ("a", "bc") differ.
        h = fnv1a_from(h, &[0xff]);
    }
    spread(h)
}

/// The worker (or process) that owns a node: it scrapes it and keeps its rate state.
pub fn node_owner(node: &str, peers: usize) -> usize {
    (node_route(node) % peers.max(1) as u64) as usize
}

/// The route of a node's records through a timely exchange: timely sends a record to worker
/// `route % peers`, which is [`node_owner`], so what is routed by node stays where it was scraped.
pub fn node_route(node: &str) -> u64 {
    stable_hash(&[node])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable_and_spreads() {
        assert_eq!(stable_hash(&["a", "bc"]), stable_hash(&["a", "bc"]));
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[node_owner(&format!("node-{i}"), 4)] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of the FNV reference (64-bit FNV-1a).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
