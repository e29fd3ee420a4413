//! `vmha start`: activate the VM on this node's host. See the decision table in the README.

use std::collections::HashSet;
use std::time::Duration;

use super::{AnswerPolicy, Ctx, answer_question};
use crate::client::inventory::HostInfo;
use crate::client::{VimError, Watch, task};
use crate::error::{Error, OpError};
use crate::soap::FaultKind;
use crate::vim::methods::{self, PropertyFilterSpec, PropertySpec};
use crate::vim::{HeartbeatStatus, HostConnectionState, MoRef, PowerState, QuestionInfo};

/// Relocation of a powered-off VM on shared storage takes seconds; this bounds a stuck one.
const RELOCATE_LIMIT: Duration = Duration::from_secs(1800);

pub async fn run(ctx: &Ctx<'_>, answers: &AnswerPolicy) -> Result<(), Error> {
    let target = ctx.target_host(true)?.expect("required host is resolved or an error");
    if target.connection_state != HostConnectionState::Connected {
        return Err(OpError::Failed(format!(
            "host {} is {}; cannot start the VM there",
            target.name, target.connection_state
        ))
        .into());
    }
    let found = ctx.find().await?;
    let vm = match found.vm {
        None => {
            let path = found.vmx.clone().ok_or_else(|| {
                OpError::Usage(format!(
                    "{} is not registered, and only a .vmx path can be registered: name it with --vmx",
                    ctx.settings.vm
                ))
            })?;
            register(ctx, &path, &target).await?
        }
        Some(vm) => {
            let state = ctx.state(&vm).await?;
            let on_target = state.host.as_ref() == Some(&target.moref);
            if on_target && state.power_state == PowerState::PoweredOn && state.question.is_none() {
                ctx.log.info(format!("already running on {}", target.name));
                return Ok(());
            }
            if on_target || state.host.is_none() {
                vm
            } else {
                let other = state.host.clone().expect("checked above");
                let other_name = ctx.host_name(&other);
                let other_connected = state
                    .host_connection_state
                    .as_ref()
                    .is_none_or(|c| *c == HostConnectionState::Connected);
                if other_connected && state.power_state == PowerState::PoweredOn {
                    return Err(OpError::RunningElsewhere {
                        vm: state.name,
                        host: other_name,
                        wanted: target.name.clone(),
                    }
                    .into());
                }
                if !ctx.vcenter() {
                    return Err(OpError::Failed(format!(
                        "{} is registered on {other_name}, not on {}",
                        state.name, target.name
                    ))
                    .into());
                }
                if other_connected {
                    ctx.log.info(format!(
                        "relocating from {other_name} to {} ({})",
                        target.name, state.power_state
                    ));
                    let pool = pool_for(ctx, &target)?;
                    let t = methods::relocate_vm_task(ctx.session.client(), &vm, &pool, &target.moref).await?;
                    task::wait(ctx.session, &t, "RelocateVM_Task", RELOCATE_LIMIT).await?;
                    ctx.log.info(format!("relocated to {}", target.name));
                    vm
                } else {
                    // The old host is gone: its entry cannot be moved, only replaced.
                    let path = state.vmx.clone().or(found.vmx.clone()).ok_or_else(|| {
                        OpError::Failed(format!(
                            "{} sits on unreachable {other_name} and its .vmx path is unknown: name it with --vmx",
                            state.name
                        ))
                    })?;
                    let why = state.host_connection_state.map(|c| c.to_string()).unwrap_or_default();
                    ctx.log.warn(format!("host {other_name} is {why}: taking the VM over"));
                    methods::unregister_vm(ctx.session.client(), &vm).await?;
                    ctx.log.info(format!("unregistered from {other_name}"));
                    register(ctx, &path, &target).await?
                }
            }
        }
    };
    power_on(ctx, &vm, &target, answers).await?;
    wait_heartbeat(ctx, &vm).await
}

fn pool_for(ctx: &Ctx<'_>, host: &HostInfo) -> Result<MoRef, Error> {
    ctx.inv
        .pool_for_host(&host.moref)
        .cloned()
        .ok_or_else(|| OpError::Failed(format!("cannot find the resource pool of host {}", host.name)).into())
}

