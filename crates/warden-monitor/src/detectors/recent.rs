//! Detector state with a ceiling: a map that keeps at most a fixed number of keys (agents,
//! sessions) and, when full, forgets those seen least recently.
//!
//! Eviction drops the least recently seen eighth at once, so its cost (one pass over the map)
//! is paid once per `capacity / 8` new keys rather than on every insert: `observe` stays cheap
//! on average even when a flood of new sessions keeps the map full.

use std::collections::HashMap;
use std::hash::Hash;

/// How many agents or sessions a detector tracks at most.
pub(crate) const MAX_TRACKED: usize = 10_000;

/// A map bounded to `capacity` keys, least recently seen dropped first.
#[derive(Debug)]
pub(crate) struct RecentMap<K, V> {
    slots: HashMap<K, Slot<V>>,
    capacity: usize,
    // A counter rather than the event time: recency must not depend on clocks that jump.
    clock: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    seen: u64,
}

impl<K: Hash + Eq + Clone, V> RecentMap<K, V> {
    /// An empty map that keeps at most `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// The value for `key`, without counting this as a sighting.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.slots.get(key).map(|s| &s.value)
    }

    /// The value for `key`, marked as just seen; made by `make` if the key is new, after
    /// room was made for it.
    pub(crate) fn touch_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        self.clock += 1;
        let now = self.clock;
        if !self.slots.contains_key(key) {
            if self.slots.len() >= self.capacity {
                self.evict_oldest();
            }
            self.slots.insert(
                key.clone(),
                Slot {
                    value: make(),
                    seen: now,
                },
            );
        }
        // INVARIANT: the key is present: it was either there or inserted just above.
        let slot = self
            .slots
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("key inserted above"));
        slot.seen = now;
        &mut slot.value
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn evict_oldest(&mut self) {
        let drop = (self.capacity / 8).max(1).min(self.slots.len());
        let mut seen: Vec<u64> = self.slots.values().map(|s| s.seen).collect();
        let (_, &mut threshold, _) = seen.select_nth_unstable(drop - 1);
        // Sightings are numbered uniquely, so exactly `drop` keys are at or below it.
        self.slots.retain(|_, s| s.seen > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut map = RecentMap::new(16);
        for i in 0..1000u32 {
            *map.touch_or_insert_with(&i, || 0) += 1;
            assert!(map.len() <= 16);
        }
        assert!(map.peek(&999).is_some());
    }

    #[test]
    fn forgets_the_least_recently_seen_first() {
        let mut map = RecentMap::new(8);
        for i in 0..8u32 {
            map.touch_or_insert_with(&i, || i);
        }
        // 0 is seen again, so 1 is now the oldest.
        map.touch_or_insert_with(&0, || 100);
        map.touch_or_insert_with(&8, || 8);
        assert_eq!(map.peek(&0), Some(&0), "kept, with its value");
        assert_eq!(map.peek(&1), None);
        assert_eq!(map.peek(&8), Some(&8));
        assert_eq!(map.len(), 8);
    }
}
