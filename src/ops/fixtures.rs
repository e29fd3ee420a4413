//! Observed states for the decision-table tests of start, stop and monitor.

use crate::client::{HostInfo, VmState};
use crate::vim::{
    HeartbeatStatus, HostConnectionState, MoRef, PowerState, QuestionChoice, QuestionInfo, VmConnectionState,
};

pub fn host(name: &str, id: &str, state: HostConnectionState) -> HostInfo {
    HostInfo {
        moref: MoRef::new("HostSystem", id),
        name: name.into(),
        connection_state: state,
        parent: None,
    }
}

/// VM `vm-1` ("vm1", `[ds] vm1/vm1.vmx`) on host `h` as vCenter sees it: heartbeat green, nothing pending.
pub fn vm_on(h: &HostInfo, power: PowerState) -> VmState {
    VmState {
        moref: MoRef::new("VirtualMachine", "vm-1"),
        name: "vm1".into(),
        vmx: Some("[ds] vm1/vm1.vmx".into()),
        uuid: None,
        power_state: power,
        host: Some(h.moref.clone()),
        host_name: Some(h.name.clone()),
        host_connection_state: Some(h.connection_state.clone()),
        connection_state: VmConnectionState::Connected,
        heartbeat: HeartbeatStatus::Green,
        question: None,
    }
}

/// ESXi's "moved or copied" question as real servers send it (choices by label, not by position), under
/// message id `msg`.
pub fn moved_or_copied(msg: &str) -> QuestionInfo {
    let choice = |key: &str, label: &str, summary: &str| QuestionChoice {
        key: key.into(),
        label: label.into(),
        summary: summary.into(),
    };
    QuestionInfo {
        id: "_vmx1".into(),
        text: "moved?".into(),
        choices: vec![
            choice("0", "button.uuid.cancel", "Cancel"),
            choice("1", "button.uuid.movedTheVM", "I _moved it"),
            choice("2", "button.uuid.copiedTheVM", "I _copied it"),
        ],
        default_index: Some(2),
        message_ids: vec![msg.into()],
    }
}
