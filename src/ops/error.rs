//! Failures of the commands. Exit codes are decided from these variants in `crate::error`, nowhere else.

use crate::client::VimError;
use crate::vim::HostConnectionState;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The client layer failed while carrying a command out.
    #[error(transparent)]
    Vim(#[from] VimError),
    /// start: the VM runs on another connected host; nothing was changed.
    #[error(
        "{vm} is running on {host}; start on {wanted} refused, nothing changed. To move it, use: vmha migrate --to-host {wanted}"
    )]
    RunningElsewhere { vm: String, host: String, wanted: String },
    /// `--host` / `--to-host` names no host of this server.
    #[error("no host named '{name}' on this server (known: {known}); fix {flag}")]
    UnknownHost {
        name: String,
        known: String,
        flag: &'static str,
    },
    /// vCenter mode without `--host`.
    #[error("vCenter mode: give --host ESXHOST, the host this cluster node stands for")]
    HostRequired,
    /// ESX-direct on a server with several hosts, without `--host`.
    #[error("give --host ESXHOST: this server has more than one host")]
    HostAmbiguous,
    /// The host a command should act on is not connected to vCenter.
    #[error("host {host} is {state}; cannot {action} there")]
    HostUnavailable {
        host: String,
        state: HostConnectionState,
        action: &'static str,
    },
    /// start: the VM is not registered and was not named by a .vmx path, so it cannot be registered.
    #[error("{vm} is not registered, and only a .vmx path can be registered: name it with --vmx")]
    NeedVmxToRegister { vm: String },
    /// start, ESX-direct: the VM is registered on another host than this node's.
    #[error("{vm} is registered on {host}, not on {wanted}")]
    RegisteredElsewhere { vm: String, host: String, wanted: String },
    /// start: a takeover re-registers the VM by its .vmx path, which nobody could tell.
    #[error("{vm} sits on unreachable {host} and its .vmx path is unknown: name it with --vmx")]
    TakeoverNeedsVmx { vm: String, host: String },
    /// The inventory lacks the resource pool or datacenter of a host.
    #[error("cannot find the {what} of host {host}")]
    HostPlacement { what: &'static str, host: String },
    /// start: another host still holds the VM's files after `--start-wait`.
    #[error(
        "the VM's files are still locked by another host after {secs} s ({cause}). If the other host is down, its lock expires on its own; then start again"
    )]
    FilesLocked {
        secs: u64,
        #[source]
        cause: VimError,
    },
    /// start: the VM went off again during the heartbeat wait.
    #[error("the VM powered off again right after power-on")]
    PoweredOffAgain,
    /// stop: this node's host is not connected, so the VM's real state cannot be seen.
    #[error(
        "host {host} is {state}: the VM's real state cannot be seen, so it cannot be stopped from here. Fence or recover {host}, or take the VM over with start on another host"
    )]
    CannotSeeVm { host: String, state: HostConnectionState },
    /// migrate on an ESX host: only vCenter can move a VM.
    #[error(
        "migrate needs vCenter: an ESX host alone cannot move a VM. In ESX-direct mode, move the group instead (stop here, start on the other node)"
    )]
    MigrateNeedsVcenter,
    /// migrate: there is no VM to move.
    #[error("{vm} is not registered")]
    NotRegistered { vm: String },
    /// A question vmha must not answer on its own.
    #[error(
        "question pending on {vm}: \"{text}\" (id {id}; choices: {choices}). Answer it with --answer {message}=CHOICE, or in the vSphere client"
    )]
    Question {
        vm: String,
        id: String,
        message: String,
        text: String,
        choices: String,
    },
    /// `--answer` not of the form QUESTION=CHOICE.
    #[error("--answer '{0}': write QUESTION=CHOICE, e.g. msg.uuid.altered=button.uuid.movedTheVM")]
    BadAnswer(String),
    /// fence: no VM matches the plug (name, BIOS UUID or instance UUID).
    #[error("unable to find plug '{plug}': no VM has this name, BIOS UUID or instance UUID")]
    PlugNotFound { plug: String },
    /// fence: the VM's power state cannot be trusted (its host is not connected, or the VM is not).
    #[error(
        "the power state of {vm} cannot be seen: {why}. vCenter only remembers the last state; fence the host itself (vmha host-shutdown, its BMC) or confirm by hand"
    )]
    StateUnseen { vm: String, why: String },
    /// fence: the VM did not reach the power state asked for within the power timeout.
    #[error("{vm} is still {seen} {secs} s after {method}: the power {wanted} is not confirmed")]
    PowerNotConfirmed {
        vm: String,
        wanted: &'static str,
        seen: String,
        secs: u64,
        method: &'static str,
    },
    /// host-shutdown / host-reboot without --force on a host that is not in maintenance mode.
    #[error(
        "host {host} is not in maintenance mode: enter it first (its VMs move or stop), or give --force to {action} it with its VMs running"
    )]
    NotInMaintenance { host: String, action: &'static str },
}
