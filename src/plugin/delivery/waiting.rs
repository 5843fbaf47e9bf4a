//! The records waiting to be handed to librdkafka, in order, at 32 bytes each
//! (issue #25: memory that does not grow with an outage; docs/performance.md,
//! "Memory through an outage").
//!
//! A waiting record is one of two kinds:
//! - *held*: its `Pending` is in `Delivery::records` (its text in memory, a
//!   retry, a record on no disk, one librdkafka has had): the entry is its id;
//! - *spooled*: its text is in the spool and nothing else is known of it but
//!   where that text is, its job, event, topic and owning segment, packed
//!   into the entry itself; no `Pending` exists. It becomes held when it
//!   reaches the front of the queue and is handed to librdkafka.
//!
//! During an outage every record past the in-memory payload budget is a
//! spooled entry: 32 bytes of memory, in blocks of `BLOCK` entries that are
//! freed as the queue drains (no doubling, no copy as it grows).

use super::Topic;
use crate::snapshot::Event;
use crate::spool::{Location, Suffix};
use std::collections::VecDeque;

/// Entries per block: 64 KiB.
const BLOCK: usize = 2048;

const HELD: u8 = 1;
const START: u8 = 2;
const SNAP: u8 = 4;
const COMPRESSED: u8 = 8;

/// One waiting record (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Waiting {
    id: u64,
    segment: u32,
    offset: u32,
    len: u32,
    /// The text's length when the spooled body is a zstd frame of it.
    text_len: u32,
    job_id: u32,
    /// The owning segment, as a distance from `segment`.
    owner_from_segment: i16,
    /// Index into the queue's `TopicNames`.
    topic: u8,
    flags: u8,
}

/// What a spooled entry says of its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Spooled {
    pub(super) job_id: u32,
    pub(super) event: Event,
    pub(super) topic: Topic,
    /// The segment whose count the record belongs to.
    pub(super) owner: u64,
    /// Where its JSON text is in the spool.
    pub(super) at: Location,
}

impl Waiting {
    /// A record whose `Pending` is in `Delivery::records`.
    pub(super) fn held(id: u64) -> Waiting {
        Waiting { id, segment: 0, offset: 0, len: 0, text_len: 0, job_id: 0, owner_from_segment: 0, topic: 0, flags: HELD }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn is_held(&self) -> bool {
        self.flags & HELD != 0
    }

    /// The length of the record's body in the spool (0 for a held entry).
    pub(super) fn spooled_len(&self) -> u32 {
        if self.is_held() {
            0
        } else {
            self.len
        }
    }
}

/// The few topic names spooled entries refer to, by index (a `u8` each).
#[derive(Default)]
pub(super) struct TopicNames {
    names: Vec<Topic>,
}

impl TopicNames {
    /// The index of `topic`, added if new; `None` once 256 names are known
    /// (the record then stays held).
    fn index(&mut self, topic: &Topic) -> Option<u8> {
        if let Some(i) = self.names.iter().position(|t| t == topic) {
            return u8::try_from(i).ok();
        }
        let i = u8::try_from(self.names.len()).ok()?;
        self.names.push(topic.clone());
        Some(i)
    }

    fn get(&self, index: u8) -> Option<&Topic> {
        self.names.get(usize::from(index))
    }
}

/// The queue of waiting records, oldest first.
#[derive(Default)]
pub(in crate::plugin) struct WaitingQueue {
    blocks: VecDeque<VecDeque<Waiting>>,
    len: usize,
    spooled: usize,
    topics: TopicNames,
}

impl WaitingQueue {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries that are spooled (records with no `Pending`).
    pub(super) fn spooled_len(&self) -> usize {
        self.spooled
    }

    pub(super) fn push_held(&mut self, id: u64) {
        self.push(Waiting::held(id));
    }

    /// Queues a record whose text is at `at` in the spool as a spooled entry.
    /// False when it cannot be packed (a field out of range): the caller then
    /// keeps a `Pending` for it and queues it held.
    pub(super) fn push_spooled(&mut self, id: u64, record: &Spooled) -> bool {
        match self.pack(id, record) {
            Some(entry) => {
                self.push(entry);
                true
            }
            None => false,
        }
    }

