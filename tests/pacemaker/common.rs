//! Helpers shared by the cluster tests: the agent shim, the password file, external tools.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes an OCF shim that execs this test build's binary (not whatever `vmha` is on PATH).
pub fn write_shim(path: &Path) {
    write_shim_for(path, Path::new(env!("CARGO_BIN_EXE_vmha")));
}

/// Writes an OCF shim that execs `binary`.
pub fn write_shim_for(path: &Path, binary: &Path) {
    fs::write(path, format!("#!/bin/sh\nexec '{}' ocf \"$@\"\n", binary.display()))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The simulator's password in a 0600 file, as an administrator would keep it.
pub fn write_password_file(dir: &Path, password: &str) -> PathBuf {
    let p = dir.join("vcenter.pw");
    fs::write(&p, format!("{password}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Panics with the install hint when a tool the cluster tier needs is missing (CI installs it via .ci/deps).
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found: the cluster tier needs pacemaker, pacemaker-cli-utils, resource-agents, corosync and \
         libxml2-utils (run .ci/deps)"
    );
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
