//! Composition root: configuration and the jobs, shared by the `finops` CLI and (later) the
//! Lambda `bootstrap` binary. Thin: it wires the crates, it does not compute.

pub mod config;
pub mod alerting;
pub mod monthly;