    fn pack(&mut self, id: u64, record: &Spooled) -> Option<Waiting> {
        let at = &record.at;
        let segment = u32::try_from(at.segment).ok()?;
        let owner_from_segment = i16::try_from(i128::from(record.owner) - i128::from(at.segment)).ok()?;
        let mut flags = 0;
        if record.event == Event::Start {
            flags |= START;
        }
        if at.suffix == Suffix::Snap {
            flags |= SNAP;
        }
        if at.zstd_len.is_some() {
            flags |= COMPRESSED;
        }
        Some(Waiting {
            id,
            segment,
            offset: u32::try_from(at.offset).ok()?,
            len: at.len,
            text_len: at.zstd_len.unwrap_or(0),
            job_id: record.job_id,
            owner_from_segment,
            topic: self.topics.index(&record.topic)?,
            flags,
        })
    }

    /// What a spooled entry says of its record (`None` for a held one).
    pub(super) fn unpack(&self, entry: &Waiting) -> Option<Spooled> {
        if entry.is_held() {
            return None;
        }
        let segment = u64::from(entry.segment);
        Some(Spooled {
            job_id: entry.job_id,
            event: if entry.flags & START != 0 { Event::Start } else { Event::Finish },
            topic: self.topics.get(entry.topic)?.clone(),
            owner: segment.checked_add_signed(i64::from(entry.owner_from_segment))?,
            at: Location {
                segment,
                suffix: if entry.flags & SNAP != 0 { Suffix::Snap } else { Suffix::Dlv },
                offset: u64::from(entry.offset),
                len: entry.len,
                zstd_len: (entry.flags & COMPRESSED != 0).then_some(entry.text_len),
            },
        })
    }

    fn push(&mut self, entry: Waiting) {
        if self.blocks.back().is_none_or(|b| b.len() == BLOCK) {
            self.blocks.push_back(VecDeque::with_capacity(BLOCK));
        }
        if let Some(block) = self.blocks.back_mut() {
            block.push_back(entry);
            self.len += 1;
            if !entry.is_held() {
                self.spooled += 1;
            }
        }
    }

    pub(super) fn front(&self) -> Option<&Waiting> {
        self.blocks.front()?.front()
    }

    pub(super) fn pop_front(&mut self) -> Option<Waiting> {
        let block = self.blocks.front_mut()?;
        let entry = block.pop_front()?;
        if block.is_empty() {
            // An emptied block is freed at once.
            self.blocks.pop_front();
        }
        self.len -= 1;
        if !entry.is_held() {
            self.spooled -= 1;
        }
        Some(entry)
    }

