//! `host-shutdown` and `host-reboot`: the guide's "VMware HA linkage" layout shuts an ESX host down when
//! something VMware HA cannot see has failed, so that VMware HA restarts the host's VMs elsewhere.

use std::time::Duration;

use serde::Serialize;

use crate::client::{Host, Inventory, Session};
use crate::log::StepLog;
use crate::vim::HostConnectionState;

use super::OpError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostPower {
    Shutdown,
    Reboot,
}

impl HostPower {
    fn verb(self) -> &'static str {
        match self {
            HostPower::Shutdown => "shut down",
            HostPower::Reboot => "reboot",
        }
    }
}

/// The decision before any call. Pure: a host that is not connected is refused (the call cannot reach
/// it, and its state is unknown); one not in maintenance mode is refused unless `force`.
pub fn check(
    host: &str,
    state: &HostConnectionState,
    in_maintenance: bool,
    action: HostPower,
    force: bool,
) -> Result<(), OpError> {
    if *state != HostConnectionState::Connected {
        return Err(OpError::HostUnavailable {
            host: host.to_string(),
            state: state.clone(),
            action: action.verb(),
        });
    }
    if !in_maintenance && !force {
        return Err(OpError::NotInMaintenance {
            host: host.to_string(),
            action: action.verb(),
        });
    }
    Ok(())
}

/// Finds `host` by name (ESX-direct: also the one host when `host` is not given), checks it and runs the
/// task, waiting up to `limit` for the server to accept the shutdown or reboot.
pub async fn run(
    session: &Session,
    host: Option<&str>,
    action: HostPower,
    force: bool,
    limit: Duration,
    log: &StepLog,
) -> Result<String, OpError> {
    let inv = Inventory::load(session).await?;
    let info = match host {
        Some(name) => inv.host_by_name(name).ok_or_else(|| OpError::UnknownHost {
            name: name.to_string(),
            known: inv.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
            flag: "--host",
        })?,
        None if !session.is_vcenter() && inv.hosts.len() == 1 => &inv.hosts[0],
        None if session.is_vcenter() => return Err(OpError::HostRequired),
        None => return Err(OpError::HostAmbiguous),
    };
    let h = Host::new(session, info.moref.clone());
    let st = h.state().await?;
    log.set_label(&st.name);
    check(&st.name, &st.connection_state, st.in_maintenance_mode, action, force)?;
    log.info(format!(
        "{} {}{} (power {}, {}in maintenance mode)",
        match action {
            HostPower::Shutdown => "ShutdownHost_Task",
            HostPower::Reboot => "RebootHost_Task",
        },
        st.name,
        if force { " with force" } else { "" },
        st.power_state,
        if st.in_maintenance_mode { "" } else { "not " }
    ));
    let task = match action {
        HostPower::Shutdown => h.shutdown(force).await?,
        HostPower::Reboot => h.reboot(force).await?,
    };
    task.wait(limit).await?;
    log.info(format!("host {} accepted the {}", st.name, action.verb()));
    Ok(st.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_connected_is_refused_even_with_force() {
        for state in [HostConnectionState::NotResponding, HostConnectionState::Disconnected] {
            let e = check("esx1", &state, true, HostPower::Shutdown, true).unwrap_err();
            assert!(matches!(e, OpError::HostUnavailable { .. }), "{e}");
        }
    }

    #[test]
    fn maintenance_mode_or_force() {
        let c = HostConnectionState::Connected;
        let e = check("esx1", &c, false, HostPower::Reboot, false).unwrap_err();
        assert!(
            e.to_string().contains("not in maintenance mode") && e.to_string().contains("--force"),
            "{e}"
        );
        assert!(check("esx1", &c, false, HostPower::Reboot, true).is_ok());
        assert!(check("esx1", &c, true, HostPower::Shutdown, false).is_ok());
    }
}
