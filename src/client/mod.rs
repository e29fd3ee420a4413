//! The client layer, in the manner of govmomi's `object`, `property`, `task` and `session` packages:
//! a [`Session`] (login, re-login once on expiry, bounded cleanup), handles for the managed objects the
//! commands act on ([`Vm`], [`Task`], [`DatacenterInfo`] for registration), the one wait primitive
//! ([`wait::until`]) over a private PropertyCollector, and the [`stream::vm_states`] watcher.
//! It knows the wire types and the transport; it knows nothing of commands.

pub mod authz;
pub mod cache;
pub mod host;
pub mod inventory;
pub mod session;
pub mod stream;
pub mod task;
pub mod vm;
pub mod wait;
mod watch;

pub use host::{Host, HostState};
pub use inventory::{
    DatacenterInfo, FoundVm, HostInfo, Inventory, ListedVm, VmSelector, find_vm, find_vm_anywhere, list_vms,
};
pub use session::{ConnectOptions, Credentials, Session};
pub use task::Task;
pub use vm::{Vm, VmState};

use std::time::Duration;

use crate::soap::{Fault, FaultKind, SoapError};
use crate::vim::{DecodeError, MoRef};

/// Failures of the client layer. Transport failures keep their typed [`SoapError`]; the rest say which
/// vSphere-level expectation was not met.
#[derive(Debug, thiserror::Error)]
pub enum VimError {
    /// The transport failed (connect, TLS, timeout, HTTP status, unreadable answer) or a method faulted.
    #[error(transparent)]
    Soap(#[from] SoapError),
    /// Login was refused (InvalidLogin): wrong user name or password.
    #[error("login refused for user '{user}': {fault}")]
    LoginRefused {
        user: String,
        #[source]
        fault: Fault,
    },
    /// A task ended in error; `fault` is its `TaskInfo.error`.
    #[error("{method} failed: {fault}")]
    TaskFailed {
        method: &'static str,
        #[source]
        fault: Fault,
    },
    /// A wait on the server ran past its limit.
    #[error("{what} did not finish within {secs} s")]
    Timeout { what: String, secs: u64 },
    /// The server could not be reached again within the reconnect window (`monitor --watch`).
    #[error("lost the server at {url}: tried for {secs} s to reach it again; last error: {cause}")]
    ServerLost {
        url: String,
        secs: u64,
        #[source]
        cause: Box<VimError>,
    },
    /// The object vanished between lookup and use (unregistered or deleted meanwhile).
    #[error("{0} no longer exists on the server")]
    Gone(MoRef),
    /// An answer decoded as SOAP but not into the type vmha expects.
    #[error("unexpected answer from the server in {what}: {cause}")]
    Decode {
        what: &'static str,
        #[source]
        cause: DecodeError,
    },
    /// The ServiceContent lacks a manager vmha needs: not a vSphere SDK, or a restricted account.
    #[error("the server's ServiceContent names no {0}: is this a vSphere SDK endpoint?")]
    MissingManager(&'static str),
    /// A task succeeded without the result its method promises.
    #[error("{0} succeeded without naming its result")]
    NoTaskResult(&'static str),
    /// `--datacenter` names no datacenter of this server.
    #[error("no datacenter named '{name}' (known: {known}); fix --datacenter")]
    UnknownDatacenter { name: String, known: String },
    /// A `/vmfs/volumes/<volume>/...` path whose volume matches no datastore.
    #[error("no datastore matches the volume in '{path}' (known: {known}); check the path")]
    UnknownVolume { path: String, known: String },
    /// `--name` matches more than one VM.
    #[error("{count} VMs are named '{name}' ({morefs}); name the VM by --vmx or --uuid instead")]
    AmbiguousName { name: String, count: usize, morefs: String },
}

impl VimError {
    /// The fault behind this error, from a method call or a task.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            VimError::Soap(s) => s.fault(),
            VimError::TaskFailed { fault, .. } => Some(fault),
            _ => None,
        }
    }

    fn fault_is(&self, kind: &FaultKind) -> bool {
        self.fault().is_some_and(|f| &f.kind == kind)
    }

    /// The session expired or was ended by the server.
    pub fn is_not_authenticated(&self) -> bool {
        self.fault_is(&FaultKind::NotAuthenticated)
    }

    /// The VM was not in the power state the method needs (already on, already off).
    pub fn is_invalid_power_state(&self) -> bool {
        self.fault_is(&FaultKind::InvalidPowerState)
    }

    /// Another task already works on the object (typically a power-on in flight).
    pub fn is_task_in_progress(&self) -> bool {
        self.fault_is(&FaultKind::TaskInProgress)
    }

    /// The object is no longer in the server's inventory.
    pub fn is_object_gone(&self) -> bool {
        matches!(self, VimError::Gone(_)) || self.fault_is(&FaultKind::ManagedObjectNotFound)
    }

    /// Another host still holds the VM's files.
    pub fn is_file_lock(&self) -> bool {
        self.fault().is_some_and(Fault::is_file_lock)
    }

    /// The call reached the server and was refused with a fault (as opposed to a transport failure).
    pub fn is_fault(&self) -> bool {
        self.fault().is_some()
    }

    /// Errors after which a fresh connection may succeed.
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, VimError::Soap(s) if s.is_connection_loss())
    }
}

/// The SHA-256 thumbprint of the certificate the server presents, as `--thumbprint` takes it. Nothing
/// vouches for it: the caller must say so.
pub async fn server_thumbprint(url: &str, timeout: Duration) -> Result<String, VimError> {
    let digest = crate::soap::probe::server_certificate_sha256(url, timeout).await?;
    Ok(crate::soap::tls::format_thumbprint(&digest))
}

impl From<(&'static str, DecodeError)> for VimError {
    fn from((what, cause): (&'static str, DecodeError)) -> Self {
        VimError::Decode { what, cause }
    }
}
