//! Command-line arguments. Every setting is also an environment variable and a `--config` TOML key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success (monitor: healthy)
  1   any other failure (a task failed, a question nobody answered, files still locked,
      check --privileges found a privilege missing, ...)
  2   usage or configuration error
  3   login refused
  4   cannot connect (unreachable, timeout, TLS rejected, connection lost, not a vSphere SDK URL)
  5   start refused: the VM runs on another connected host (use migrate)
  10  monitor: VM not registered
  11  monitor: VM not powered on
  12  monitor: guest heartbeat red (or gray with --require-heartbeat)
  13  monitor: a question is pending on the VM
  14  monitor: VM migrated to another host (named in the message)
  15  monitor: the VM's host is not connected (vCenter)

The password is never a flag: set VMHA_PASSWORD, or use --password-file PATH or --password-stdin.";

/// A number of seconds. Negative numbers are accepted by the parser only to be refused with a clear message
/// (clap would otherwise take `-5` for an unknown flag).
fn seconds(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("{n} is negative: give a number of seconds, 0 or more")),
        Ok(n) => Ok(n as u64),
        Err(_) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("'{s}' is not a whole number of seconds")),
    }
}

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
    /// Trusted root certificates (PEM), instead of the system store
    #[arg(long, global = true, env = "VMHA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds each request may take [default: 120]
    #[arg(long, global = true, env = "VMHA_REQUEST_TIMEOUT", allow_negative_numbers = true, value_parser = seconds)]
    pub request_timeout: Option<u64>,
    /// TOML file with the same keys as the long options (e.g. url, user, vmx, start-wait)
    #[arg(long, global = true, env = "VMHA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write every SOAP exchange to this directory (secrets redacted)
    #[arg(long, global = true, env = "VMHA_RECORD")]
    pub record: Option<PathBuf>,
    /// Label written into recordings (e.g. "simulated: vcsim")
    #[arg(long, global = true, hide = true, default_value = "recorded by vmha")]
    pub record_label: String,
    /// Print exactly one JSON object on stdout (failures included); progress lines go to stderr
    #[arg(long, global = true, env = "VMHA_JSON", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: Option<bool>,
    /// Directory of the session cache (0700) [default: $XDG_RUNTIME_DIR/vmha, else /run/vmha]
    #[arg(long, global = true, env = "VMHA_SESSION_DIR")]
    pub session_dir: Option<PathBuf>,
    /// Log in and out on every call instead of reusing the cached session
    #[arg(long, global = true, env = "VMHA_NO_SESSION_CACHE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_session_cache: bool,
    /// How to reach an ESX host directly, as NAME=ADDRESS (NAME as vCenter shows the host; ADDRESS a host
    /// name, IP or https URL); repeat for each host. Default: the host's name itself
    #[arg(
        long = "host-address",
        value_name = "NAME=ADDRESS",
        global = true,
        env = "VMHA_HOST_ADDRESS",
        value_delimiter = ';'
    )]
    pub host_address: Vec<String>,
    /// User for direct logins to ESX hosts (a local ESXi user): enables acting through this node's host
    /// when vCenter is down, and ESX-only clusters
    #[arg(long, global = true, env = "VMHA_HOST_USER")]
    pub host_user: Option<String>,
    /// File whose first line is the ESX host user's password
    #[arg(long, global = true, env = "VMHA_HOST_PASSWORD_FILE")]
    pub host_password_file: Option<PathBuf>,
    /// Accept only this certificate for a host, as NAME=SHA256 (repeat for each host)
    #[arg(
        long = "host-thumbprint",
        value_name = "NAME=SHA256",
        global = true,
        env = "VMHA_HOST_THUMBPRINT",
        value_delimiter = ';'
    )]
    pub host_thumbprint: Vec<String>,
    /// Seconds vCenter may take to answer before vmha asks this node's host directly [default: 10]
    #[arg(long, global = true, env = "VMHA_FALLBACK_AFTER", allow_negative_numbers = true, value_parser = seconds)]
    pub fallback_after: Option<u64>,
    /// More detail on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// A password handed over in-process (the OCF agent's `password` parameter): never a flag or a variable,
    /// so it reaches neither argv nor a child's environment.
    #[arg(skip)]
    pub password: Option<SecretString>,
    /// The ESX host user's password handed over in-process (the OCF agent's `host_password` parameter).
    #[arg(skip)]
    pub host_password: Option<SecretString>,
    /// `VMHA_PASSWORD`, read by the command line's entry ([`GlobalArgs::read_password_variable`]) and by no
    /// other: the OCF agent builds its settings from `OCF_RESKEY_*` alone.
    #[arg(skip)]
    pub password_variable: Option<SecretString>,
}

