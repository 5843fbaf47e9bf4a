//! Which partition a running job's start record went to, so that its finish
//! record goes to the same one.
//!
//! Both records carry the job id as their key, and librdkafka's partitioner
//! maps a key to a partition by the topic's partition count. When partitions
//! are added while a job runs (kafka-topics --alter), its finish record would
//! go to another partition than its start record, and a consumer would have
//! no order between the two (scenario 8 of docs/kafka-cluster.md: 16 jobs
//! split). Only when both events go to one topic (25.05+, enable_job_start
//! with topic_job_start equal to topic): in two topics there is no order
//! between them to keep.
//!
//! Kept in memory, one entry per running job whose start record Kafka has
//! acknowledged: a start not yet acknowledged when the finish is produced, or
//! a slurmctld restart in between, leaves the finish to the partitioner.

use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct JobPartitions {
    start_partition: HashMap<u32, i32>,
}

impl JobPartitions {
    /// A start record of `job_id` was delivered to `partition`.
    pub(super) fn started(&mut self, job_id: u32, partition: i32) {
        self.start_partition.insert(job_id, partition);
    }

    /// The partition for the finish record of `job_id` (None: the partitioner's).
    /// `same_topic`: the start and finish records go to one topic.
    pub(super) fn for_finish(&self, job_id: u32, same_topic: bool) -> Option<i32> {
        if !same_topic {
            return None;
        }
        self.start_partition.get(&job_id).copied()
    }

    /// The finish record was delivered, or its pinned partition refused (the
    /// topic was recreated with fewer partitions): the job needs no entry.
    pub(super) fn forget(&mut self, job_id: u32) {
        self.start_partition.remove(&job_id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.start_partition.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finish_goes_where_its_start_went_and_the_entry_then_goes() {
        let mut partitions = JobPartitions::default();
        assert_eq!(partitions.for_finish(7, true), None, "no start seen: the partitioner decides");
        partitions.started(7, 2);
        partitions.started(8, 0);
        assert_eq!(partitions.for_finish(7, true), Some(2));
        assert_eq!(partitions.for_finish(8, true), Some(0));
        assert_eq!(partitions.for_finish(7, false), None, "two topics: no order to keep");
        // A finish that failed and is retried still gets the partition.
        assert_eq!(partitions.for_finish(7, true), Some(2));
        partitions.forget(7);
        assert_eq!(partitions.for_finish(7, true), None);
        assert_eq!(partitions.len(), 1);
    }

    #[test]
    fn a_requeued_job_follows_its_latest_start() {
        let mut partitions = JobPartitions::default();
        partitions.started(9, 1);
        partitions.started(9, 4);
        assert_eq!(partitions.for_finish(9, true), Some(4));
        assert_eq!(partitions.len(), 1);
    }
}
