//! `finops`: the pipeline's command line. With no flags, `finops run` runs the monthly job on the
//! committed fixtures and writes `out/<YYYY-MM>/`.

use clap::Parser;

mod cli;

/// mimalloc: millions of small, short-lived allocations per month (grain rows, pieces, CSV
/// cells) are its strength; glibc's malloc spent a third of a worst-case month consolidating.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FINOPS_LOG").unwrap_or_else(|_| "warn".into())).with_writer(std::io::stderr).init();
    match cli::commands::run(cli::args::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A rule change over `finops diff --fail-above`: status 2, so a pipeline can tell it
        // from a run that failed.
        Err(e) if e.downcast_ref::<cli::commands::OverLimit>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", cli::commands::error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
