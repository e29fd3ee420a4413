//! Starts the extended simulator (tests/vcsim) by hand, for experiments: prints the settings to paste
//! into a shell, then serves until Enter or Ctrl-C.
//!
//!     cargo run --example sim            # vCenter mode
//!     cargo run --example sim -- esx     # ESX-direct mode

#[path = "../tests/support/sim.rs"]
#[allow(dead_code)]
mod sim;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;

use sim::{Mode, Sim};

fn main() {
    let mode = match std::env::args().nth(1).as_deref() {
        None | Some("vcenter") => Mode::VCenter,
        Some("esx") => Mode::Esx,
        Some(other) => {
            eprintln!("usage: cargo run --example sim [-- vcenter|esx] (not '{other}')");
            std::process::exit(2);
        }
    };
    let sim = Sim::start(mode);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", sim.password)).expect("write the password file");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let inv = mode.inventory();
    println!("# the simulator ({}) serves until you press Enter here. In another shell:", mode.as_str());
    println!("export VMHA_URL='{}'", sim.url);
    println!("export VMHA_USER='{}'", sim.user);
    println!("export VMHA_PASSWORD_FILE='{}'", pw.display());
    println!("export VMHA_CA_FILE='{}'", sim.ca_file.display());
    println!("# or pin it instead of the CA file: export VMHA_THUMBPRINT='{}'", sim.thumbprint);
    println!("# hosts: {}", inv.hosts.join(", "));
    for (vm, host) in inv.vms {
        println!("# VM {vm} runs on {host}: vmha status --name {vm}");
    }
    println!("# control surface (questions, heartbeat, host state; see tests/vcsim/README.md): {}", sim.control);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
