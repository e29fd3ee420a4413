//! One VirtualMachine: its state as vmha reports and acts on it, and the handle that acts on it.

use serde::Serialize;

use crate::vim::{
    HeartbeatStatus, HostConnectionState, MoRef, ObjectContent, PowerState, QuestionInfo, TaskState, VmConnectionState,
};

use super::{HostInfo, Inventory, Session, Task, VimError};
use crate::vim::methods::{self, ObjectSpec, PropertyFilterSpec, PropertySpec, TraversalSpec};

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
            Some(q) => Some(QuestionInfo::from_xml(q).map_err(|e| VimError::from(("runtime.question", e)))?),
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

/// The VM's [`VM_PATHS`] and these properties of its host: what a state read or a watch asks for.
pub(crate) fn vm_and_host_props(host_paths: &[&str]) -> Vec<PropertySpec> {
    vec![
        PropertySpec {
            kind: "VirtualMachine".into(),
            paths: VM_PATHS.iter().map(|p| p.to_string()).collect(),
        },
        PropertySpec {
            kind: "HostSystem".into(),
            paths: host_paths.iter().map(|p| p.to_string()).collect(),
        },
    ]
}

/// A VirtualMachine handle, as govmomi's `object.VirtualMachine`: the VM operations the commands use.
/// Every call goes through the session (re-login once on expiry); task methods return a [`Task`].
pub struct Vm<'s> {
    session: &'s Session,
    moref: MoRef,
}

impl<'s> Vm<'s> {
    pub fn new(session: &'s Session, moref: MoRef) -> Vm<'s> {
        Vm { session, moref }
    }

    pub fn moref(&self) -> &MoRef {
        &self.moref
    }

    pub fn session(&self) -> &'s Session {
        self.session
    }

    /// Reads the VM's state now, with its host's name and connection state from `inv`.
    /// `Gone` if it vanished since it was found.
    pub async fn state(&self, inv: &Inventory) -> Result<VmState, VimError> {
        let oc = self.session.properties(&self.moref, VM_PATHS).await?;
        Ok(VmState::from_content(&oc)?.with_host(inv))
    }

    /// The VM's state and its host (name, connection state, compute resource) in one request: no
    /// inventory needed. `Gone` if the VM no longer exists.
    pub async fn read(&self) -> Result<(VmState, Option<HostInfo>), VimError> {
        let spec = PropertyFilterSpec {
            props: vm_and_host_props(&["name", "runtime.connectionState", "parent"]),
            objects: vec![ObjectSpec {
                obj: self.moref.clone(),
                skip: false,
                traversals: vec![TraversalSpec {
                    name: "vmHost".into(),
                    kind: "VirtualMachine".into(),
                    path: "runtime.host".into(),
                    select: vec![],
                }],
            }],
        };
        let found = match self.session.retrieve(&spec).await {
            Ok(f) => f,
            Err(e) if e.is_object_gone() => return Err(VimError::Gone(self.moref.clone())),
            Err(e) => return Err(e),
        };
        let vm = found
            .iter()
            .find(|o| o.obj == self.moref)
            .ok_or_else(|| VimError::Gone(self.moref.clone()))?;
        let mut state = VmState::from_content(vm)?;
        let host = state
            .host
            .as_ref()
            .and_then(|h| found.iter().find(|o| &o.obj == h))
            .map(|o| HostInfo {
                moref: o.obj.clone(),
                name: o.text("name").unwrap_or_default().to_string(),
                connection_state: HostConnectionState::parse(o.text("runtime.connectionState").unwrap_or("connected")),
                parent: o.prop("parent").and_then(|e| MoRef::from_xml(e).ok()),
            });
        if let Some(h) = &host {
            state.host_name = Some(h.name.clone());
            state.host_connection_state = Some(h.connection_state.clone());
        }
        Ok((state, host))
    }

