//! Runs the built `vmha` binary against a server, with a clean `VMHA_*` environment.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Where and how to connect.
pub struct Target<'a> {
    pub url: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    /// Extra flags for trust (`--ca-file X`, `--thumbprint Y`) or nothing.
    pub trust: Vec<String>,
    pub record: Option<&'a Path>,
}

pub fn vmha(t: &Target<'_>, args: &[String]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmha"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VMHA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("VMHA_URL", t.url)
        .env("VMHA_USER", t.user)
        .env("VMHA_PASSWORD", t.password);
    cmd.args(&t.trust);
    if let Some(dir) = t.record {
        cmd.arg("--record")
            .arg(dir)
            .arg("--record-label")
            .arg("simulated: vcsim (govmomi 0.24.2) with tests/vcsim extensions");
    }
    cmd.args(args).stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().expect("run vmha");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}
