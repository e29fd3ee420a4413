//! `vmha migrate --to-host H`: live migration (vCenter only).

use std::time::Duration;

use super::Ctx;
use crate::client::task;
use crate::error::{Error, OpError};
use crate::vim::{HostConnectionState, methods};

/// A live migration normally takes seconds to minutes; this bounds a stuck one.
const MIGRATE_LIMIT: Duration = Duration::from_secs(1800);

pub async fn run(ctx: &Ctx<'_>, to_host: &str) -> Result<(), Error> {
    if !ctx.vcenter() {
        return Err(OpError::Usage(
            "migrate needs vCenter: an ESX host alone cannot move a VM. In ESX-direct mode, move the group instead (stop here, start on the other node)".into(),
        )
        .into());
    }
    let target = ctx.inv.host_by_name(to_host).cloned().ok_or_else(|| {
        OpError::Usage(format!(
            "no host named '{to_host}' (known: {}); fix --to-host",
            ctx.inv
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if target.connection_state != HostConnectionState::Connected {
        return Err(OpError::Failed(format!(
            "host {} is {}; cannot migrate there",
            target.name, target.connection_state
        ))
        .into());
    }
    let found = ctx.find().await?;
    let vm = found
        .vm
        .ok_or_else(|| OpError::Failed(format!("{} is not registered", ctx.settings.vm)))?;
    let state = ctx.state(&vm).await?;
    if state.host.as_ref() == Some(&target.moref) {
        ctx.log.info(format!("already on {}", target.name));
        return Ok(());
    }
    let from = state.host_name.clone().unwrap_or_default();
    let pool = ctx
        .inv
        .pool_for_host(&target.moref)
        .cloned()
        .ok_or_else(|| OpError::Failed(format!("cannot find the resource pool of host {}", target.name)))?;
    let kind = if state.power_state == crate::vim::PowerState::PoweredOn {
        "live-migrating"
    } else {
        "relocating"
    };
    ctx.log.info(format!("{kind} from {from} to {}", target.name));
    let t = methods::relocate_vm_task(ctx.session.client(), &vm, &pool, &target.moref).await?;
    task::wait(ctx.session, &t, "RelocateVM_Task", MIGRATE_LIMIT).await?;
    ctx.log.info(format!("now on {}", target.name));
    Ok(())
}
