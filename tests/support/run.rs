//! The one way tests, benches and examples run the `vmha` binary.
//!
//! Every run starts from a clean slate: inherited `VMHA_*` variables are removed, so a developer's own
//! settings never leak into a test. The server, user and password go in through the environment
//! (`VMHA_URL`, `VMHA_USER`, `VMHA_PASSWORD`), never the password in argv. The session cache is off
//! unless the flags name a `--session-dir`.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to run vmha against one server.
pub struct Vmha {
    /// The binary: `env!("CARGO_BIN_EXE_vmha")` in tests and benches.
    pub bin: PathBuf,
    /// `VMHA_URL`; empty: none (an ESX-only cluster).
    pub url: String,
    pub user: String,
    /// Given as `VMHA_PASSWORD`; `None` to exercise the other password sources (or none at all).
    pub password: Option<String>,
    /// Flags before the command: trust (`--ca-file`, `--thumbprint`, `--insecure`), `--record`, ...
    pub flags: Vec<String>,
    /// Written to vmha's stdin, which is then closed; `None`: stdin is empty.
    pub stdin: Option<String>,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A vmha started in the background (e.g. `monitor --watch`), output captured.
pub struct Running {
    pub child: Child,
}

impl Vmha {
    /// Runs `vmha FLAGS ARGS` to the end.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.spawn(args).wait()
    }

    /// Starts `vmha FLAGS ARGS` and returns at once.
    pub fn spawn<S: AsRef<OsStr>>(&self, args: &[S]) -> Running {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("VMHA_") {
                cmd.env_remove(k);
            }
        }
        // An empty URL stands for "no --url": an ESX-only cluster, where --host names the endpoint.
        if !self.url.is_empty() {
            cmd.env("VMHA_URL", &self.url);
        }
        cmd.env("VMHA_USER", &self.user);
        if let Some(pw) = &self.password {
            cmd.env("VMHA_PASSWORD", pw);
        }
        // Tests count Logins and Logouts per call: the session cache is on only where a test names its
        // own directory, never the developer's.
        if !self
            .flags
            .iter()
            .any(|f| f == "--session-dir" || f.starts_with("--session-dir="))
        {
            cmd.env("VMHA_NO_SESSION_CACHE", "1");
        }
        cmd.args(&self.flags)
            .args(args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        if let Some(input) = &self.stdin {
            // Dropping the handle closes stdin, so vmha sees the end of its input.
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).expect("write vmha's stdin");
        }
        Running { child }
    }
}

/// No vmha run in the tests takes nearly this long; past it, vmha hangs, and the run fails instead of
/// hanging the tests.
const NO_HANG: Duration = Duration::from_secs(120);

impl Running {
    /// Waits for the exit (at most `NO_HANG`, then kills it and panics) and collects the output.
    pub fn wait(mut self) -> Run {
        // Drain both pipes while waiting, so a chatty vmha never blocks on a full pipe.
        let out = self.child.stdout.take().map(drain);
        let err = self.child.stderr.take().map(drain);
        let deadline = Instant::now() + NO_HANG;
        let status = loop {
            match self.child.try_wait().expect("wait for vmha") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("vmha did not exit within {NO_HANG:?}: killed");
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().expect("read vmha's output")).unwrap_or_default()).into_owned()
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: text(out),
            stderr: text(err),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
