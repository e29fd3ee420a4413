//! The client layer: sessions, property reads and watches, tasks, inventory and VM state.
//! Knows the wire types and the transport, nothing of commands.

pub mod inventory;
pub mod session;
pub mod stream;
pub mod task;
pub mod vm;
pub mod watch;

pub use inventory::{FoundVm, HostInfo, Inventory, VmSelector, find_vm};
pub use session::{ConnectOptions, Credentials, Session};
pub use vm::{VM_PATHS, VmState, read_state};
pub use watch::Watch;

use crate::soap::{Fault, FaultKind, SoapError};
use crate::vim::MoRef;

#[derive(Debug, thiserror::Error)]
pub enum VimError {
    #[error(transparent)]
    Soap(#[from] SoapError),
    #[error("login refused for user '{user}': {message}")]
    LoginRefused { user: String, message: String },
    #[error("{what} failed: {fault}")]
    TaskFailed { what: String, fault: Fault },
    #[error("{what} did not finish within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("{0} no longer exists on the server")]
    Gone(MoRef),
    #[error("{0}")]
    Inventory(String),
    #[error("unexpected answer from the server: {0}")]
    Unexpected(String),
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

    pub fn fault_kind(&self) -> Option<&FaultKind> {
        self.fault().map(|f| &f.kind)
    }

    pub fn is_not_authenticated(&self) -> bool {
        self.fault_kind() == Some(&FaultKind::NotAuthenticated)
    }

    pub fn is_connection_loss(&self) -> bool {
        matches!(self, VimError::Soap(s) if s.is_connection_loss())
    }
}
