//! Progress of long work (backups, restores, defragmentation, mirrors, checks): on a terminal
//! a bar on stderr with what is done, the rate and the time left (indicatif); otherwise a
//! plain line on stderr every 10 s, so the log of a long run says how far it got while a
//! short run prints nothing more than etcdctl's would.

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a plain line is written when no terminal watches.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Keys,
    Seconds,
}

struct Plain {
    every: Duration,
    last: Instant,
    printed: bool,
    out: Box<dyn Write + Send>,
}

pub struct Progress {
    bar: ProgressBar,
    what: String,
    unit: Unit,
    /// Without a terminal: where and how often plain lines go.
    plain: Option<Mutex<Plain>>,
}

impl Progress {
    /// A bar on a terminal (stdout and stderr both), plain lines on stderr otherwise.
    pub fn new(what: impl Into<String>, total: Option<u64>, unit: Unit) -> Progress {
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Progress::bar(what.into(), total, unit)
        } else {
            Progress::plain(
                what.into(),
                total,
                unit,
                PLAIN_EVERY,
                Box::new(std::io::stderr()),
            )
        }
    }

    fn bar(what: String, total: Option<u64>, unit: Unit) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        let p = Progress {
            bar,
            what,
            unit,
            plain: None,
        };
        p.style(total.is_some());
        p.bar.set_message(p.what.clone());
        p.bar.set_draw_target(ProgressDrawTarget::stderr());
        p
    }

    /// A bar with the amount, rate and time left once the total is known; a spinner with
    /// the time taken before.
    fn style(&self, known_total: bool) {
        let amount = match self.unit {
            Unit::Bytes => "{bytes}/{total_bytes} {bytes_per_sec}",
            Unit::Keys => "{human_pos}/{human_len} keys {per_sec}",
            Unit::Seconds => "{elapsed}/{duration}",
        };
        let template = if known_total {
            format!("{{msg}} [{{bar:30}}] {amount} {{eta}} left")
        } else {
            "{spinner} {msg} {elapsed}".to_string()
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        if known_total {
            self.bar.disable_steady_tick();
        } else {
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// Plain lines to `out` at most every `every`.
    pub fn plain(
        what: String,
        total: Option<u64>,
        unit: Unit,
        every: Duration,
        out: Box<dyn Write + Send>,
    ) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        Progress {
            bar,
            what,
            unit,
            plain: Some(Mutex::new(Plain {
                every,
                last: Instant::now(),
                printed: false,
                out,
            })),
        }
    }

    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
        if self.plain.is_none() {
            self.style(true);
        }
    }

    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
        self.maybe_line();
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.maybe_line();
    }

    /// Ends the bar; a run that wrote plain lines ends with one saying what it did.
    pub fn finish(&self) {
        let Some(plain) = &self.plain else {
            self.bar.finish_and_clear();
            return;
        };
        let Ok(mut p) = plain.lock() else { return };
        if p.printed {
            let line = format!(
                "{}: done, {} in {}\n",
                self.what,
                self.amount(self.bar.position()),
                HumanDuration(self.bar.elapsed())
            );
            let _ = p.out.write_all(line.as_bytes());
        }
    }

    fn amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Bytes => HumanBytes(n).to_string(),
            Unit::Keys => format!("{n} keys"),
            Unit::Seconds => format!("{n} s"),
        }
    }

    /// The plain line for where the work stands.
    pub fn line(&self) -> String {
        let done = self.bar.position();
        let mut line = format!("{}: {}", self.what, self.amount(done));
        if let Some(total) = self.bar.length().filter(|t| *t > 0) {
            line.push_str(&format!(
                " of {} ({:.0} %)",
                self.amount(total),
                100.0 * done as f64 / total as f64
            ));
        }
        if self.unit != Unit::Seconds {
            let rate = self.bar.per_sec();
            let rate = match self.unit {
                Unit::Bytes => format!("{}/s", HumanBytes(rate as u64)),
                _ => format!("{rate:.0}/s"),
            };
            line.push_str(&format!(", {rate}"));
        }
        if self.bar.length().is_some() {
            line.push_str(&format!(", {} left", HumanDuration(self.bar.eta())));
        }
        line
    }

    fn maybe_line(&self) {
        let Some(plain) = &self.plain else { return };
        let Ok(mut p) = plain.lock() else { return };
        if p.last.elapsed() < p.every {
            return;
        }
        p.last = Instant::now();
        p.printed = true;
        let line = format!("{}\n", self.line());
        let _ = p.out.write_all(line.as_bytes());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.plain.is_none() && !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_lines_say_what_is_done_of_how_much_and_what_is_left() {
        let sink = Sink::default();
        let p = Progress::plain(
            "snapshot save".into(),
            Some(4 << 20),
            Unit::Bytes,
            Duration::ZERO,
            Box::new(sink.clone()),
        );
        p.set(1 << 20);
        p.finish();
        let text = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("snapshot save: 1.00 MiB of 4.00 MiB (25 %), ")
                && lines[0].ends_with(" left"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("snapshot save: done, 1.00 MiB in "),
            "{text}"
        );
    }

    #[test]
    fn a_short_run_without_a_terminal_prints_nothing() {
        let sink = Sink::default();
        let p = Progress::plain(
            "defrag".into(),
            None,
            Unit::Seconds,
            Duration::from_secs(3600),
            Box::new(sink.clone()),
        );
        p.set(1);
        p.finish();
        assert!(sink.0.lock().expect("lock").is_empty());
    }
}
