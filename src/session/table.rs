//! The sessions one node holds, and the version rules that decide whether
//! replicated state is applied: state is only ever replaced by a strictly
//! newer version, so replication applied out of order never reverts a
//! session, and a removed or renamed id stays dead (tombstoned) long enough
//! that late copies cannot resurrect it.

use super::codec::{Delta, SessionImage};
use super::model::{Session, SessionId, Version, MAX_LOST};
use crate::session::hash::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most tombstones kept; the oldest go first beyond this.
const MAX_TOMBSTONES: usize = 1 << 20;

/// What applying replicated state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// Applied. `created`: the session was new here. `displaced`: a
    /// concurrent version held here lost against the incoming one.
    Done {
        created: bool,
        displaced: Option<Version>,
    },
    /// Older than or equal to what is here (or the id is dead): ignored.
    Stale,
    /// A delta on a base this node does not have: a whole copy is needed.
    Gap,
    /// A concurrent version held here wins against the incoming one.
    Lost { kept: Version },
}

/// The session table of one node.
#[derive(Debug, Default)]
pub struct SessionTable {
    map: HashMap<SessionId, Session>,
    tombstones: HashMap<SessionId, Instant>,
    tomb_order: VecDeque<(Instant, SessionId)>,
}

/// Two versions with the same counter but different writers were made
/// concurrently on the same base.
fn concurrent(a: Version, b: Version) -> bool {
    a.counter == b.counter && a.writer != b.writer
}

