//! The operation slab: an in-flight operation's `user_data` is its slot
//! index plus a generation, so a stale completion or cancel can never reach
//! a slot that was reused.

/// Slots addressed by `user_data` (`generation << 32 | index`).
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Stores `val`; returns its `user_data`.
    pub(crate) fn insert(&mut self, val: T) -> u64 {
        self.live += 1;
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { gen: 0, val: None });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[idx as usize];
        s.gen = s.gen.wrapping_add(1);
        s.val = Some(val);
        ((s.gen as u64) << 32) | idx as u64
    }

    fn slot(&self, ud: u64) -> Option<&Slot<T>> {
        let s = self.slots.get((ud & 0xffff_ffff) as usize)?;
        (s.gen == (ud >> 32) as u32).then_some(s)
    }

    pub(crate) fn get(&self, ud: u64) -> Option<&T> {
        self.slot(ud)?.val.as_ref()
    }

    pub(crate) fn get_mut(&mut self, ud: u64) -> Option<&mut T> {
        let s = self.slots.get_mut((ud & 0xffff_ffff) as usize)?;
        if s.gen != (ud >> 32) as u32 {
            return None;
        }
        s.val.as_mut()
    }

    pub(crate) fn remove(&mut self, ud: u64) -> Option<T> {
        let idx = (ud & 0xffff_ffff) as u32;
        let s = self.slots.get_mut(idx as usize)?;
        if s.gen != (ud >> 32) as u32 {
            return None;
        }
        let v = s.val.take()?;
        self.free.push(idx);
        self.live -= 1;
        Some(v)
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// `user_data` of every live entry.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.val.is_some())
            .map(|(i, s)| ((s.gen as u64) << 32) | i as u64)
            .collect()
    }

    /// Takes every entry out (used only to leak them on a failed drain).
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        self.live = 0;
        self.free.clear();
        let v = self.slots.iter_mut().filter_map(|s| s.val.take()).collect();
        self.free = (0..self.slots.len() as u32).collect();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slot_rejects_stale_user_data() {
        let mut s = Slab::new();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a & 0xffff_ffff, b & 0xffff_ffff, "slot reused");
        assert!(s.get(a).is_none());
        assert!(s.remove(a).is_none());
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.ids(), vec![b]);
    }
}
