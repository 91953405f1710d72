//! The hasher of the store's maps: keyed by a random salt, so peers cannot
//! choose session ids that collide, except in the deterministic simulation
//! ([`deterministic`]), where iteration order must replay exactly.

use std::cell::Cell;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static FIXED: Cell<bool> = const { Cell::new(false) };
}

/// Makes maps created on this thread from now on hash without a random
/// salt (the simulation, so a seed replays exactly); `false` restores the
/// default.
pub fn deterministic(on: bool) {
    FIXED.with(|f| f.set(on));
}

/// Builds SipHash hashers whose state starts from a salt.
#[derive(Debug, Clone, Copy)]
pub struct SaltedState {
    salt: u64,
}

impl Default for SaltedState {
    fn default() -> Self {
        let salt = if FIXED.with(Cell::get) {
            0
        } else {
            RandomState::new().hash_one(0x5e55_1017u64)
        };
        SaltedState { salt }
    }
}

impl BuildHasher for SaltedState {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        h.write_u64(self.salt);
        h
    }
}

/// A hash map with the store's hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, SaltedState>;
/// A hash set with the store's hasher.
pub type HashSet<K> = std::collections::HashSet<K, SaltedState>;