    /// The front entry becomes held (its `Pending` was just made).
    pub(super) fn hold_front(&mut self) {
        if let Some(entry) = self.blocks.front_mut().and_then(|b| b.front_mut()) {
            if !entry.is_held() {
                *entry = Waiting::held(entry.id);
                self.spooled -= 1;
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Waiting> {
        self.blocks.iter().flatten()
    }

    /// Empties the queue and returns its entries (the topic names stay).
    pub(super) fn take_all(&mut self) -> Vec<Waiting> {
        let entries: Vec<Waiting> = self.iter().copied().collect();
        self.blocks.clear();
        self.len = 0;
        self.spooled = 0;
        entries
    }

    /// Queues entries that came from `take_all`, in the given order.
    pub(super) fn extend(&mut self, entries: impl IntoIterator<Item = Waiting>) {
        for entry in entries {
            self.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn topic(name: &str) -> Topic {
        Topic::from(CString::new(name).unwrap())
    }

    fn spooled(job_id: u32, event: Event, name: &str, owner: u64, at: Location) -> Spooled {
        Spooled { job_id, event, topic: topic(name), owner, at }
    }

    fn at(segment: u64, offset: u64, len: u32, zstd_len: Option<u32>) -> Location {
        Location { segment, suffix: Suffix::Dlv, offset, len, zstd_len }
    }

    #[test]
    fn an_entry_is_32_bytes() {
        // The budget per waiting record; a field added here must fit it.
        assert_eq!(std::mem::size_of::<Waiting>(), 32);
    }

    #[test]
    fn a_spooled_entry_gives_back_what_was_packed() {
        let mut queue = WaitingQueue::default();
        let records = [
            spooled(7, Event::Finish, "jobs", 40, at(41, 123_456, 900, Some(3000))),
            spooled(8, Event::Start, "jobs-job-start", 41, at(41, 9, 2500, None)),
            spooled(u32::MAX, Event::Finish, "jobs", 12, at(10, u64::from(u32::MAX), u32::MAX, Some(0))),
            spooled(9, Event::Finish, "jobs", 3, Location { segment: 3, suffix: Suffix::Snap, offset: 0, len: 1, zstd_len: None }),
        ];
        for (i, record) in records.iter().enumerate() {
            assert!(queue.push_spooled(100 + i as u64, record), "{record:?}");
        }
        let back: Vec<(u64, Spooled)> = queue.iter().map(|e| (e.id(), queue.unpack(e).unwrap())).collect();
        let expected: Vec<(u64, Spooled)> = records.iter().cloned().enumerate().map(|(i, r)| (100 + i as u64, r)).collect();
        assert_eq!(back, expected);
        assert_eq!(queue.spooled_len(), 4);
    }

    #[test]
    fn a_record_that_does_not_fit_is_refused_not_truncated() {
        let mut queue = WaitingQueue::default();
        let too_far = u64::from(u32::MAX) + 1;
        assert!(!queue.push_spooled(1, &spooled(1, Event::Finish, "t", 5, at(too_far, 0, 1, None))), "segment above u32");
        assert!(!queue.push_spooled(2, &spooled(1, Event::Finish, "t", 5, at(5, too_far, 1, None))), "offset above u32");
        assert!(!queue.push_spooled(3, &spooled(1, Event::Finish, "t", 100_000, at(5, 0, 1, None))), "owner too far");
        assert!(queue.is_empty());
        for i in 0..256 {
            assert!(queue.push_spooled(i, &spooled(1, Event::Finish, &format!("t{i}"), 5, at(5, 0, 1, None))));
        }
        assert!(!queue.push_spooled(999, &spooled(1, Event::Finish, "one-too-many", 5, at(5, 0, 1, None))), "257th topic");
        assert_eq!(queue.len(), 256);
    }

    #[test]
    fn order_is_kept_across_blocks_and_emptied_blocks_are_freed() {
        let mut queue = WaitingQueue::default();
        let n = BLOCK as u64 * 3 + 5;
        for id in 0..n {
            if id % 3 == 0 {
                queue.push_held(id);
            } else {
                assert!(queue.push_spooled(id, &spooled(id as u32, Event::Finish, "t", 2, at(2, id, 10, None))));
            }
        }
        assert_eq!(queue.blocks.len(), 4);
        assert_eq!(queue.spooled_len(), (0..n).filter(|id| id % 3 != 0).count());
        for id in 0..BLOCK as u64 {
            assert_eq!(queue.pop_front().map(|e| e.id()), Some(id));
        }
        assert_eq!(queue.blocks.len(), 3, "the first block is freed as soon as it is empty");
        let rest: Vec<u64> = std::iter::from_fn(|| queue.pop_front()).map(|e| e.id()).collect();
        assert_eq!(rest, (BLOCK as u64..n).collect::<Vec<_>>());
        assert_eq!((queue.len(), queue.spooled_len(), queue.blocks.len()), (0, 0, 0));
    }

    #[test]
    fn holding_the_front_entry_keeps_its_place_and_counts_it_held() {
        let mut queue = WaitingQueue::default();
        assert!(queue.push_spooled(5, &spooled(1, Event::Finish, "t", 2, at(2, 0, 10, None))));
        queue.push_held(6);
        queue.hold_front();
        let front = *queue.front().unwrap();
        assert!(front.is_held() && front.id() == 5);
        assert_eq!(queue.unpack(&front), None);
        assert_eq!((queue.len(), queue.spooled_len()), (2, 0));
    }

    #[test]
    fn take_all_then_extend_keeps_entries_and_counts() {
        let mut queue = WaitingQueue::default();
        queue.push_held(1);
        assert!(queue.push_spooled(2, &spooled(1, Event::Start, "s", 2, at(2, 0, 10, None))));
        let entries = queue.take_all();
        assert!(queue.is_empty() && queue.spooled_len() == 0);
        queue.extend(entries.iter().rev().copied());
        let ids: Vec<u64> = queue.iter().map(|e| e.id()).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(queue.spooled_len(), 1);
        assert_eq!(queue.unpack(queue.front().unwrap()).unwrap().topic, topic("s"));
    }
}
