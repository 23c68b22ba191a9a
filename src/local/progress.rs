//! What `run -f` tells the person watching: a line per state change, and a progress bar per
//! batch when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::BatchStatus;

/// Shared by all batches of a run.
#[derive(Clone)]
pub struct Reporter {
    bars: Option<MultiProgress>,
}

impl Reporter {
    /// Bars only when stderr is a terminal (and `enabled`).
    pub fn new(enabled: bool) -> Self {
        let bars = (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { bars }
    }

    /// Prints a line above the bars.
    pub fn say(&self, line: impl AsRef<str>) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line.as_ref());
            }
            None => eprintln!("{}", line.as_ref()),
        }
    }

    /// A bar for one batch (hidden without a terminal).
    pub fn batch(&self, object: &str) -> BatchProgress {
        let bar = match &self.bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} {msg}")
                        .expect("static template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(object.to_string());
                bar
            }
            None => ProgressBar::hidden(),
        };
        BatchProgress {
            reporter: self.clone(),
            object: object.to_string(),
            bar,
            last: None,
        }
    }
}

/// Reports one batch's changes.
pub struct BatchProgress {
    reporter: Reporter,
    object: String,
    bar: ProgressBar,
    last: Option<String>,
}

impl BatchProgress {
    /// Prints a line when the phase or its headline changed; moves the bar.
    pub fn update(&mut self, status: &BatchStatus) {
        let phase = status.phase.unwrap_or_default();
        if let Some(counts) = &status.request_counts {
            self.bar.set_length(counts.total);
            self.bar.set_position(counts.completed + counts.failed);
        }
        self.bar.set_message(phase.to_string());
        let line = status.headline();
        if self.last.as_ref() != Some(&line) {
            self.reporter.say(format!("{}: {line}", self.object));
            self.last = Some(line);
        }
    }

    /// Prints a line above the bars.
    pub fn say(&self, line: impl AsRef<str>) {
        self.reporter.say(line);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
