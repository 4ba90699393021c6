//! Apply progress: an indicatif bar with step lines on a terminal, plain lines otherwise.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::Reporter;
use crate::provider::Action;

/// Plain line-per-event progress, for pipes and CI logs.
pub struct PlainReporter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl PlainReporter {
    /// Writes to standard output.
    pub fn stdout() -> PlainReporter {
        PlainReporter {
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    fn line(&self, s: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed pipe must not kill the apply: ignore write errors.
        let _ = writeln!(out, "{s}");
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::NoOp => "already up to date",
        Action::Run => "ran",
        Action::Create => "created",
        Action::Update => "updated",
        Action::Delete => "deleted",
        Action::Replace => "replaced",
    }
}

fn doing(action: Action) -> &'static str {
    match action {
        Action::NoOp => "checking",
        Action::Run => "running",
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Delete => "deleting",
        Action::Replace => "replacing",
    }
}

impl Reporter for PlainReporter {
    fn step_started(&self, address: &str, action: Action) {
        self.line(&format!("{address}: {}...", doing(action)));
    }
    fn step_finished(&self, address: &str, action: Action, elapsed: Duration) {
        self.line(&format!(
            "{address}: {} [{:.1}s]",
            verb(action),
            elapsed.as_secs_f64()
        ));
    }
    fn step_skipped(&self, address: &str, why: &str) {
        self.line(&format!("{address}: skipped ({why})"));
    }
    fn step_failed(&self, address: &str, error: &str) {
        self.line(&format!(
            "{address}: FAILED\n  {}",
            error.replace('\n', "\n  ")
        ));
    }
    fn step_in_doubt(&self, address: &str, reason: &str) {
        self.line(&format!(
            "{address}: IN DOUBT\n  {}",
            reason.replace('\n', "\n  ")
        ));
    }
    fn notice(&self, message: &str) {
        self.line(message);
    }
}

/// A progress bar on standard error with step lines printed above it.
pub struct BarReporter {
    bar: ProgressBar,
}

impl BarReporter {
    /// A bar for `total` steps.
    pub fn new(total: u64) -> BarReporter {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        BarReporter { bar }
    }
}

impl Reporter for BarReporter {
    fn step_started(&self, address: &str, action: Action) {
        self.bar.set_message(format!("{} {address}", doing(action)));
    }
    fn step_finished(&self, address: &str, action: Action, elapsed: Duration) {
        self.bar.println(format!(
            "{address}: {} [{:.1}s]",
            verb(action),
            elapsed.as_secs_f64()
        ));
        self.bar.inc(1);
    }
    fn step_skipped(&self, address: &str, why: &str) {
        self.bar.println(format!("{address}: skipped ({why})"));
        self.bar.inc(1);
    }
    fn step_failed(&self, address: &str, error: &str) {
        self.bar.println(format!(
            "{address}: FAILED\n  {}",
            error.replace('\n', "\n  ")
        ));
        self.bar.inc(1);
    }
    fn step_in_doubt(&self, address: &str, reason: &str) {
        self.bar.println(format!(
            "{address}: IN DOUBT\n  {}",
            reason.replace('\n', "\n  ")
        ));
        self.bar.inc(1);
    }
    fn notice(&self, message: &str) {
        self.bar.println(message);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
