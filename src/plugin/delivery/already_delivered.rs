//! At start after a crash: the records recovered from the spool that Kafka
//! already holds are retired instead of produced again (see kafka::tail).

use super::super::RECORD_ID_HEADER;
use super::{Delivery, Topic};
use crate::kafka;
use crate::slurm::log;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long the delivery thread reads topics back before it gives up and
/// produces the recovered records again. Long enough for a partition whose
/// leader died with slurmctld to get a new one (broker.session.timeout.ms is
/// 9 s by default); new records wait in the spool meanwhile.
const READ_BACK_WITHIN: Duration = Duration::from_secs(15);

/// Records read per partition beyond the number of recovered records: the
/// records a crashed run had in flight are the newest of their partitions,
/// behind at most the ones it had delivered and acknowledged just before.
const READ_BACK_MARGIN: i64 = 1000;

impl Delivery {
    /// `recovered`: ids of records recovered from the spool with their JSON
    /// text (those may have been produced before the crash). Each one found at
    /// the tail of its topic with the same record id and the same bytes is
    /// acknowledged in the spool and not produced again.
    pub(super) fn retire_records_already_in_kafka(&mut self, recovered: &[u64]) {
        if recovered.is_empty() {
            return;
        }
        // Kafka not set up: nothing to read with; the records wait as in an outage.
        let Some(properties) = self.producer().map(|p| p.properties().to_vec()) else { return };
        let mut by_topic: HashMap<Topic, HashSet<u64>> = HashMap::new();
        for id in recovered {
            if let Some(pending) = self.records.get(id) {
                by_topic.entry(pending.topic.clone()).or_default().insert(*id);
            }
        }
        for (topic, wanted) in by_topic {
            let name = topic.to_string_lossy().into_owned();
            let per_partition = wanted.len() as i64 + READ_BACK_MARGIN;
            match kafka::find_at_tail(&properties, &topic, per_partition, RECORD_ID_HEADER, &wanted, READ_BACK_WITHIN) {
                Ok(found) => {
                    let mut retired = 0;
                    for (id, bytes) in found.records {
                        let Some(spooled) = self.take_payload(id) else { continue };
                        if spooled == bytes {
                            if let Some(pending) = self.records.remove(&id) {
                                self.acks.push((id, pending.owner));
                                retired += 1;
                            }
                        } else {
                            self.keep_payload(id, spooled);
                        }
                    }
                    log::info(&format!(
                        "Kafka topic {name}: {retired} of the {} record(s) recovered from the spool were already \
                         there (delivered before slurmctld stopped); they are not produced again ({} record(s) read back)",
                        wanted.len(),
                        found.read
                    ));
                }
                Err(e) => log::warning(&format!(
                    "cannot read Kafka topic {name} back to see which of the {} record(s) recovered from the spool \
                     reached it before slurmctld stopped ({e}); they are produced again, and a consumer may read \
                     some twice (same {} header)",
                    wanted.len(),
                    RECORD_ID_HEADER.to_string_lossy()
                )),
            }
        }
        self.write_acks();
    }
}
