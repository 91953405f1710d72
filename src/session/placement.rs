//! Where a session lives: rendezvous (highest-random-weight) hashing over
//! the live members. Every node computes the same answer from the same
//! member list, so no proxy entries or directory messages are needed, and
//! losing a member only moves the sessions that member held.

use super::model::MemberKey;

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's hasher).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finalizer: spreads the combined hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The members a session lives on, best first: `[primary, backup1, ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holders(Vec<MemberKey>);

impl Holders {
    /// The primary (`None` only if there are no live members).
    pub fn primary(&self) -> Option<MemberKey> {
        self.0.first().copied()
    }
    /// True if `m` is one of the holders.
    pub fn contains(&self, m: &MemberKey) -> bool {
        self.0.contains(m)
    }
    /// All holders, best first.
    pub fn as_slice(&self) -> &[MemberKey] {
        &self.0
    }
    /// Holders other than `me`.
    pub fn others(&self, me: &MemberKey) -> Vec<MemberKey> {
        self.0.iter().filter(|m| *m != me).copied().collect()
    }
}

/// Rendezvous placement over a set of live members (the caller's list must
/// include itself).
#[derive(Debug, Clone, Copy)]
pub struct Placement;

impl Placement {
    /// The score of member `m` for a session with id hash `h`.
    fn score(h: u64, m: &MemberKey) -> u64 {
        mix(h ^ fnv1a(&m.id))
    }

    /// The `copies` best members for session `id` among `live`, best first.
    pub fn holders(id: &[u8], live: &[MemberKey], copies: usize) -> Holders {
        let h = fnv1a(id);
        let want = copies.min(live.len());
        // Top-k by insertion: k is small (backupCount + 1 <= 16).
        let mut top: Vec<(u64, MemberKey)> = Vec::with_capacity(want + 1);
        for m in live {
            let s = (Self::score(h, m), *m);
            let pos = top.partition_point(|t| (t.0, t.1) > s);
            if pos < want {
                top.insert(pos, s);
                top.truncate(want);
            }
        }
        Holders(top.into_iter().map(|(_, m)| m).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn members(n: u8) -> Vec<MemberKey> {
        (0..n)
            .map(|i| MemberKey::new([i; 16], SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16))))
            .collect()
    }

    #[test]
    fn placement_is_deterministic_and_independent_of_list_order() {
        let mut ms = members(6);
        let a = Placement::holders(b"sess-1", &ms, 2);
        ms.reverse();
        let b = Placement::holders(b"sess-1", &ms, 2);
        assert_eq!(a, b);
        assert_eq!(a.as_slice().len(), 2);
    }

    #[test]
    fn losing_a_non_holder_moves_nothing_and_losing_a_holder_promotes_the_next() {
        let ms = members(6);
        for i in 0..200u32 {
            let id = format!("s{i}");
            let before = Placement::holders(id.as_bytes(), &ms, 6);
            let gone = before.as_slice()[0];
            let rest: Vec<_> = ms.iter().filter(|m| **m != gone).copied().collect();
            let after = Placement::holders(id.as_bytes(), &rest, 5);
            assert_eq!(after.as_slice(), &before.as_slice()[1..]);
        }
    }

    #[test]
    fn primaries_spread_over_members() {
        let ms = members(4);
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let p = Placement::holders(format!("id-{i}").as_bytes(), &ms, 1)
                .primary()
                .unwrap();
            counts[p.id[0] as usize] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "unbalanced: {counts:?}");
        }
    }
}
