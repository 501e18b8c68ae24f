//! Progress of long work (synth, record, replay) on a terminal: windows and bytes done, their
//! rate and the time left. Nothing is drawn when stderr is not a terminal (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over windows; a no-op off a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: u64,
    started: Instant,
}

impl Progress {
    /// A bar for `windows` windows of `what` ("synth", "replay", ...).
    pub fn windows(what: &str, windows: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(windows), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} windows ({per_sec}), {msg}, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(what.to_string());
            bar
        });
        Progress { bar, bytes: 0, started: Instant::now() }
    }

    /// Whether anything is drawn.
    pub fn visible(&self) -> bool {
        self.bar.is_some()
    }

    /// One more window done, of `bytes` bytes.
    pub fn window(&mut self, bytes: u64) {
        self.bytes += bytes;
        let Some(bar) = &self.bar else { return };
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{} ({}/s)",
            HumanBytes(self.bytes),
            HumanBytes((self.bytes as f64 / seconds) as u64)
        ));
        bar.inc(1);
    }

    /// Clears the bar (the caller logs the summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_nothing_off_a_terminal() {
        // cargo test captures stderr: not a terminal.
        let mut progress = Progress::windows("test", 3);
        assert_eq!(progress.visible(), std::io::stderr().is_terminal());
        progress.window(100);
        progress.window(50);
        assert_eq!(progress.bytes, 150);
        progress.finish();
    }
}
