//! The metrics file (JobCompParams `metrics_file`): what this thread counts,
//! and the figures gathered from its state every `metrics_interval` and at fini.

use super::super::{event_index, event_label, unix_now, Counters, Topic, REFUSED_DIR};
use super::Delivery;
use crate::metrics::{self, Clock, FailureKind, Figures, LatencyHistogram, MetricsFile, PerTopic};
use crate::ops;
use crate::slurm::log;
use crate::snapshot::Event;
use crate::spool;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Counted by the delivery thread only: plain numbers, no atomics.
#[derive(Default)]
pub(in crate::plugin) struct Stats {
    pub(in crate::plugin) file: Option<MetricsFile>,
    delivered: HashMap<(Topic, Event), u64>,
    refused: HashMap<(Topic, Event), u64>,
    failures: [u64; 3],
    last_delivery: i64,
    /// The last write failed (one error line per run of failures).
    failing: bool,
}

impl Stats {
    /// The metrics file, checked at init; `None` with an error line when it
    /// cannot be written (the plugin runs on without metrics).
    pub(in crate::plugin) fn open(path: Option<&Path>) -> Stats {
        let file = path.and_then(|path| match MetricsFile::open(path) {
            Ok(file) => Some(file),
            Err(e) => {
                log::error(&format!("JobCompParams {e}; running without metrics (fix the path, then restart slurmctld)"));
                None
            }
        });
        Stats { file, ..Stats::default() }
    }

    pub(super) fn delivered(&mut self, topic: &Topic, event: Event) {
        *self.delivered.entry((topic.clone(), event)).or_default() += 1;
        self.last_delivery = unix_now();
    }

    pub(super) fn refused(&mut self, topic: &Topic, event: Event) {
        *self.refused.entry((topic.clone(), event)).or_default() += 1;
    }

    pub(super) fn failed(&mut self, kind: FailureKind) {
        self.failures[kind as usize] += 1;
    }
}

/// The hot path's histogram, when metrics are on: the TSC's rate is measured
/// here, once (10 ms).
pub(in crate::plugin) fn counters_for(stats: &Stats) -> Counters {
    let latency = stats.file.as_ref().map(|_| LatencyHistogram::new(Clock::new(Duration::from_millis(10))));
    Counters { latency, ..Counters::default() }
}

impl Delivery {
    /// Rewrites the metrics file (when metrics are on).
    pub(super) fn write_metrics(&mut self) {
        if self.stats.file.is_none() {
            return;
        }
        let text = metrics::render(&self.figures());
        let Some(file) = self.stats.file.as_ref() else { return };
        match file.write(&text) {
            Ok(()) => self.stats.failing = false,
            Err(e) if !self.stats.failing => {
                self.stats.failing = true;
                log::error(&format!("cannot write the metrics file {}: {e}", file.path().display()));
            }
            Err(_) => {}
        }
    }

