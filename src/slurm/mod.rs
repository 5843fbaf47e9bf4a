//! The Slurm boundary: the only module that reads Slurm memory (and the only
//! `unsafe` code besides the librdkafka layer in `kafka`).
//!
//! - `entry`: the exported symbols, each behind catch_unwind.
//! - `job`: reads `job_record_t` of each layout into a `JobSnapshot`.
//! - `host`: slurm_conf, the association lock, "is this slurmctld?".
//! - `log`: slurmctld's log functions.
//! - `guard`, `memory`: the run-time layout guard's checked reads (pure
//!   checks in `crate::guard`).
//! - `layouts`: bindgen output for slurm-headers/.
pub mod entry;
pub mod guard;
pub mod host;
pub mod job;
pub mod layouts;
pub mod log;
pub mod memory;
