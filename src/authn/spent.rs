//! Bounded in-memory sets of ids that must not be honoured again until a given time: hand-offs already used
//! (single use) and sessions signed out (revoked).
//!
//! They live in this process only: a restart forgets them. That is acceptable because every entry outlives only
//! what it guards (a hand-off lives minutes; a session is bound by COOKIE_EXPIRE), and the sets stay small on a
//! 512 MB box. Ids are stored as 16-byte digests, so the set never holds a value a browser sent.

use std::collections::HashMap;

use ring::digest;

/// Remembers ids until their own expiry, at most `cap` of them.
#[derive(Debug)]
pub struct ExpiringSet {
    /// What the set holds, for log lines ("used hand-offs", "signed-out sessions").
    what: &'static str,
    cap: usize,
    entries: HashMap<[u8; 16], u64>,
    /// Unix seconds after which the next insert prunes expired entries (at most once a minute unless full).
    next_prune: u64,
}

fn key(id: &str) -> [u8; 16] {
    let d = digest::digest(&digest::SHA256, id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    k
}

impl ExpiringSet {
    pub fn new(what: &'static str, cap: usize) -> ExpiringSet {
        ExpiringSet {
            what,
            cap: cap.max(1),
            entries: HashMap::new(),
            next_prune: 0,
        }
    }

    /// Is `id` remembered and not yet past its time at `now`?
    pub fn contains(&self, id: &str, now: u64) -> bool {
        self.entries
            .get(&key(id))
            .is_some_and(|&until| until >= now)
    }

    /// Remembers `id` until `until` (unix seconds). Returns false when it was already remembered (and not expired):
    /// the caller's "second use". When full even after pruning, the entry that ends soonest is forgotten first, and
    /// that is logged, because its id could then be honoured again before its time.
    pub fn insert(&mut self, id: &str, until: u64, now: u64) -> bool {
        let k = key(id);
        if self.entries.get(&k).is_some_and(|&u| u >= now) {
            return false;
        }
        if now >= self.next_prune || self.entries.len() >= self.cap {
            self.entries.retain(|_, u| *u >= now);
            self.next_prune = now.saturating_add(60);
        }
        if self.entries.len() >= self.cap {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(k, _)| *k);
            if let Some(s) = soonest {
                self.entries.remove(&s);
                log::warn!(
                    "the set of {} is full ({} entries): forgot the one ending soonest",
                    self.what,
                    self.cap
                );
            }
        }
        self.entries.insert(k, until);
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_then_prunes() {
        let mut s = ExpiringSet::new("test ids", 100);
        assert!(s.insert("a", 1010, 1000));
        assert!(!s.insert("a", 1010, 1005), "second use within its time");
        assert!(s.contains("a", 1010));
        assert!(!s.contains("a", 1011));
        assert!(!s.contains("b", 1000));
        // After its time the id may be used again (its token has expired by then anyway).
        assert!(s.insert("a", 2000, 1011));
        assert!(s.insert("b", 1100, 1011));
        // Pruning happens at most once a minute: at 1200 both are stale and dropped on the next insert.
        assert!(s.insert("c", 3000, 2001));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bounded_forgets_the_soonest_first() {
        let mut s = ExpiringSet::new("test ids", 3);
        for (id, until) in [("x", 500), ("y", 300), ("z", 400)] {
            assert!(s.insert(id, until, 100));
        }
        assert!(s.insert("w", 600, 100));
        assert_eq!(s.len(), 3);
        assert!(!s.contains("y", 100), "the one ending soonest is forgotten");
        for id in ["x", "z", "w"] {
            assert!(s.contains(id, 100), "{id}");
        }
    }
}
