//! The step log on stdout, in the old scripts' format: `2026-11-25 10:00:00 [I] [vm1] registered on esx2`.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

pub struct StepLog {
    offset: UtcOffset,
    label: Mutex<String>,
    /// With `--json`, stdout carries only the JSON object: the step log moves to stderr.
    to_stderr: AtomicBool,
    /// Info lines dropped (the fence agent without -v: fence-agents say nothing on success).
    quiet: AtomicBool,
}

impl StepLog {
    /// `offset` is read in `main` before any thread starts (the only time reading it is sound).
    pub fn new(offset: UtcOffset, label: &str) -> StepLog {
        StepLog {
            offset,
            label: Mutex::new(label.to_string()),
            to_stderr: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
        }
    }

    /// Sends the step lines to stderr from now on (for `--json`).
    pub fn use_stderr(&self) {
        self.to_stderr.store(true, Ordering::SeqCst);
    }

    /// Drops info lines from now on; warnings and errors still show.
    pub fn quiet_info(&self) {
        self.quiet.store(true, Ordering::SeqCst);
    }

    pub fn set_label(&self, label: &str) {
        if let Ok(mut l) = self.label.lock() {
            *l = label.to_string();
        }
    }

    fn line(&self, level: char, msg: &str) {
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let stamp = now
            .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
            .unwrap_or_default();
        let label = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        let line = format!("{stamp} [{level}] [{label}] {msg}");
        if self.to_stderr.load(Ordering::SeqCst) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        if self.quiet.load(Ordering::SeqCst) {
            return;
        }
        self.line('I', msg.as_ref());
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        self.line('W', msg.as_ref());
    }

    pub fn error(&self, msg: impl AsRef<str>) {
        self.line('E', msg.as_ref());
    }
}