impl GlobalArgs {
    /// Takes `VMHA_PASSWORD` from the environment (empty counts as unset), as the command line does.
    pub fn read_password_variable(&mut self) {
        self.password_variable = std::env::var("VMHA_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty())
            .map(SecretString::from);
    }
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
    // A value made of dashes must reach the UUID check (and its message), not be taken for a flag.
    #[arg(long, env = "VMHA_UUID", allow_hyphen_values = true)]
    pub uuid: Option<String>,
    /// Only look in this datacenter
    #[arg(long, env = "VMHA_DATACENTER")]
    pub datacenter: Option<String>,
}

/// `vmha role --mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleMode {
    Vcenter,
    Esx,
}

#[derive(Debug, Args, Default, Clone)]
pub struct HostArg {
    /// The ESX host this cluster node stands for (vCenter: required; ESX-direct: the connected host)
    #[arg(long, env = "VMHA_HOST")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, log in, print the server's identity, log out; with --privileges, also check the user's
    /// privileges on the VM, its host, this node's host, datacenter, VM folder and resource pool (exit 1 when
    /// any is missing)
    Check {
        /// Check the logged-in user's effective privileges (needs the VM and, with vCenter, --host)
        #[arg(long)]
        privileges: bool,
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
    },
    /// Print the vSphere role vmha's user needs, as govc and PowerCLI commands (vCenter and ESXi)
    Role {
        /// Only this kind of server: vcenter, or esx (a local ESXi user: ESX-direct and the host fallback)
        #[arg(long, value_enum)]
        mode: Option<RoleMode>,
        /// The role's name
        #[arg(long, default_value = "vmha")]
        name: String,
    },
    /// Report the VM: registered, power state, host, heartbeat, pending question
    Status {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
    },
    /// Activate the VM on --host: register, relocate, power on, answer the move question
    Start {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Seconds to wait for the guest heartbeat, and for locked files to be released [default: 30]
        #[arg(long, env = "VMHA_START_WAIT", allow_negative_numbers = true, value_parser = seconds)]
        start_wait: Option<u64>,
        /// Answer a question: QUESTION=CHOICE (message id or question id = choice label, key or text; repeat,
        /// or comma-separate in VMHA_ANSWER)
        #[arg(
            long = "answer",
            value_name = "ID=CHOICE",
            env = "VMHA_ANSWER",
            value_delimiter = ','
        )]
        answers: Vec<String>,
    },
    /// Deactivate the VM on --host: guest shutdown, power off after --stop-wait, unregister (ESX-direct)
    Stop {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Seconds to wait for the guest to shut down before powering off [default: 240]
        #[arg(long, env = "VMHA_STOP_WAIT", allow_negative_numbers = true, value_parser = seconds)]
        stop_wait: Option<u64>,
        /// ESX-direct: leave the VM registered after power-off
        #[arg(long, env = "VMHA_KEEP_REGISTERED", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        keep_registered: Option<bool>,
        /// vCenter: remove the VM from the inventory after power-off
        #[arg(long, env = "VMHA_UNREGISTER", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        unregister: Option<bool>,
        /// Answer a question: QUESTION=CHOICE (repeat, or comma-separate in VMHA_ANSWER)
        #[arg(
            long = "answer",
            value_name = "ID=CHOICE",
            env = "VMHA_ANSWER",
            value_delimiter = ','
        )]
        answers: Vec<String>,
    },
    /// Check the VM's health once, or with --watch until it turns unhealthy
    Monitor {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        host: HostArg,
        /// Keep watching; exit only when the VM turns unhealthy
        #[arg(long, env = "VMHA_WATCH", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        watch: Option<bool>,
        /// Seconds to wait before reporting a migration to another host [default: 15]
        #[arg(long, env = "VMHA_MIGRATION_WAIT", allow_negative_numbers = true, value_parser = seconds)]
        migration_wait: Option<u64>,
        /// Treat a gray heartbeat (no VMware Tools) as a failure
        #[arg(long, env = "VMHA_REQUIRE_HEARTBEAT", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        require_heartbeat: Option<bool>,
    },
    /// End the cached session: Logout, and delete its file from the session directory
    Logout,
    /// Print the server's SHA-256 certificate thumbprint in the form --thumbprint takes (verify it out of band)
    Thumbprint,
    /// Print a shell completion script: vmha completions bash > /etc/bash_completion.d/vmha
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): vmha man > vmha.1 && man -l vmha.1; or write every page with --dir
    Man {
        /// Write vmha.1 and one page per subcommand (vmha-start.1, ...) into DIR instead of printing vmha(1)
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
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
    /// Shut an ESX host down (ShutdownHost_Task), e.g. so that VMware HA restarts its VMs elsewhere. Without
    /// --force the host must be in maintenance mode; a host that is not connected is refused
    HostShutdown {
        #[command(flatten)]
        host: HostArg,
        /// Shut down even when the host is not in maintenance mode: its running VMs die with it
        #[arg(long)]
        force: bool,
    },
    /// Reboot an ESX host (RebootHost_Task); --force and the refusals as for host-shutdown
    HostReboot {
        #[command(flatten)]
        host: HostArg,
        /// Reboot even when the host is not in maintenance mode: its running VMs die with it
        #[arg(long)]
        force: bool,
    },
    /// Fence agent (installed as /usr/sbin/fence_vmha): fence-agents' options (-o ACTION -a IP -l USER
    /// -S SCRIPT -n PLUG ...; `vmha fence -h` lists them), or with none, name=value lines on standard
    /// input as Pacemaker's fencer sends them. Exit codes are fence-agents': 0 ok, 2 status off, 1 failure.
    #[command(disable_help_flag = true)]
    Fence {
        /// fence-agents' options, parsed by the agent itself
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Check { .. } => "check",
            Command::Role { .. } => "role",
            Command::Status { .. } => "status",
            Command::Start { .. } => "start",
            Command::Stop { .. } => "stop",
            Command::Monitor { .. } => "monitor",
            Command::Logout => "logout",
            Command::Thumbprint => "thumbprint",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
            Command::Migrate { .. } => "migrate",
            Command::Ocf { .. } => "ocf",
            Command::Fence { .. } => "fence",
            Command::HostShutdown { .. } => "host-shutdown",
            Command::HostReboot { .. } => "host-reboot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_seconds_are_refused_by_name() {
        for args in [
            vec!["vmha", "--request-timeout", "-5", "check"],
            vec!["vmha", "start", "--start-wait", "-1"],
            vec!["vmha", "stop", "--stop-wait=-3"],
            vec!["vmha", "monitor", "--migration-wait", "-9"],
        ] {
            let e = Cli::try_parse_from(&args).unwrap_err().to_string();
            assert!(
                e.contains("is negative") && !e.contains("unexpected argument"),
                "{args:?}: {e}"
            );
        }
        let ok = Cli::try_parse_from(["vmha", "--request-timeout", "7", "check"]).unwrap();
        assert_eq!(ok.global.request_timeout, Some(7));
        assert!(seconds("x").unwrap_err().contains("whole number"));
    }
}
