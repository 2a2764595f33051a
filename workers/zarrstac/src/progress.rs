//! The progress bar of long runs, which also prints each failure on its own line.

use indicatif::{ProgressBar, ProgressStyle};
use zarrstac_pipeline::{Finished, Outcome, Progress};

pub struct Bar(ProgressBar);

impl Bar {
    /// A bar over `len` sources.
    pub fn new(len: u64) -> Bar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn finished(&self, f: &Finished) {
        self.0.inc(1);
        match &f.outcome {
            Outcome::Failed(failure) => self
                .0
                .suspend(|| eprintln!("error: {}: {}", f.source, failure.message)),
            _ => self
                .0
                .set_message(f.source.rsplit('/').next().unwrap_or_default().to_string()),
        }
    }
}
