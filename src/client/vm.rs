//! One VirtualMachine: its state as vmha reports and acts on it.

use serde::Serialize;

use crate::vim::{
    HeartbeatStatus, HostConnectionState, MoRef, ObjectContent, PowerState, QuestionInfo, VmConnectionState,
};

use super::{Inventory, Session, VimError};

/// The VM properties every command reads, and that `monitor --watch` watches.
pub const VM_PATHS: &[&str] = &[
    "name",
    "config.files.vmPathName",
    "config.uuid",
    "runtime.powerState",
    "runtime.host",
    "runtime.connectionState",
    "runtime.question",
    "guestHeartbeatStatus",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmState {
    #[serde(skip)]
    pub moref: MoRef,
    pub name: String,
    pub vmx: Option<String>,
    pub uuid: Option<String>,
    pub power_state: PowerState,
    #[serde(skip)]
    pub host: Option<MoRef>,
    #[serde(rename = "host")]
    pub host_name: Option<String>,
    pub host_connection_state: Option<HostConnectionState>,
    pub connection_state: VmConnectionState,
    pub heartbeat: HeartbeatStatus,
    pub question: Option<QuestionInfo>,
}

impl VmState {
    /// Builds the state from property values; `lookup` gives a property's element by path.
    pub fn from_props<'e>(
        moref: &MoRef,
        lookup: impl Fn(&str) -> Option<&'e crate::soap::Element>,
    ) -> Result<VmState, VimError> {
        let text = |p: &str| lookup(p).map(|e| e.text.trim().to_string());
        let question = match lookup("runtime.question") {
            Some(q) => Some(QuestionInfo::from_xml(q).map_err(|e| VimError::Unexpected(e.to_string()))?),
            None => None,
        };
        Ok(VmState {
            moref: moref.clone(),
            name: text("name").unwrap_or_default(),
            vmx: text("config.files.vmPathName"),
            uuid: text("config.uuid"),
            power_state: PowerState::parse(&text("runtime.powerState").unwrap_or_default()),
            host: lookup("runtime.host").and_then(|e| MoRef::from_xml(e).ok()),
            host_name: None,
            host_connection_state: None,
            connection_state: VmConnectionState::parse(
                &text("runtime.connectionState").unwrap_or_else(|| "connected".into()),
            ),
            heartbeat: HeartbeatStatus::parse(&text("guestHeartbeatStatus").unwrap_or_else(|| "gray".into())),
            question,
        })
    }

    pub fn from_content(oc: &ObjectContent) -> Result<VmState, VimError> {
        VmState::from_props(&oc.obj, |p| oc.prop(p))
    }

    /// Fills the host's name and connection state from the inventory snapshot.
    pub fn with_host(mut self, inv: &Inventory) -> VmState {
        if let Some(h) = self.host.as_ref().and_then(|h| inv.host(h)) {
            self.host_name = Some(h.name.clone());
            self.host_connection_state = Some(h.connection_state.clone());
        }
        self
    }
}

/// Reads the VM's state now. `Gone` if it vanished between lookup and read.
pub async fn read_state(session: &Session, inv: &Inventory, vm: &MoRef) -> Result<VmState, VimError> {
    let oc = session.properties(vm, VM_PATHS).await?;
    Ok(VmState::from_content(&oc)?.with_host(inv))
}
