//! Progress of the long commands (`tasks mine`, `eval`, `train`) on stderr: a
//! bar on a terminal, and plain lines where stderr is a file or a pipe (a CI
//! log, an overnight job), which indicatif leaves blank. A plain line is
//! written when the work starts, then at most every [`EVERY`] while it moves,
//! and when it ends; lines the command prints through [`Bar::println`] always
//! come out.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often, at most, a plain progress line is written.
pub const EVERY: Duration = Duration::from_secs(15);

pub struct Bar {
    bar: indicatif::ProgressBar,
    /// `Some` where stderr is not a terminal.
    plain: Option<Mutex<Lines>>,
}

impl Bar {
    /// A bar drawn with `template` (indicatif's) on a terminal; elsewhere
    /// plain lines that start with `what`.
    pub fn new(what: &str, template: &str, len: u64) -> Bar {
        let bar = indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(template).expect("the template is valid"),
        );
        let plain = (!std::io::stderr().is_terminal())
            .then(|| Mutex::new(Lines::new(what, len, Instant::now())));
        Bar { bar, plain }
    }

    fn plain(&self, f: impl FnOnce(&mut Lines, Instant) -> Option<String>) {
        if let Some(lines) = &self.plain {
            let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(line) = f(&mut lines, Instant::now()) {
                eprintln!("{line}");
            }
        }
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.plain(|l, now| l.message(&msg, now));
        self.bar.set_message(msg);
    }

    pub fn set_length(&self, len: u64) {
        self.plain(|l, now| l.length(len, now));
        self.bar.set_length(len);
    }

    pub fn set_position(&self, pos: u64) {
        self.plain(|l, now| l.position(pos, now));
        self.bar.set_position(pos);
    }

    /// A line of its own, above the bar on a terminal.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.plain {
            Some(_) => eprintln!("{}", line.as_ref()),
            None => self.bar.println(line.as_ref()),
        }
    }

    pub fn finish_and_clear(&self) {
        self.plain(|l, now| l.finish(now));
        self.bar.finish_and_clear();
    }
}

/// The plain lines' state: what was last said, and when.
#[derive(Debug)]
pub struct Lines {
    what: String,
    msg: String,
    pos: u64,
    len: u64,
    /// When the last line was written (`None`: not yet), and what it said.
    last: Option<(Instant, String)>,
    started: Instant,
}

impl Lines {
    pub fn new(what: &str, len: u64, now: Instant) -> Lines {
        Lines {
            what: what.to_string(),
            msg: String::new(),
            pos: 0,
            len,
            last: None,
            started: now,
        }
    }

    fn line(&self, now: Instant) -> String {
        let mut s = format!("{}: {}", self.what, self.pos);
        if self.len > 0 {
            s.push_str(&format!("/{}", self.len));
        }
        if !self.msg.is_empty() {
            s.push_str(&format!(" {}", self.msg));
        }
        s.push_str(&format!(
            " ({}s)",
            now.duration_since(self.started).as_secs()
        ));
        s
    }

    /// The line to write now, if one is due: the first, then one that says
    /// something new at least [`EVERY`] after the last.
    fn due(&mut self, now: Instant) -> Option<String> {
        let line = self.line(now);
        let due = match &self.last {
            None => true,
            Some((at, said)) => now.duration_since(*at) >= EVERY && body(said) != body(&line),
        };
        if due {
            self.last = Some((now, line.clone()));
        }
        due.then_some(line)
    }

    pub fn message(&mut self, msg: &str, now: Instant) -> Option<String> {
        self.msg = msg.to_string();
        self.due(now)
    }

    pub fn length(&mut self, len: u64, now: Instant) -> Option<String> {
        self.len = len;
        self.due(now)
    }

    pub fn position(&mut self, pos: u64, now: Instant) -> Option<String> {
        self.pos = pos;
        self.due(now)
    }

    /// The last line, unless the last one written already said it.
    pub fn finish(&mut self, now: Instant) -> Option<String> {
        let line = self.line(now);
        match &self.last {
            Some((_, said)) if body(said) == body(&line) => None,
            _ => Some(line),
        }
    }
}

/// A line without its elapsed time.
fn body(line: &str) -> &str {
    line.rsplit_once(" (").map_or(line, |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_at_the_start_then_at_most_one_a_period_then_the_end() {
        let t0 = Instant::now();
        let mut l = Lines::new("mining", 0, t0);
        let first = l.message("running the test suite", t0).unwrap();
        assert_eq!(first, "mining: 0 running the test suite (0s)");
        // Changes within the period are kept for the next line.
        assert_eq!(l.length(40, t0 + Duration::from_secs(1)), None);
        assert_eq!(l.position(3, t0 + Duration::from_secs(14)), None);
        let next = l.position(4, t0 + Duration::from_secs(16)).unwrap();
        assert_eq!(next, "mining: 4/40 running the test suite (16s)");
        // Nothing new, nothing written, however long it takes.
        assert_eq!(l.position(4, t0 + Duration::from_secs(100)), None);
        assert_eq!(
            l.position(5, t0 + Duration::from_secs(101)).unwrap(),
            "mining: 5/40 running the test suite (101s)"
        );
        // The end is said unless the last line already said it.
        l.position(40, t0 + Duration::from_secs(102));
        assert_eq!(
            l.finish(t0 + Duration::from_secs(103)).unwrap(),
            "mining: 40/40 running the test suite (103s)"
        );
        let mut done = Lines::new("eval", 2, t0);
        done.position(2, t0);
        assert_eq!(done.finish(t0 + Duration::from_secs(9)), None);
    }
}
