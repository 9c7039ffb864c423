//! Progress of long stages, on a terminal only.

use std::io::IsTerminal;

use finops_ingest::Progress;

/// Progress on a terminal (a bar for bytes, a spinner for the other stages), nothing otherwise
/// (logs, Lambda, CI) or under `--quiet`. On stderr, so stdout stays the run's summary.
pub struct TerminalProgress(indicatif::ProgressBar);

impl TerminalProgress {
    pub fn new(quiet: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() && !quiet { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
        TerminalProgress(bar)
    }
}

impl Progress for TerminalProgress {
    fn start(&self, what: &str, total: u64) {
        self.0.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})").expect("valid template").progress_chars("=> "));
        self.0.set_message(what.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn stage(&self, what: &str) {
        self.0.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
        self.0.set_message(what.to_string());
        self.0.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    fn finish(&self) {
        self.0.disable_steady_tick();
        self.0.set_message("");
        self.0.set_style(indicatif::ProgressStyle::with_template("").expect("valid template"));
        self.0.tick();
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
