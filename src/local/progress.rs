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
                bar.set_style(style(false));
                bar.set_prefix(object.to_string());
                bar
            }
            None => ProgressBar::hidden(),
        };
        BatchProgress {
            reporter: self.clone(),
            object: object.to_string(),
            bar,
            sized: false,
            last: None,
        }
    }
}

/// The line of a batch: its name and phase, and a bar once its total is known (a bar at 0/0
/// would look finished before anything ran).
fn style(sized: bool) -> ProgressStyle {
    let template = match sized {
        true => "{prefix:.bold} [{bar:30}] {pos}/{len} {msg}",
        false => "{prefix:.bold} {msg}",
    };
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

/// Whether counts with this total can be drawn as a bar.
fn sized(total: u64) -> bool {
    total > 0
}

/// Reports one batch's changes.
pub struct BatchProgress {
    reporter: Reporter,
    object: String,
    bar: ProgressBar,
    /// The bar is drawn (the total is known).
    sized: bool,
    last: Option<String>,
}

impl BatchProgress {
    /// Prints a line when the phase or its headline changed; moves the bar.
    pub fn update(&mut self, status: &BatchStatus) {
        let phase = status.phase.unwrap_or_default();
        if let Some(counts) = status.request_counts.as_ref().filter(|c| sized(c.total)) {
            if !self.sized {
                self.bar.set_style(style(true));
                self.sized = true;
            }
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

#[cfg(test)]
mod tests {
    #[test]
    fn no_bar_is_drawn_before_the_total_is_known() {
        assert!(!super::sized(0), "0/0 would be drawn full");
        assert!(super::sized(20));
    }
}
