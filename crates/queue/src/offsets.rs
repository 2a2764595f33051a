//! Which offset of a partition may be committed while several of its messages are in
//! flight at once: only up to the highest contiguous completed message, so that a crash
//! replays everything that was not finished (at-least-once) and nothing else.

use std::collections::{BTreeMap, BTreeSet};

/// Per (topic, partition): offsets handed out and not yet completed, and completed
/// offsets above the lowest outstanding one.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<(String, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    outstanding: BTreeSet<i64>,
    /// Highest offset completed (committable once nothing below it is outstanding).
    highest_done: Option<i64>,
    /// The next offset already reported as committable (at first, the first offset read).
    committed: Option<i64>,
}

impl OffsetTracker {
    /// A message was taken from the partition.
    pub fn start(&mut self, topic: &str, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        // Where this consumer started reading: nothing below it is ours to commit.
        p.committed.get_or_insert(offset);
        p.outstanding.insert(offset);
    }

    /// A message is finished (written, or dead-lettered). Returns the offset to commit
    /// (the next one to read, Kafka's convention) when the committable point moved.
    pub fn complete(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&(topic.to_string(), partition))?;
        if !p.outstanding.remove(&offset) {
            return None;
        }
        p.highest_done = Some(p.highest_done.map_or(offset, |h| h.max(offset)));
        let next = match p.outstanding.first() {
            // Everything below the lowest outstanding message is done.
            Some(&low) => low,
            None => p.highest_done? + 1,
        };
        if p.committed.is_none_or(|c| next > c) {
            p.committed = Some(next);
            Some(next)
        } else {
            None
        }
    }

    /// Forgets a partition (it was revoked): its outstanding messages are someone
    /// else's now.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }

    /// Messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.outstanding.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_lowest_unfinished_message() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.start("t", 0, o);
        }
        // 12 and 13 finish first: 10 is still running, nothing may be committed.
        assert_eq!(t.complete("t", 0, 12), None);
        assert_eq!(t.complete("t", 0, 13), None);
        // 10 done: 11 is the lowest unfinished, so commit 11 (read again from 11).
        assert_eq!(t.complete("t", 0, 10), Some(11));
        assert_eq!(t.complete("t", 0, 11), Some(14));
        assert_eq!(t.complete("t", 0, 14), Some(15));
        assert_eq!(t.in_flight(), 0);
        // Completing twice or an unknown offset moves nothing.
        assert_eq!(t.complete("t", 0, 14), None);
        assert_eq!(t.complete("t", 1, 0), None);
    }

    #[test]
    fn partitions_are_independent_and_can_be_forgotten() {
        let mut t = OffsetTracker::default();
        t.start("t", 0, 5);
        t.start("t", 1, 7);
        t.start("t", 1, 8);
        assert_eq!(t.complete("t", 1, 8), None);
        assert_eq!(t.complete("t", 0, 5), Some(6));
        t.forget("t", 1);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.complete("t", 1, 7), None);
    }
}
