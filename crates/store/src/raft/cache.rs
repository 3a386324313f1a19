//! The tail of the log in memory ([`Cache`]): what readers see before the
//! log writer has it on disk.

use super::*;

/// Recent log entries kept in memory: at most this many flushed ones.
const CACHE_ENTRIES: usize = 4_096;
/// ... and at most this many bytes of them (as serialized).
const CACHE_BYTES: usize = 32 << 20;

/// The tail of the log in memory: a contiguous run of indices ending at the
/// last appended entry (or empty). Entries enter when appended, before they
/// are on disk, so readers see them at once; they leave from the front once
/// flushed and over the bounds, or when truncated or purged. Everything
/// before the run's first index is on disk.
pub(super) struct Cache<C: RaftTypeConfig> {
    entries: std::collections::BTreeMap<u64, Cached<C>>,
    /// Bounds on the flushed entries held: count and bytes.
    max_entries: usize,
    max_bytes: usize,
    /// Serialized bytes of the flushed entries held.
    bytes: usize,
    /// Tags appends so a flush marks only the entries it wrote (an index
    /// truncated and appended again carries a new tag).
    next_seq: u64,
}

struct Cached<C: RaftTypeConfig> {
    entry: Entry<C>,
    /// `Some(tag)` while not yet on disk; `None` once flushed.
    pending: Option<u64>,
    /// Serialized size, known once flushed.
    size: usize,
}

