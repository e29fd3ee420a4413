//! What the side-by-side benchmarks share: settings from the environment, reaping a child with its
//! resource usage (wait4), and the statistics they print.
//!
//! Include it as `#[path = "support/measure.rs"] mod measure;` (a file directly in `benches/` would be
//! a bench target of its own).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `name` parsed from the environment, or `default` when unset; a value that does not parse stops the
/// benchmark (a typo must not measure something else).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// cargo's target directory (`CARGO_TARGET_DIR`, else the crate's `target/`).
pub fn target_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => manifest.join(dir),
        None => manifest.join("target"),
    }
}

/// What one child did, measured by its parent.
pub struct Reaped {
    /// From `started` (taken just before the spawn) to its exit.
    pub wall: Duration,
    /// User plus system CPU time of the child and of every child it waited for.
    pub cpu: Duration,
    /// Peak resident set size (wait4's `ru_maxrss`).
    pub rss_kib: u64,
    /// The exit code; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for `child` with wait4 (for its CPU time and peak RSS) while draining its output.
pub fn reap(mut child: Child, started: Instant) -> Reaped {
    let drain = |pipe: Option<Box<dyn Read + Send>>| -> Option<JoinHandle<Vec<u8>>> {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                buf
            })
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: pid is our child, not yet reaped (std's Child never waited on it); the pointers are valid.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    let wall = started.elapsed();
    assert_eq!(rc, pid, "wait4({pid}): {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let text = |h: Option<JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Reaped {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        rss_kib: usage.ru_maxrss as u64,
        code,
        stdout: text(out),
        stderr: text(err),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median<T: Copy + Ord>(v: &[T]) -> Option<T> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The clients in turn, starting one further along on each run: each client follows each other one
/// equally often, so no client always pays for the one before it (a Python process's exit, say).
pub fn rotated<T: Clone>(clients: &[T], run: usize) -> Vec<T> {
    let mut order = clients.to_vec();
    if !order.is_empty() {
        order.rotate_left(run % clients.len());
    }
    order
}

/// `lo-hi` (or one value when they are equal, `-` when there are none).
pub fn range(values: impl IntoIterator<Item = u64>) -> String {
    let v: Vec<u64> = values.into_iter().collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "-".into(),
    }
}
