//! The plugin's own threads, and librdkafka's, give way to slurmctld's.
//!
//! They run in slurmctld's process and would otherwise compete with its RPC and
//! scheduling threads on equal terms: a delivery thread or a librdkafka broker
//! thread waking up could preempt a slurmctld thread in the middle of its work
//! (even in the middle of log_record, with the job write lock held). Measured
//! in make bench: broker-dependent tails of the hot path in the paced runs.

/// Makes the calling thread a background thread: `SCHED_BATCH`, which the
/// kernel never lets preempt another thread when it wakes up (it waits for the
/// running one's time slice), with the same share of CPU otherwise. Needs no
/// privilege (it only lowers the thread's claim). A failure is harmless and
/// ignored: the thread then simply keeps the default policy.
pub fn lower_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0 means "this thread"
    // on Linux, where scheduling policies are per thread).
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}