impl<C: RaftTypeConfig> Cache<C>
where
    C::D: Clone,
{
    pub(super) fn new() -> Self {
        Self::with_bounds(CACHE_ENTRIES, CACHE_BYTES)
    }

    fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: std::collections::BTreeMap::new(),
            max_entries,
            max_bytes,
            bytes: 0,
            next_seq: 0,
        }
    }

    /// Drop flushed entries from the front while over either bound.
    fn evict(&mut self) {
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.first_entry() {
                Some(e) if e.get().pending.is_none() => {
                    self.bytes = self.bytes.saturating_sub(e.remove().size);
                }
                _ => break,
            }
        }
    }

    /// Record that the writer put `(index, tag, size)` on disk.
    pub(super) fn flushed(&mut self, written: &[(u64, u64, usize)]) {
        for (index, tag, size) in written {
            if let Some(c) = self.entries.get_mut(index) {
                if c.pending == Some(*tag) {
                    c.pending = None;
                    c.size = *size;
                    self.bytes += *size;
                }
            }
        }
        self.evict();
    }

    /// Take appended entries in (not yet on disk); returns their tag.
    pub(super) fn append(&mut self, entries: &[(u64, Entry<C>)]) -> u64 {
        let tag = self.next_seq;
        self.next_seq += 1;
        for (index, entry) in entries {
            self.entries.insert(
                *index,
                Cached {
                    entry: entry.clone(),
                    pending: Some(tag),
                    size: 0,
                },
            );
        }
        self.evict();
        tag
    }

    /// The entries of `start..end` (`None`: to the end) held here with
    /// their serialized sizes (0 while not yet on disk), and the first index
    /// held: everything before it is on disk.
    pub(super) fn read(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> (Option<u64>, Vec<(Entry<C>, usize)>) {
        let first = self.entries.keys().next().copied();
        let from = first.map_or(start, |f| f.max(start));
        let held = match end {
            Some(e) => self.entries.range(from..e.max(from)),
            None => self.entries.range(from..),
        }
        .map(|(_, v)| (v.entry.clone(), v.size))
        .collect();
        (first, held)
    }

    /// The id of the last entry held (the log's last), if any.
    pub(super) fn last_log_id(&self) -> Option<LogId<C::NodeId>> {
        self.entries
            .last_key_value()
            .map(|(_, c)| c.entry.log_id.clone())
    }

    /// Remove `range`'s entries.
    pub(super) fn remove(&mut self, range: impl RangeBounds<u64>) {
        let keys: Vec<u64> = self.entries.range(range).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(c) = self.entries.remove(&k) {
                self.bytes = self.bytes.saturating_sub(c.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    openraft::declare_raft_types!(T: D = u64, R = ());

    fn entry(index: u64, value: u64) -> Entry<T> {
        Entry {
            log_id: openraft::testing::log_id(1, 1, index),
            payload: EntryPayload::Normal(value),
        }
    }

    fn value(e: &Entry<T>) -> (u64, u64) {
        match &e.payload {
            EntryPayload::Normal(v) => (e.log_id.index, *v),
            _ => (e.log_id.index, u64::MAX),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(u64),
        Flush,
        Truncate(u64),
        Purge(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..40).prop_map(Step::Append),
            4 => Just(Step::Flush),
            1 => (0u64..30).prop_map(Step::Truncate),
            1 => (0u64..30).prop_map(Step::Purge),
        ]
    }

    /// Each entry "encodes" to this many bytes in the model writer.
    const SIZE: usize = 100;

    proptest! {
        /// The cache against a model of the log and of the disk the writer
        /// fills (in queue order, a truncation or purge after everything
        /// queued before it, as `LogStore` awaits them): after every step
        /// the cache is a contiguous run ending at the log's last entry,
        /// holds every entry not yet on disk, stays within its bounds but
        /// for those, and a read (cache first, the disk before its run)
        /// returns exactly the log.
        #[test]
        fn the_cache_and_the_disk_always_hold_the_whole_log(
            steps in proptest::collection::vec(step(), 1..80),
            max_entries in 1usize..64,
            max_bytes in 0usize..4_000,
        ) {
            let mut cache = Cache::<T>::with_bounds(max_entries, max_bytes);
            let mut log: BTreeMap<u64, u64> = BTreeMap::new();
            let mut disk: BTreeMap<u64, u64> = BTreeMap::new();
            let mut queued: Vec<(u64, Vec<(u64, u64)>)> = Vec::new();
            let mut purged: Option<u64> = None;
            let mut next_value = 0u64;
            let flush_all = |cache: &mut Cache<T>, disk: &mut BTreeMap<u64, u64>, queued: &mut Vec<(u64, Vec<(u64, u64)>)>| {
                for (tag, rows) in queued.drain(..) {
                    let mut written = Vec::new();
                    for (i, v) in rows {
                        disk.insert(i, v);
                        written.push((i, tag, SIZE));
                    }
                    cache.flushed(&written);
                }
            };
            for s in steps {
                match s {
                    Step::Append(n) => {
                        let first = log.keys().next_back().map_or(purged.map_or(0, |p| p + 1), |l| l + 1);
                        let rows: Vec<(u64, u64)> = (first..first + n).map(|i| { next_value += 1; (i, next_value) }).collect();
                        let entries: Vec<(u64, Entry<T>)> = rows.iter().map(|(i, v)| (*i, entry(*i, *v))).collect();
                        let tag = cache.append(&entries);
                        log.extend(rows.iter().copied());
                        queued.push((tag, rows));
                    }
                    Step::Flush => {
                        if !queued.is_empty() {
                            let (tag, rows) = queued.remove(0);
                            let mut written = Vec::new();
                            for (i, v) in rows {
                                disk.insert(i, v);
                                written.push((i, tag, SIZE));
                            }
                            cache.flushed(&written);
                        }
                    }
                    Step::Truncate(back) => {
                        let Some(last) = log.keys().next_back().copied() else { continue };
                        let from = last.saturating_sub(back).max(purged.map_or(0, |p| p + 1));
                        cache.remove(from..);
                        flush_all(&mut cache, &mut disk, &mut queued);
                        disk.retain(|i, _| *i < from);
                        log.retain(|i, _| *i < from);
                    }
                    Step::Purge(fwd) => {
                        let Some(first) = log.keys().next().copied() else { continue };
                        let upto = (first + fwd).min(log.keys().next_back().copied().unwrap_or(first));
                        cache.remove(..=upto);
                        flush_all(&mut cache, &mut disk, &mut queued);
                        disk.retain(|i, _| *i > upto);
                        log.retain(|i, _| *i > upto);
                        purged = Some(upto);
                    }
                }
                let keys: Vec<u64> = cache.entries.keys().copied().collect();
                prop_assert!(keys.windows(2).all(|w| w[1] == w[0] + 1), "not contiguous: {keys:?}");
                if let Some(l) = keys.last() {
                    prop_assert_eq!(Some(l), log.keys().next_back());
                }
                for (_, rows) in &queued {
                    for (i, _) in rows {
                        if log.contains_key(i) {
                            prop_assert!(cache.entries.get(i).is_some_and(|c| c.pending.is_some()));
                        }
                    }
                }
                let flushed = cache.entries.values().filter(|c| c.pending.is_none()).count();
                if cache.entries.len() > max_entries || flushed * SIZE > max_bytes {
                    prop_assert!(cache.entries.values().next().is_some_and(|c| c.pending.is_some()));
                }
                prop_assert_eq!(cache.bytes, flushed * SIZE);
                let Some(lo) = log.keys().next().copied() else { continue };
                let hi = log.keys().next_back().copied().unwrap_or(lo) + 1;
                for (start, end) in [(lo, Some(hi)), (lo, None), (lo + (hi - lo) / 2, Some(hi)), (lo, Some(lo + (hi - lo) / 2))] {
                    let (first, held) = cache.read(start, end);
                    let disk_end = match (first, end) {
                        (Some(f), Some(e)) => f.min(e),
                        (Some(f), None) => f,
                        (None, e) => e.unwrap_or(u64::MAX),
                    };
                    let mut got: Vec<(u64, u64)> = disk.range(start..disk_end.max(start)).map(|(i, v)| (*i, *v)).collect();
                    got.extend(held.iter().map(|(e, _)| value(e)));
                    let want: Vec<(u64, u64)> = log.range(start..end.unwrap_or(u64::MAX)).map(|(i, v)| (*i, *v)).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
