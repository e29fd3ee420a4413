//! Starts the extended simulator (tests/vcsim) by hand, for experiments: prints the settings to paste
//! into a shell, then serves until Enter or Ctrl-C.
//!
//!     cargo run --example sim              # vCenter mode (every host also serves its own endpoint)
//!     cargo run --example sim -- esx       # ESX-direct mode
//!     cargo run --example sim -- esx 2     # ESX-only cluster of 2 hosts, no vCenter

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
            eprintln!("usage: cargo run --example sim [-- vcenter|esx [N]] (not '{other}')");
            std::process::exit(2);
        }
    };
    let esx_hosts = match std::env::args().nth(2) {
        Some(n) if mode == "esx" => match n.parse::<usize>() {
            Ok(n @ 2..=3) => Some(n),
            _ => {
                eprintln!("usage: cargo run --example sim -- esx N, with N 2 or 3 (not '{n}')");
                std::process::exit(2);
            }
        },
        Some(n) => {
            eprintln!("usage: a host count only goes with esx (not '{n}')");
            std::process::exit(2);
        }
        None => None,
    };
    let sim = match esx_hosts {
        Some(n) => Sim::start_esx_hosts(n),
        None => Sim::start(mode),
    };
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
    let control = sim.ready("control");
    if esx_hosts.is_none() {
        println!("# hosts: {}", hosts.join(", "));
        for (vm, host) in vms {
            println!("# VM {vm} runs on {host}: vmha status --name {vm}");
        }
    } else {
        println!("# an ESX-only cluster: no vCenter; VMHA_URL is the first host (see GET {control}/vms)");
    }
    println!(
        "# each host's own endpoint (user '{}', password '{}'; the CA file trusts them too):",
        sim.host_user(),
        sim.host_password()
    );
    for h in sim.hosts() {
        println!("HOST_URL {} {}", h.name, h.url);
    }
    println!("# control surface (questions, heartbeat, host state; see tests/vcsim/README.md): {control}");
    if esx_hosts.is_none() && mode == "vcenter" {
        println!("# take vCenter away and back (hosts keep serving):");
        println!("#   curl -X POST '{control}/control?vcenter=down'    # connections refused");
        println!("#   curl -X POST '{control}/control?vcenter=frozen'  # connections hang");
        println!("#   curl -X POST '{control}/control?vcenter=up'");
    }
    if mode == "vcenter" || esx_hosts.is_some() {
        println!("# a host dies / comes back after a crash:");
        println!("#   curl -X POST {control}/host/DC0_C0_H0/connection -d '{{\"state\":\"notResponding\"}}'");
        println!(
            "#   curl -X POST {control}/host/DC0_C0_H0/connection -d '{{\"state\":\"connected\",\"rebooted\":true}}'"
        );
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