    fn figures(&mut self) -> Figures {
        let now = unix_now();
        let mut topics = TopicFigures::new();
        // The configured topics always show, at zero when nothing happened.
        per_topic(&mut topics, &self.settings.topic, Event::Finish);
        if self.settings.params.enable_job_start {
            per_topic(&mut topics, &self.settings.start_topic, Event::Start);
        }
        for ((topic, event), count) in &self.stats.delivered {
            per_topic(&mut topics, topic, *event).delivered = *count;
        }
        for ((topic, event), count) in &self.stats.refused {
            per_topic(&mut topics, topic, *event).refused = *count;
        }
        let mut oldest: Option<u64> = None;
        for (id, pending) in &self.records {
            let figures = per_topic(&mut topics, &pending.topic, pending.event);
            figures.waiting += 1;
            let bytes = pending.payload.as_ref().map(|p| p.len()).or(pending.payload_at.map(|at| at.len as usize));
            figures.waiting_bytes += bytes.unwrap_or(0) as u64;
            oldest = Some(oldest.map_or(*id, |o| o.min(*id)));
        }
        for entry in self.queue.iter() {
            let Some(spooled) = self.queue.unpack(entry) else { continue };
            let figures = per_topic(&mut topics, &spooled.topic, spooled.event);
            figures.waiting += 1;
            figures.waiting_bytes += u64::from(entry.spooled_len());
            oldest = Some(oldest.map_or(entry.id(), |o| o.min(entry.id())));
        }
        // The oldest record is the one with the lowest id (ids follow the order
        // records were taken); `jobcomp-kafka status` reports the same one.
        let oldest_age = oldest.map_or(0, |id| (now - self.record_time(id)).max(0));
        let counters = &self.counters;
        Figures {
            version: env!("CARGO_PKG_VERSION").to_string(),
            slurm_release: self.release.to_string(),
            taken: [Event::Finish, Event::Start]
                .iter()
                .map(|e| (event_label(*e), counters.taken[event_index(*e)].load(Ordering::Relaxed)))
                .collect(),
            topics: topics.into_values().collect(),
            failures: self.stats.failures,
            refused_files: self.state_dir.as_ref().map_or(0, |dir| ops::count_refused(&dir.join(REFUSED_DIR))),
            lost: counters.lost.load(Ordering::Relaxed),
            memory_only: counters.memory_only.load(Ordering::Relaxed) as u64,
            oldest_waiting_age_seconds: oldest_age,
            last_delivery_time: self.stats.last_delivery,
            spool_disk_bytes: self.hot.as_ref().map_or(0, |hot| spool::disk_usage(&hot.dir)),
            latency: counters.latency.as_ref().map(|l| l.read()),
            written_at: now,
        }
    }

    /// A waiting record's time; read from its JSON text in the spool when not
    /// known yet (a record recovered after a crash), then kept.
    fn record_time(&mut self, id: u64) -> i64 {
        let Some(pending) = self.records.get(&id) else { return self.spooled_record_time(id) };
        if pending.time != 0 {
            return pending.time;
        }
        let event = pending.event;
        let text = match (&pending.payload, pending.payload_at) {
            (Some(payload), _) => Some(payload.clone()),
            (None, Some(at)) => self.log.as_mut().and_then(|log| log.read(&at).ok()),
            (None, None) => None,
        };
        let time = text.and_then(|t| ops::payload_time(event, &t)).unwrap_or_else(unix_now);
        if let Some(pending) = self.records.get_mut(&id) {
            pending.time = time;
        }
        time
    }
}

impl Delivery {
    /// A spooled entry's record time, read from its JSON text in the spool
    /// (the last one read is kept: the oldest record stays the same one
    /// through an outage).
    fn spooled_record_time(&mut self, id: u64) -> i64 {
        if let Some((known, time)) = self.oldest_spooled_time {
            if known == id {
                return time;
            }
        }
        let Some(spooled) = self.queue.iter().find(|e| e.id() == id).and_then(|e| self.queue.unpack(e)) else {
            return unix_now();
        };
        let text = self.log.as_mut().and_then(|log| log.read(&spooled.at).ok());
        let time = text.and_then(|t| ops::payload_time(spooled.event, &t)).unwrap_or_else(unix_now);
        self.oldest_spooled_time = Some((id, time));
        time
    }
}

type TopicFigures = BTreeMap<(&'static str, Vec<u8>), PerTopic>;

fn per_topic<'a>(topics: &'a mut TopicFigures, topic: &Topic, event: Event) -> &'a mut PerTopic {
    topics.entry((event_label(event), topic.to_bytes().to_vec())).or_insert_with(|| PerTopic {
        topic: topic.to_string_lossy().into_owned(),
        event: event_label(event),
        ..PerTopic::default()
    })
}

/// A record's time as `status` and the metrics show it: the job's end (a
/// finish record) or start (a start record).
pub(super) fn event_time(job: &crate::snapshot::JobSnapshot, event: Event) -> i64 {
    ops::event_time(job, event)
}
