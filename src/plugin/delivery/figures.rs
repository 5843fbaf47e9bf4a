//! The metrics file (JobCompParams `metrics_file`): what this thread counts,
//! and the figures gathered from its state every `metrics_interval` and at fini.

use super::super::{event_index, event_label, unix_now, Counters, Topic, REFUSED_DIR};
use super::Delivery;
use crate::metrics::{self, Clock, FailureKind, Figures, LatencyHistogram, MetricsFile, PerTopic};
use crate::ops;
use crate::slurm::log;
use crate::snapshot::Event;
use crate::spool::{self, Location};
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
        // The oldest record (the lowest id: ids follow the order records were
        // taken; `jobcomp-kafka status` reports the same one), and where its
        // text is when it is a spooled entry.
        let mut oldest: Option<(u64, Option<(Event, Location)>)> = None;
        for (id, pending) in &self.records {
            let figures = per_topic(&mut topics, &pending.topic, pending.event);
            figures.waiting += 1;
            let bytes = pending.payload.as_ref().map(|p| p.len()).or(pending.payload_at.map(|at| at.len as usize));
            figures.waiting_bytes += bytes.unwrap_or(0) as u64;
            if oldest.is_none_or(|(o, _)| *id < o) {
                oldest = Some((*id, None));
            }
        }
        for entry in self.queue.iter() {
            let Some(spooled) = self.queue.unpack(entry) else { continue };
            let figures = per_topic(&mut topics, &spooled.topic, spooled.event);
            figures.waiting += 1;
            figures.waiting_bytes += u64::from(entry.spooled_len());
            if oldest.is_none_or(|(o, _)| entry.id() < o) {
                oldest = Some((entry.id(), Some((spooled.event, spooled.at))));
            }
        }
        let oldest_age = oldest.map_or(0, |(id, spooled)| (now - self.record_time(id, spooled)).max(0));
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
    /// known yet (a record recovered after a crash, a spooled entry), then
    /// kept (a spooled entry's in `oldest_spooled_time`: the oldest record
    /// stays the same one through an outage). `spooled`: its event and the
    /// place of its text when it is a spooled entry.
    fn record_time(&mut self, id: u64, spooled: Option<(Event, Location)>) -> i64 {
        if let Some((event, at)) = spooled {
            if let Some((_, time)) = self.oldest_spooled_time.filter(|(known, _)| *known == id) {
                return time;
            }
            let time = self.time_in_text(event, None, Some(at));
            self.oldest_spooled_time = Some((id, time));
            return time;
        }
        let Some(pending) = self.records.get(&id) else { return unix_now() };
        if pending.time != 0 {
            return pending.time;
        }
        let (event, payload, at) = (pending.event, pending.payload.clone(), pending.payload_at);
        let time = self.time_in_text(event, payload, at);
        if let Some(pending) = self.records.get_mut(&id) {
            pending.time = time;
        }
        time
    }

    /// The job event's time in a record's JSON text: `payload`, else the text
    /// read from the spool at `at`; now when neither gives one.
    fn time_in_text(&mut self, event: Event, payload: Option<Vec<u8>>, at: Option<Location>) -> i64 {
        let text = payload.or_else(|| self.log.as_mut()?.read(&at?).ok());
        text.and_then(|t| ops::payload_time(event, &t)).unwrap_or_else(unix_now)
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