    /// This VM's power-ons still queued or running, from its `recentTask` (one request, the tasks read
    /// through a traversal). A start that gave up may have left one behind: it would power the VM on
    /// after a stop had seen it off. `recentTask` also lists finished tasks for a while: they are left out.
    pub async fn power_ons_in_flight(&self) -> Result<Vec<Task<'s>>, VimError> {
        let spec = PropertyFilterSpec {
            props: vec![PropertySpec {
                kind: "Task".into(),
                paths: vec!["info.descriptionId".into(), "info.name".into(), "info.state".into()],
            }],
            objects: vec![ObjectSpec {
                obj: self.moref.clone(),
                skip: true,
                traversals: vec![TraversalSpec {
                    name: "vmRecentTasks".into(),
                    kind: "VirtualMachine".into(),
                    path: "recentTask".into(),
                    select: vec![],
                }],
            }],
        };
        let found = match self.session.retrieve(&spec).await {
            Ok(f) => f,
            Err(e) if e.is_object_gone() => return Err(VimError::Gone(self.moref.clone())),
            Err(e) => return Err(e),
        };
        Ok(found
            .iter()
            .filter(|o| o.obj.kind == "Task" && is_power_on_in_flight(o))
            .map(|o| Task::new(self.session, o.obj.clone(), "PowerOnVM_Task"))
            .collect())
    }

    /// PowerOnVM_Task. `host` only with vCenter (ESX-direct powers on where the VM is registered).
    pub async fn power_on(&self, host: Option<&MoRef>) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::power_on_vm_task(c, &self.moref, host).await)
            .await?;
        Ok(Task::new(self.session, t, "PowerOnVM_Task"))
    }

    pub async fn power_off(&self) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::power_off_vm_task(c, &self.moref).await)
            .await?;
        Ok(Task::new(self.session, t, "PowerOffVM_Task"))
    }

    /// Asks VMware Tools to shut the guest down; returns at once (no task).
    pub async fn shutdown_guest(&self) -> Result<(), VimError> {
        self.session
            .call(async |c| methods::shutdown_guest(c, &self.moref).await)
            .await
    }

    pub async fn answer(&self, question_id: &str, choice_key: &str) -> Result<(), VimError> {
        self.session
            .call(async |c| methods::answer_vm(c, &self.moref, question_id, choice_key).await)
            .await
    }

    /// RelocateVM_Task to `host` and its root `pool`: a live migration when the VM is on.
    pub async fn relocate(&self, pool: &MoRef, host: &MoRef) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::relocate_vm_task(c, &self.moref, pool, host).await)
            .await?;
        Ok(Task::new(self.session, t, "RelocateVM_Task"))
    }

    /// Removes the VM from the inventory; its files stay.
    pub async fn unregister(&self) -> Result<(), VimError> {
        self.session
            .call(async |c| methods::unregister_vm(c, &self.moref).await)
            .await
    }
}

/// A Task's properties say it is a power-on (PowerOnVM_Task, `VirtualMachine.powerOn`) not yet ended.
fn is_power_on_in_flight(task: &ObjectContent) -> bool {
    let power_on = task.text("info.descriptionId").map(str::trim) == Some("VirtualMachine.powerOn")
        || task.text("info.name").map(str::trim) == Some("PowerOnVM_Task");
    let state = TaskState::parse(task.text("info.state").unwrap_or_default().trim());
    power_on && matches!(state, TaskState::Queued | TaskState::Running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Element;

    fn task(description: &str, name: &str, state: &str) -> ObjectContent {
        let prop = |path: &str, value: &str| {
            let mut val = Element::new("val");
            val.text = value.to_string();
            (path.to_string(), val)
        };
        ObjectContent {
            obj: MoRef::new("Task", "task-1"),
            props: vec![
                prop("info.descriptionId", description),
                prop("info.name", name),
                prop("info.state", state),
            ],
            missing: vec![],
        }
    }

    #[test]
    fn a_running_or_queued_power_on_is_in_flight() {
        assert!(is_power_on_in_flight(&task(
            "VirtualMachine.powerOn",
            "PowerOnVM_Task",
            "running"
        )));
        assert!(is_power_on_in_flight(&task(
            "VirtualMachine.powerOn",
            "PowerOnVM_Task",
            "queued"
        )));
    }

    #[test]
    fn a_finished_power_on_or_another_task_is_not() {
        assert!(!is_power_on_in_flight(&task(
            "VirtualMachine.powerOn",
            "PowerOnVM_Task",
            "success"
        )));
        assert!(!is_power_on_in_flight(&task(
            "VirtualMachine.powerOn",
            "PowerOnVM_Task",
            "error"
        )));
        assert!(!is_power_on_in_flight(&task(
            "VirtualMachine.powerOff",
            "PowerOffVM_Task",
            "running"
        )));
    }
}