impl SessionTable {
    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True if no session is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// One session.
    pub fn get(&self, id: &[u8]) -> Option<&Session> {
        self.map.get(id)
    }
    pub(crate) fn get_mut(&mut self, id: &[u8]) -> Option<&mut Session> {
        self.map.get_mut(id)
    }
    /// True if `id` was removed or renamed recently.
    pub fn is_tombstoned(&self, id: &[u8]) -> bool {
        self.tombstones.contains_key(id)
    }
    /// All sessions.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.map.values()
    }
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.map.values_mut()
    }
    /// All session ids (a snapshot).
    pub(crate) fn ids(&self) -> Vec<SessionId> {
        self.map.keys().cloned().collect()
    }
    pub(crate) fn insert_local(&mut self, s: Session) {
        self.tombstones.remove(&s.id);
        self.map.insert(s.id.clone(), s);
    }
    /// Removes a session and remembers its id as dead.
    pub(crate) fn remove(&mut self, id: &SessionId, now: Instant) -> Option<Session> {
        self.tombstone(id, now);
        self.map.remove(id)
    }
    /// Drops a copy without tombstoning (this node just stops holding it).
    pub(crate) fn forget(&mut self, id: &[u8]) -> Option<Session> {
        self.map.remove(id)
    }
    fn tombstone(&mut self, id: &SessionId, now: Instant) {
        if self.tombstones.insert(id.clone(), now).is_none() {
            self.tomb_order.push_back((now, id.clone()));
        }
        while self.tomb_order.len() > MAX_TOMBSTONES {
            if let Some((_, old)) = self.tomb_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }
    /// Forgets tombstones older than `retention`.
    pub(crate) fn purge_tombstones(&mut self, now: Instant, retention: Duration) {
        while let Some((at, _)) = self.tomb_order.front() {
            if now.saturating_duration_since(*at) < retention {
                break;
            }
            if let Some((at, id)) = self.tomb_order.pop_front() {
                if self.tombstones.get(&id) == Some(&at) {
                    self.tombstones.remove(&id);
                }
            }
        }
    }

    /// Applies a delta if it builds on the version held here.
    pub(crate) fn apply_delta(&mut self, d: &Delta, now: Instant) -> Apply {
        match self.map.get_mut(&d.id) {
            Some(s) if s.version == d.base && d.version > s.version => {
                s.apply(&d.ops, &d.meta);
                s.version = d.version;
                s.last_access = now;
                // A commit of the current primary, in a term above every
                // departed primary's: nothing departed since it.
                s.lost = 0;
                s.lost_on_holders = 0;
                Apply::Done {
                    created: false,
                    displaced: None,
                }
            }
            Some(s) if d.version <= s.version => {
                if concurrent(d.version, s.version) {
                    Apply::Lost { kept: s.version }
                } else {
                    Apply::Stale
                }
            }
            Some(_) => Apply::Gap,
            None if self.tombstones.contains_key(&d.id) => Apply::Stale,
            None => Apply::Gap,
        }
    }

    /// Applies a whole copy if it is newer than what is here.
    ///
    /// The count of departed primaries ([`Session::lost`]) never drops
    /// here, only a commit resets it: whatever the two versions, the
    /// higher count bounds the departures since the newer one (over-counting
    /// only makes a later term jump further). A copy applied as a new or
    /// newer version also gets `recent`: departures of the session's
    /// primary seen here while it may have been in flight.
    pub(crate) fn apply_image(&mut self, mut img: SessionImage, recent: u8, now: Instant) -> Apply {
        if self.tombstones.contains_key(&img.id) {
            return Apply::Stale;
        }
        let carried = img.lost.min(MAX_LOST);
        img.lost = carried.saturating_add(recent);
        match self.map.get_mut(&img.id) {
            Some(s) if img.version > s.version => {
                let displaced = concurrent(img.version, s.version).then_some(s.version);
                let (access, lost) = (s.last_access, s.lost);
                *s = img.into_session(now);
                // A copy never makes a session look older than seen here.
                s.last_access = s.last_access.max(access);
                s.lost = s.lost.max(lost);
                Apply::Done {
                    created: false,
                    displaced,
                }
            }
            Some(s) => {
                s.lost = s.lost.max(carried);
                if concurrent(img.version, s.version) {
                    Apply::Lost { kept: s.version }
                } else {
                    Apply::Stale
                }
            }
            None => {
                let s = img.into_session(now);
                self.map.insert(s.id.clone(), s);
                Apply::Done {
                    created: true,
                    displaced: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::model::{AttrOp, MetaChange, SessionMeta};
    use bytes::Bytes;

    fn img(id: &'static [u8], counter: u64, writer: u8, val: &'static [u8]) -> SessionImage {
        SessionImage {
            id: Bytes::from_static(id),
            version: Version {
                counter,
                writer: [writer; 16],
            },
            meta: SessionMeta::default(),
            idle_ms: 0,
            lost: 0,
            attrs: vec![(Bytes::from_static(b"a"), Bytes::from_static(val))],
        }
    }

    fn delta(base: u64, counter: u64, val: &'static [u8]) -> Delta {
        Delta {
            id: Bytes::from_static(b"s"),
            base: Version {
                counter: base,
                writer: [1; 16],
            },
            version: Version {
                counter,
                writer: [1; 16],
            },
            ops: vec![AttrOp::Set(
                Bytes::from_static(b"a"),
                Bytes::from_static(val),
            )],
            meta: MetaChange::default(),
        }
    }

    #[test]
    fn older_copy_never_overwrites_newer_state() {
        let now = Instant::now();
        let mut t = SessionTable::default();
        assert!(matches!(
            t.apply_image(img(b"s", 5, 1, b"new"), 0, now),
            Apply::Done { created: true, .. }
        ));
        assert_eq!(t.apply_image(img(b"s", 3, 1, b"old"), 0, now), Apply::Stale);
        assert_eq!(&t.get(b"s").unwrap().attribute(b"a").unwrap()[..], b"new");
    }

    #[test]
    fn delta_applies_only_on_its_base() {
        let now = Instant::now();
        let mut t = SessionTable::default();
        t.apply_image(img(b"s", 1, 1, b"v1"), 0, now);
        assert_eq!(t.apply_delta(&delta(2, 3, b"v3"), now), Apply::Gap);
        assert!(matches!(
            t.apply_delta(&delta(1, 2, b"v2"), now),
            Apply::Done { .. }
        ));
        assert_eq!(t.apply_delta(&delta(1, 2, b"v2"), now), Apply::Stale);
        assert_eq!(t.get(b"s").unwrap().version().counter, 2);
    }

    #[test]
    fn concurrent_versions_resolve_to_the_higher_writer_on_every_node() {
        let now = Instant::now();
        let (mut a, mut b) = (SessionTable::default(), SessionTable::default());
        a.apply_image(img(b"s", 6, 1, b"from-1"), 0, now);
        b.apply_image(img(b"s", 6, 2, b"from-2"), 0, now);
        // Each receives the other's version.
        assert!(matches!(
            a.apply_image(img(b"s", 6, 2, b"from-2"), 0, now),
            Apply::Done {
                displaced: Some(_),
                ..
            }
        ));
        assert!(matches!(
            b.apply_image(img(b"s", 6, 1, b"from-1"), 0, now),
            Apply::Lost { .. }
        ));
        assert_eq!(
            a.get(b"s").unwrap().attribute(b"a"),
            b.get(b"s").unwrap().attribute(b"a")
        );
    }

    #[test]
    fn a_copy_carries_its_loss_count_and_a_commit_clears_it() {
        let now = Instant::now();
        let mut t = SessionTable::default();
        let mut i = img(b"s", 2, 1, b"v2");
        i.lost = 2;
        // Applied: the sender's count plus departures seen here meanwhile.
        t.apply_image(i.clone(), 1, now);
        assert_eq!(t.get(b"s").unwrap().lost, 3);
        // The same version with a higher count raises it, a lower one not.
        i.lost = 5;
        assert_eq!(t.apply_image(i.clone(), 1, now), Apply::Stale);
        assert_eq!(t.get(b"s").unwrap().lost, 5);
        i.lost = 0;
        t.apply_image(i, 1, now);
        assert_eq!(t.get(b"s").unwrap().lost, 5);
        // An older copy's count bounds the departures since this version too.
        let mut old = img(b"s", 1, 1, b"v1");
        old.lost = 7;
        assert_eq!(t.apply_image(old, 0, now), Apply::Stale);
        assert_eq!(t.get(b"s").unwrap().lost, 7);
        // A newer copy never lowers it; counts never pass the cap.
        t.apply_image(img(b"s", 3, 1, b"v3"), 0, now);
        assert_eq!(t.get(b"s").unwrap().lost, 7);
        assert_eq!(&t.get(b"s").unwrap().attribute(b"a").unwrap()[..], b"v3");
        let mut hi = img(b"s", 4, 1, b"v4");
        hi.lost = MAX_LOST;
        t.apply_image(hi, 9, now);
        assert_eq!(t.get(b"s").unwrap().lost, MAX_LOST);
        // A commit on the version held starts counting again.
        assert!(matches!(
            t.apply_delta(&delta(4, 5, b"v5"), now),
            Apply::Done { .. }
        ));
        assert_eq!(t.get(b"s").unwrap().lost, 0);
    }

    #[test]
    fn removed_ids_are_not_resurrected_until_the_tombstone_expires() {
        let now = Instant::now();
        let mut t = SessionTable::default();
        t.apply_image(img(b"s", 1, 1, b"x"), 0, now);
        t.remove(&Bytes::from_static(b"s"), now);
        assert_eq!(t.apply_image(img(b"s", 9, 1, b"x"), 0, now), Apply::Stale);
        t.purge_tombstones(now + Duration::from_secs(10), Duration::from_secs(5));
        assert!(!t.is_tombstoned(b"s"));
    }
}
