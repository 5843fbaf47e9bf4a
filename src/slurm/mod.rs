//! The Slurm boundary: the only module that reads Slurm memory.
pub mod layouts;
