//! `vmha stop`: deactivate. Guest shutdown first, power-off after `--stop-wait`, then unregister (ESX-direct).

use std::collections::HashSet;
use std::time::Duration;

use super::{AnswerPolicy, Ctx, Progress, answer_question};
use crate::client::{Watch, task};
use crate::error::{Error, OpError};
use crate::soap::FaultKind;
use crate::vim::{HostConnectionState, MoRef, PowerState, methods};

pub struct StopOptions {
    pub keep_registered: bool,
    pub unregister: bool,
    pub answers: AnswerPolicy,
}

pub async fn run(ctx: &Ctx<'_>, opts: &StopOptions) -> Result<(), Error> {
    let found = ctx.find().await?;
    let Some(vm) = found.vm else {
        ctx.log.info("not registered: nothing to stop");
        return Ok(());
    };
    let state = ctx.state(&vm).await?;
    if let (Some(h), Some(c)) = (&state.host_name, &state.host_connection_state)
        && *c != HostConnectionState::Connected
    {
        return Err(OpError::Failed(format!(
            "host {h} is {c}: the VM's real state cannot be seen, so it cannot be stopped from here. Fence or recover {h}, or take the VM over with start on another host"
        ))
        .into());
    }
    let mut answered = HashSet::new();
    if let Some(q) = &state.question {
        answer_question(ctx, &opts.answers, &vm, q, &mut answered).await?;
    }
    match state.power_state {
        PowerState::PoweredOff => ctx.log.info("already powered off"),
        PowerState::Suspended => power_off(ctx, &vm, "suspended").await?,
        _ => shutdown(ctx, &vm).await?,
    }
    let unregister = if ctx.vcenter() {
        opts.unregister
    } else {
        !opts.keep_registered
    };
    if unregister {
        methods::unregister_vm(ctx.session.client(), &vm).await?;
        ctx.log
            .info(format!("unregistered {}", state.vmx.as_deref().unwrap_or(&state.name)));
    }
    ctx.log.info("stopped");
    Ok(())
}

async fn power_off(ctx: &Ctx<'_>, vm: &MoRef, why: &str) -> Result<(), Error> {
    ctx.log.info(format!("powering off ({why})"));
    match methods::power_off_vm_task(ctx.session.client(), vm).await {
        Ok(t) => match task::wait(
            ctx.session,
            &t,
            "PowerOffVM_Task",
            ctx.session.client().request_timeout(),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.fault_kind() == Some(&FaultKind::InvalidPowerState) => {}
            Err(e) => return Err(e.into()),
        },
        // Already off by the time the call arrived: the goal is reached.
        Err(e) if e.fault().is_some_and(|f| f.kind == FaultKind::InvalidPowerState) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.log.info("powered off");
    Ok(())
}

async fn shutdown(ctx: &Ctx<'_>, vm: &MoRef) -> Result<(), Error> {
    let wait = ctx.settings.stop_wait;
    match methods::shutdown_guest(ctx.session.client(), vm).await {
        Ok(()) => ctx
            .log
            .info(format!("guest shutdown requested; waiting up to {} s", wait.as_secs())),
        Err(e) => {
            let f = e.fault().map(|f| f.to_string()).unwrap_or_else(|| e.to_string());
            if e.fault().is_none() {
                return Err(e.into());
            }
            return power_off(ctx, vm, &format!("guest shutdown refused: {f}")).await;
        }
    }
    let mut watch = Watch::objects(ctx.session, std::slice::from_ref(vm), &["runtime.powerState"]).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut progress = Progress::new(Duration::from_secs(10));
    let outcome = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Err(e) = watch.next(left.min(progress.until_next())).await {
            break Err(Error::from(e));
        }
        if watch.text(vm, "runtime.powerState") == Some(PowerState::PoweredOff.as_str()) {
            ctx.log.info("guest shut down");
            break Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            break Ok(false);
        }
        progress.tick(ctx.log, "waiting for guest shutdown", wait);
    };
    watch.close().await;
    if !outcome? {
        power_off(ctx, vm, &format!("guest still running after {} s", wait.as_secs())).await?;
    }
    Ok(())
}
