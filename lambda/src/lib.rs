//! Composition root: configuration and the jobs, shared by the `finops` CLI and the Lambda
//! `bootstrap` binary. Thin: it wires the crates, it does not compute.

pub mod alerting;
pub mod config;
pub mod job;
pub mod monthly;
