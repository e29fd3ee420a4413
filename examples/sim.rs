//! Starts the extended simulator (tests/vcsim) by hand, for experiments: prints the settings to paste
//! into a shell, then serves until Enter or Ctrl-C.
//!
//!     cargo run --example sim            # vCenter mode
//!     cargo run --example sim -- esx     # ESX-direct mode

#[path = "../tests/support/run.rs"]
pub mod run;
#[path = "../tests/support/sim.rs"]
pub mod sim;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;

use sim::Sim;

fn main() {
    let (mode, hosts, vms): (&str, &[&str], &[(&str, &str)]) = match std::env::args().nth(1).as_deref() {
        None | Some("vcenter") => (
            "vcenter",
            &["DC0_H0", "DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"],
            &[
                ("DC0_H0_VM0", "DC0_H0"),
                ("DC0_H0_VM1", "DC0_H0"),
                ("DC0_C0_RP0_VM0", "DC0_C0_H0"),
                ("DC0_C0_RP0_VM1", "DC0_C0_H1"),
            ],
        ),
        Some("esx") => (
            "esx",
            &["localhost.localdomain"],
            &[
                ("ha-host_VM0", "localhost.localdomain"),
                ("ha-host_VM1", "localhost.localdomain"),
            ],
        ),
        Some(other) => {
            eprintln!("usage: cargo run --example sim [-- vcenter|esx] (not '{other}')");
            std::process::exit(2);
        }
    };
    let sim = Sim::start(mode);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", sim.ready("password"))).expect("write the password file");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    println!("# the simulator ({mode}) serves until you press Enter here. In another shell:");
    println!("export VMHA_URL='{}'", sim.ready("url"));
    println!("export VMHA_USER='{}'", sim.ready("user"));
    println!("export VMHA_PASSWORD_FILE='{}'", pw.display());
    println!("export VMHA_CA_FILE='{}'", sim.ready("ca_file"));
    println!(
        "# or pin it instead of the CA file: export VMHA_THUMBPRINT='{}'",
        sim.ready("thumbprint")
    );
    println!("# hosts: {}", hosts.join(", "));
    for (vm, host) in vms {
        println!("# VM {vm} runs on {host}: vmha status --name {vm}");
    }
    println!(
        "# control surface (questions, heartbeat, host state; see tests/vcsim/README.md): {}",
        sim.ready("control")
    );
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
