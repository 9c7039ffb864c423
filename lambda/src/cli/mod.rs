//! The `finops` command line, apart from its entry point.

pub mod args;
pub mod commands;
pub mod progress;
