//! Progress on long work: a spinner when stderr is a terminal, plain lines
//! otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(message: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            stderrln!("{message}");
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// One line of detail: replaces the spinner's message on a terminal,
    /// printed indented otherwise.
    pub fn detail(&self, line: &str) {
        match &self.bar {
            // Engine output (a build's steps) can hold control bytes.
            Some(bar) => bar.set_message(truncate(&crate::output::printable_field(line), 100)),
            None => stderrln!("  {line}"),
        }
    }

    /// Done, with nothing to add: the spinner goes away (a plain line
    /// was already printed without a terminal).
    pub fn clear(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn finish(self, message: &str) {
        match self.bar {
            Some(bar) => bar.finish_with_message(message.to_string()),
            None => stderrln!("{message}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}
