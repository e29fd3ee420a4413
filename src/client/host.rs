//! One HostSystem: its state as host-shutdown / host-reboot need it, and the power tasks.

use crate::vim::methods;
use crate::vim::{HostConnectionState, MoRef};

use super::{Session, Task, VimError};

/// What a host power command checks first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostState {
    pub name: String,
    pub connection_state: HostConnectionState,
    pub in_maintenance_mode: bool,
    /// `runtime.powerState`: poweredOn, poweredOff, standBy or unknown.
    pub power_state: String,
}

/// A HostSystem handle, as govmomi's `object.HostSystem`.
pub struct Host<'s> {
    session: &'s Session,
    moref: MoRef,
}

impl<'s> Host<'s> {
    pub fn new(session: &'s Session, moref: MoRef) -> Host<'s> {
        Host { session, moref }
    }

    pub fn moref(&self) -> &MoRef {
        &self.moref
    }

    /// Reads name, connection state, maintenance mode and power state in one request.
    pub async fn state(&self) -> Result<HostState, VimError> {
        let oc = self
            .session
            .properties(
                &self.moref,
                &[
                    "name",
                    "runtime.connectionState",
                    "runtime.inMaintenanceMode",
                    "runtime.powerState",
                ],
            )
            .await?;
        Ok(HostState {
            name: oc.text("name").unwrap_or_default().to_string(),
            connection_state: HostConnectionState::parse(oc.text("runtime.connectionState").unwrap_or("connected")),
            in_maintenance_mode: oc.text("runtime.inMaintenanceMode").map(str::trim) == Some("true"),
            power_state: oc.text("runtime.powerState").unwrap_or("unknown").trim().to_string(),
        })
    }

    /// ShutdownHost_Task. Without `force` the server refuses a host not in maintenance mode.
    pub async fn shutdown(&self, force: bool) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::shutdown_host_task(c, &self.moref, force).await)
            .await?;
        Ok(Task::new(self.session, t, "ShutdownHost_Task"))
    }

    /// RebootHost_Task; `force` as for [`Host::shutdown`].
    pub async fn reboot(&self, force: bool) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::reboot_host_task(c, &self.moref, force).await)
            .await?;
        Ok(Task::new(self.session, t, "RebootHost_Task"))
    }
}
