//! Command-line arguments. Every setting is also an environment variable and a `--config` TOML key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success (monitor: healthy)
  1   any other failure (a task failed, a question nobody answered, files still locked, ...)
  2   usage or configuration error
  3   login refused
  4   cannot connect (unreachable, timeout, TLS rejected)
  5   start refused: the VM runs on another connected host (use migrate)
  10  monitor: VM not registered
  11  monitor: VM not powered on
  12  monitor: guest heartbeat red (or not green with --require-heartbeat)
  13  monitor: a question is pending on the VM
  14  monitor: VM migrated to another host (named in the message)
  15  monitor: the VM's host is not connected (vCenter)

The password is never a flag: set VMHA_PASSWORD, or use --password-file PATH or --password-stdin.";

#[derive(Debug, Parser)]
#[command(name = "vmha", version, about = "A vSphere VM as an HA cluster resource: start, stop, monitor, migrate.", after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Default)]
pub struct GlobalArgs {
    /// vCenter or ESXi endpoint: https://HOST[:PORT]/sdk, or a bare HOST[:PORT]
    #[arg(long, global = true, env = "VMHA_URL")]
    pub url: Option<String>,
    /// User name to log in as
    #[arg(long, global = true, env = "VMHA_USER")]
    pub user: Option<String>,
    /// Read the password from this file (first line); warns when others can read it
    #[arg(long, global = true, env = "VMHA_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Read the password from standard input (first line)
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// Do not verify the server's TLS certificate (warns on every run)
    #[arg(long, global = true, env = "VMHA_INSECURE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
    /// Accept only the server certificate with this SHA-256 thumbprint (hex, colons optional)
    #[arg(long, global = true, env = "VMHA_THUMBPRINT")]
    pub thumbprint: Option<String>,
    /// Extra trusted root certificates (PEM)
    #[arg(long, global = true, env = "VMHA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds each request may take [default: 120]
    #[arg(long, global = true, env = "VMHA_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// TOML file with the same keys as the long options (e.g. url, user, vmx, start-wait)
    #[arg(long, global = true, env = "VMHA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write every SOAP exchange to this directory (secrets redacted)
    #[arg(long, global = true)]
    pub record: Option<PathBuf>,
    /// Label written into recordings (e.g. "simulated: vcsim")
    #[arg(long, global = true, hide = true, default_value = "recorded by vmha")]
    pub record_label: String,
    /// More detail on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// A password handed over in-process (the OCF agent's `password` parameter): never a flag or a variable,
    /// so it reaches neither argv nor a child's environment.
    #[arg(skip)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Args, Default, Clone)]
pub struct VmArgs {
    /// The VM's .vmx path: '[datastore] dir/x.vmx' or '/vmfs/volumes/<uuid-or-name>/dir/x.vmx'
    #[arg(long, env = "VMHA_VMX")]
    pub vmx: Option<String>,
    /// The VM's inventory name
    #[arg(long, env = "VMHA_NAME")]
    pub name: Option<String>,
    /// The VM's BIOS UUID (config.uuid) or instance UUID
    #[arg(long, env = "VMHA_UUID")]
    pub uuid: Option<String>,
    /// Only look in this datacenter
    #[arg(long, env = "VMHA_DATACENTER")]
    pub datacenter: Option<String>,
}

#[derive(Debug, Args, Default, Clone)]
pub struct HostArg {
    /// The ESX host this cluster node stands for (vCenter: required; ESX-direct: the connected host)
    #[arg(long, env = "VMHA_HOST")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, log in, print the server's identity, log out
    Check,
    /// Report the VM: registered, power state, host, heartbeat, pending question
    Status {
        #[command(flatten)]
        vm: VmArgs,
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Activate the VM on --host: register, relocate, power on, answer the move question
    Start {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Seconds to wait for the guest heartbeat, and for locked files to be released [default: 30]
        #[arg(long, env = "VMHA_START_WAIT")]
        start_wait: Option<u64>,
        /// Answer a question: QUESTION=CHOICE (message id or question id = choice label, key or text)
        #[arg(long = "answer", value_name = "ID=CHOICE")]
        answers: Vec<String>,
    },
    /// Deactivate the VM: guest shutdown, power off after --stop-wait, unregister (ESX-direct)
    Stop {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Seconds to wait for the guest to shut down before powering off [default: 240]
        #[arg(long, env = "VMHA_STOP_WAIT")]
        stop_wait: Option<u64>,
        /// ESX-direct: leave the VM registered after power-off
        #[arg(long)]
        keep_registered: bool,
        /// vCenter: remove the VM from the inventory after power-off
        #[arg(long)]
        unregister: bool,
        /// Answer a question: QUESTION=CHOICE
        #[arg(long = "answer", value_name = "ID=CHOICE")]
        answers: Vec<String>,
    },
    /// Check the VM's health once, or with --watch until it turns unhealthy
    Monitor {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Keep watching; exit only when the VM turns unhealthy
        #[arg(long)]
        watch: bool,
        /// Seconds to wait before reporting a migration to another host [default: 15]
        #[arg(long, env = "VMHA_MIGRATION_WAIT")]
        migration_wait: Option<u64>,
        /// Treat a gray heartbeat (no VMware Tools) as a failure
        #[arg(long)]
        require_heartbeat: bool,
    },
    /// Live-migrate the VM to another host (vCenter only)
    Migrate {
        #[command(flatten)]
        vm: VmArgs,
        /// Destination host
        #[arg(long, env = "VMHA_TO_HOST")]
        to_host: String,
    },
    /// Pacemaker OCF resource agent (installed as /usr/lib/ocf/resource.d/vmha/vm): ACTION is meta-data,
    /// validate-all, start, stop, monitor, migrate_to, migrate_from or usage. Settings come only from
    /// OCF_RESKEY_* variables (see `vmha ocf meta-data`); the exit codes are OCF's.
    Ocf {
        /// The OCF action
        action: Option<String>,
    },
}