async fn register(ctx: &Ctx<'_>, path: &str, host: &HostInfo) -> Result<MoRef, Error> {
    let dc = ctx
        .inv
        .datacenter_of(&host.moref)
        .ok_or_else(|| OpError::Failed(format!("cannot find the datacenter of host {}", host.name)))?;
    let pool = pool_for(ctx, host)?;
    let t = methods::register_vm_task(ctx.session.client(), &dc.vm_folder, path, &pool, Some(&host.moref)).await?;
    let info = task::wait(
        ctx.session,
        &t,
        "RegisterVM_Task",
        ctx.session.client().request_timeout(),
    )
    .await?;
    let vm = info
        .result
        .as_ref()
        .and_then(|r| MoRef::from_xml(r).ok())
        .ok_or_else(|| VimError::Unexpected("RegisterVM_Task succeeded without naming the VM".into()))?;
    ctx.state(&vm).await?;
    ctx.log.info(format!("registered {path} on {}", host.name));
    Ok(vm)
}

/// Powers on, answering the move question, and retrying while another host still holds the files' lock.
async fn power_on(ctx: &Ctx<'_>, vm: &MoRef, host: &HostInfo, answers: &AnswerPolicy) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + ctx.settings.start_wait;
    let mut delay = Duration::from_millis(500);
    loop {
        match power_on_once(ctx, vm, host, answers).await {
            Ok(()) => return Ok(()),
            Err(Error::Vim(e)) if e.fault().is_some_and(|f| f.is_file_lock()) => {
                let fault = e.fault().cloned().expect("matched a fault");
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(OpError::Failed(format!(
                        "the VM's files are still locked by another host after {} s ({}). If the other host is down, its lock expires on its own; then start again",
                        ctx.settings.start_wait.as_secs(),
                        fault
                    ))
                    .into());
                }
                // The last line of ESXi's message names the lock; the rest is context.
                let why = fault
                    .message
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim();
                ctx.log.warn(format!(
                    "power-on refused, files locked ({why}); retrying for up to {} s",
                    left.as_secs()
                ));
                // Nothing signals a lock's expiry: this one wait has to be a timed retry.
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn power_on_once(ctx: &Ctx<'_>, vm: &MoRef, host: &HostInfo, answers: &AnswerPolicy) -> Result<(), Error> {
    let c = ctx.session.client();
    let state = ctx.state(vm).await?;
    let mut answered = HashSet::new();
    if let Some(q) = &state.question {
        // A question left from an earlier attempt blocks everything until answered.
        answer_question(ctx, answers, vm, q, &mut answered).await?;
    }
    if state.power_state == PowerState::PoweredOn {
        ctx.log.info(format!("running on {}", host.name));
        return Ok(());
    }
    let host_arg = ctx.vcenter().then_some(&host.moref);
    let t = match methods::power_on_vm_task(c, vm, host_arg).await {
        Ok(t) => t,
        Err(e) if e.fault().is_some_and(|f| f.kind == FaultKind::TaskInProgress) => {
            return wait_for_other_power_on(ctx, vm, answers, &mut answered).await;
        }
        // Someone else powered it on in between: that is the state we want.
        Err(e) if e.fault().is_some_and(|f| f.kind == FaultKind::InvalidPowerState) => {
            let s = ctx.state(vm).await?;
            if s.power_state == PowerState::PoweredOn {
                return Ok(());
            }
            return Err(VimError::from(e).into());
        }
        Err(e) => return Err(VimError::from(e).into()),
    };
    ctx.log.info(format!("powering on (host {})", host.name));
    let spec = PropertyFilterSpec {
        props: vec![
            PropertySpec {
                kind: "Task".into(),
                paths: vec!["info".into()],
            },
            PropertySpec {
                kind: "VirtualMachine".into(),
                paths: vec!["runtime.question".into()],
            },
        ],
        objects: PropertyFilterSpec::of_objects(&[t.clone(), vm.clone()], &[]).objects,
    };
    let mut watch = Watch::new(ctx.session, spec).await?;
    let result = follow_power_on(ctx, &mut watch, vm, &t, answers, &mut answered).await;
    watch.close().await;
    if let Err(Error::Vim(e)) = &result {
        if e.fault_kind() == Some(&FaultKind::InvalidPowerState)
            && ctx.state(vm).await?.power_state == PowerState::PoweredOn
        {
            // Powered on by someone else while our task queued: the state we want.
            return Ok(());
        }
        if e.fault_kind() == Some(&FaultKind::TaskInProgress) {
            return wait_for_other_power_on(ctx, vm, answers, &mut answered).await;
        }
    }
    result?;
    ctx.log.info(format!("powered on (host {})", host.name));
    Ok(())
}

async fn follow_power_on(
    ctx: &Ctx<'_>,
    watch: &mut Watch<'_>,
    vm: &MoRef,
    t: &MoRef,
    answers: &AnswerPolicy,
    answered: &mut HashSet<String>,
) -> Result<(), Error> {
    let limit = ctx.session.client().request_timeout().max(ctx.settings.start_wait);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if task::finished(watch, t, "PowerOnVM_Task")?.is_some() {
            return Ok(());
        }
        if let Some(q) = watch.get(vm, "runtime.question") {
            let q = QuestionInfo::from_xml(q).map_err(|e| VimError::Unexpected(e.to_string()))?;
            answer_question(ctx, answers, vm, &q, answered).await?;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(VimError::Timeout {
                what: "PowerOnVM_Task".into(),
                secs: limit.as_secs(),
            }
            .into());
        }
        watch.next(left.max(Duration::from_secs(1))).await?;
    }
}

/// Returns once the guest heartbeat is green; after `--start-wait` without it, succeeds with a warning.
async fn wait_heartbeat(ctx: &Ctx<'_>, vm: &MoRef) -> Result<(), Error> {
    let wait = ctx.settings.start_wait;
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = Watch::objects(
        ctx.session,
        std::slice::from_ref(vm),
        &["guestHeartbeatStatus", "runtime.powerState"],
    )
    .await?;
    let outcome = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match watch.next(left).await {
            Ok(_) => {}
            Err(e) => break Err(Error::from(e)),
        }
        let hb = HeartbeatStatus::parse(watch.text(vm, "guestHeartbeatStatus").unwrap_or("gray"));
        if watch.text(vm, "runtime.powerState") == Some("poweredOff") {
            break Err(OpError::Failed("the VM powered off again right after power-on".into()).into());
        }
        if hb == HeartbeatStatus::Green {
            ctx.log.info("guest heartbeat green: started");
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let why = match hb {
                HeartbeatStatus::Gray => "VMware Tools is not reporting".to_string(),
                other => format!("heartbeat is {other}"),
            };
            ctx.log.warn(format!(
                "no green guest heartbeat after {} s ({why}); the VM is powered on: started",
                wait.as_secs()
            ));
            break Ok(());
        }
    };
    watch.close().await;
    outcome
}

/// Another power-on is in flight (typically one an earlier start left blocked on a question that is now
/// answered): follow it to its end instead of queueing a second one.
async fn wait_for_other_power_on(
    ctx: &Ctx<'_>,
    vm: &MoRef,
    answers: &AnswerPolicy,
    answered: &mut HashSet<String>,
) -> Result<(), Error> {
    ctx.log.info("a power-on is already in progress; following it");
    let limit = ctx.session.client().request_timeout().max(ctx.settings.start_wait);
    let deadline = tokio::time::Instant::now() + limit;
    let mut watch = Watch::objects(
        ctx.session,
        std::slice::from_ref(vm),
        &["runtime.powerState", "runtime.question"],
    )
    .await?;
    let outcome = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Err(e) = watch.next(left).await {
            break Err(e.into());
        }
        if watch.text(vm, "runtime.powerState") == Some(PowerState::PoweredOn.as_str()) {
            break Ok(());
        }
        if let Some(q) = watch.get(vm, "runtime.question") {
            match QuestionInfo::from_xml(q) {
                Ok(q) => {
                    if let Err(e) = answer_question(ctx, answers, vm, &q, answered).await {
                        break Err(e);
                    }
                }
                Err(e) => break Err(VimError::Unexpected(e.to_string()).into()),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(VimError::Timeout {
                what: "the power-on already in progress".into(),
                secs: limit.as_secs(),
            }
            .into());
        }
    };
    watch.close().await;
    outcome?;
    ctx.log.info("powered on");
    Ok(())
}
