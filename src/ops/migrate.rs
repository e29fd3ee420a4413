//! `vmha migrate --to-host H`: live migration (vCenter only).

use std::time::Duration;

use super::{Ctx, OpError};
use crate::vim::{HostConnectionState, PowerState};

/// A live migration normally takes seconds to minutes; this bounds a stuck one.
const MIGRATE_LIMIT: Duration = Duration::from_secs(1800);

pub async fn run(ctx: &Ctx<'_>, to_host: &str) -> Result<(), OpError> {
    if !ctx.vcenter() {
        return Err(OpError::MigrateNeedsVcenter);
    }
    let target = ctx.host_named(to_host, "--to-host").await?;
    if target.connection_state != HostConnectionState::Connected {
        return Err(OpError::HostUnavailable {
            host: target.name.clone(),
            state: target.connection_state.clone(),
            action: "migrate",
        });
    }
    let (_, state) = ctx.observe().await?;
    let Some(state) = state else {
        return Err(OpError::NotRegistered {
            vm: ctx.settings.vm.to_string(),
        });
    };
    if state.host.as_ref() == Some(&target.moref) {
        ctx.log.info(format!("already on {}", target.name));
        return Ok(());
    }
    let from = state.host_name.clone().unwrap_or_default();
    let kind = if state.power_state == PowerState::PoweredOn {
        "live-migrating"
    } else {
        "relocating"
    };
    ctx.log.info(format!("{kind} from {from} to {}", target.name));
    ctx.vm(&state.moref)
        .relocate(&ctx.pool_of(&target).await?, &target.moref)
        .await?
        .wait(MIGRATE_LIMIT)
        .await?;
    ctx.log.info(format!("now on {}", target.name));
    Ok(())
}
