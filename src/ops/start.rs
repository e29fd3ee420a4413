//! `vmha start`: activate the VM on this node's host. [`plan`] is the README's start table; [`run`]
//! carries a plan out.

use std::collections::HashSet;
use std::time::Duration;

use super::{
    Answer, AnswerPolicy, Ctx, OpError, PeerSeen, Route, answer_question, give_answer, power_ons_in_flight,
    wait_out_power_ons,
};
use crate::client::wait::{self, Control, Targets, VmProp, Waited};
use crate::client::{HostInfo, VimError, Vm, VmState};
use crate::vim::{HeartbeatStatus, HostConnectionState, MoRef, PowerState};

/// Relocation of a powered-off VM on shared storage takes seconds; this bounds a stuck one.
const RELOCATE_LIMIT: Duration = Duration::from_secs(1800);

/// What start observed, for [`plan`].
pub struct StartInput<'a> {
    /// This node's host.
    pub target: &'a HostInfo,
    /// The VM's state, or `None` when it is not registered.
    pub vm: Option<&'a VmState>,
    /// The `[datastore] path` the VM was named by, when it was named by path.
    pub vmx: Option<&'a str>,
    /// What the VM is called in messages before its inventory name is known.
    pub label: &'a str,
    pub vcenter: bool,
    /// What the other hosts said when asked directly (through a host, before registering here).
    pub peers: &'a [PeerSeen],
}

/// What start will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// Already poweredOn on this host with nothing pending: change nothing.
    AlreadyRunning,
    /// Registered on this host (or on no host): answer what is pending, power on.
    PowerOn { vm: MoRef },
    /// vCenter, off on another connected host: RelocateVM_Task here, then power on. `cancel`: a power-on
    /// left there (a failed start's) waits on a question; its Cancel ends it first, or it would hold the
    /// relocation up or bring the VM up on the old host.
    Relocate {
        vm: MoRef,
        from: String,
        cancel: Option<Answer>,
    },
    /// vCenter, on a host that is not connected: unregister, register here, power on.
    TakeOver {
        vm: MoRef,
        from: String,
        from_state: HostConnectionState,
        vmx: String,
    },
    /// Not registered: RegisterVM_Task here, then power on.
    Register { vmx: String },
}

impl StartPlan {
    /// The plan's name in `--json` output.
    pub fn name(&self) -> &'static str {
        match self {
            StartPlan::AlreadyRunning => "already_running",
            StartPlan::PowerOn { .. } => "power_on",
            StartPlan::Relocate { .. } => "relocate",
            StartPlan::TakeOver { .. } => "take_over",
            StartPlan::Register { .. } => "register",
        }
    }
}

/// The README's start table, as a pure function of what start observed.
pub fn plan(i: &StartInput<'_>) -> Result<StartPlan, OpError> {
    if i.target.connection_state != HostConnectionState::Connected {
        return Err(OpError::HostUnavailable {
            host: i.target.name.clone(),
            state: i.target.connection_state.clone(),
            action: "start the VM",
        });
    }
    let Some(vm) = i.vm else {
        // Registering here is safe only if no host that answered runs the VM; a host that did not answer
        // is left to VMFS: its lock refuses the power-on while it still runs the VM.
        if let Some(p) = i.peers.iter().find(|p| p.seen == Ok(Some(PowerState::PoweredOn))) {
            return Err(OpError::RunningElsewhere {
                vm: i.label.to_string(),
                host: p.host.clone(),
                wanted: i.target.name.clone(),
            });
        }
        return match i.vmx {
            Some(vmx) => Ok(StartPlan::Register { vmx: vmx.to_string() }),
            None => Err(OpError::NeedVmxToRegister {
                vm: i.label.to_string(),
            }),
        };
    };
    let on_target = vm.host.as_ref() == Some(&i.target.moref);
    if on_target || vm.host.is_none() {
        return Ok(
            if on_target && vm.power_state == PowerState::PoweredOn && vm.question.is_none() {
                StartPlan::AlreadyRunning
            } else {
                StartPlan::PowerOn { vm: vm.moref.clone() }
            },
        );
    }
    let from = vm
        .host_name
        .clone()
        .unwrap_or_else(|| vm.host.as_ref().map(|h| h.value.clone()).unwrap_or_default());
    let from_state = vm
        .host_connection_state
        .clone()
        .unwrap_or(HostConnectionState::Connected);
    if from_state == HostConnectionState::Connected && vm.power_state == PowerState::PoweredOn {
        return Err(OpError::RunningElsewhere {
            vm: vm.name.clone(),
            host: from,
            wanted: i.target.name.clone(),
        });
    }
    if !i.vcenter {
        return Err(OpError::RegisteredElsewhere {
            vm: vm.name.clone(),
            host: from,
            wanted: i.target.name.clone(),
        });
    }
    if from_state == HostConnectionState::Connected {
        return Ok(StartPlan::Relocate {
            vm: vm.moref.clone(),
            from,
            cancel: vm
                .question
                .as_ref()
                .and_then(|q| q.cancel_choice().map(|c| Answer::choosing(q, c))),
        });
    }
    // The old host is gone: its entry cannot be moved, only replaced, by the path of the VM's files.
    match vm.vmx.as_deref().or(i.vmx) {
        Some(vmx) => Ok(StartPlan::TakeOver {
            vm: vm.moref.clone(),
            from,
            from_state,
            vmx: vmx.to_string(),
        }),
        None => Err(OpError::TakeoverNeedsVmx {
            vm: vm.name.clone(),
            host: from,
        }),
    }
}

/// Starts the VM; returns the name of the plan carried out.
pub async fn run(ctx: &Ctx<'_>, answers: &AnswerPolicy) -> Result<&'static str, OpError> {
    ctx.require_host()?;
    let (found, seen) = ctx.observe_with_host().await?;
    let (state, vm_host) = match seen {
        Some((s, h)) => (Some(s), h),
        None => (None, None),
    };
    let target = ctx.node_host(vm_host.as_ref()).await?;
    let label = ctx.vm_label();
    // Through a host, a VM it does not have may run on another: ask those that can be asked.
    let peers = match (state.as_ref(), ctx.route()) {
        (None, Route::Host { .. }) => ctx.ask_peers().await,
        _ => Vec::new(),
    };
    for p in &peers {
        match &p.seen {
            Ok(Some(power)) => ctx.log.info(format!("host {} has the VM, {power}", p.host)),
            Ok(None) => ctx.log.info(format!("host {} does not have the VM", p.host)),
            Err(e) => ctx.log.warn(format!(
                "host {} did not answer ({e}): if it still runs the VM, its file lock refuses the power-on here",
                p.host
            )),
        }
    }
    let decided = plan(&StartInput {
        target: &target,
        vm: state.as_ref(),
        vmx: found.vmx.as_deref(),
        label: &label,
        vcenter: ctx.vcenter(),
        peers: &peers,
    })?;
    ctx.remove_stale_entries().await;
    let name = decided.name();
    // The state just read is still current when the plan only powers on: no second read.
    let current = match &decided {
        StartPlan::PowerOn { .. } => state.clone(),
        _ => None,
    };
    let vm = match decided {
        StartPlan::AlreadyRunning => {
            ctx.log.info(format!("already running on {}", target.name));
            return Ok(name);
        }
        StartPlan::PowerOn { vm } => ctx.vm(&vm),
        StartPlan::Relocate { vm, from, cancel } => {
            let vm = ctx.vm(&vm);
            if let Some(cancel) = &cancel {
                give_answer(ctx, &vm, cancel, &mut HashSet::new()).await?;
                let in_flight = power_ons_in_flight(ctx, &vm).await?;
                wait_out_power_ons(ctx.log, &in_flight, ctx.session.request_timeout()).await?;
            }
            let power = state.as_ref().map(|s| s.power_state.to_string()).unwrap_or_default();
            ctx.log
                .info(format!("relocating from {from} to {} ({power})", target.name));
            vm.relocate(&ctx.pool_of(&target).await?, &target.moref)
                .await?
                .wait(RELOCATE_LIMIT)
                .await?;
            ctx.log.info(format!("relocated to {}", target.name));
            vm
        }
        StartPlan::TakeOver {
            vm,
            from,
            from_state,
            vmx,
        } => {
            ctx.log.warn(format!("host {from} is {from_state}: taking the VM over"));
            ctx.vm(&vm).unregister().await?;
            ctx.log.info(format!("unregistered from {from}"));
            register(ctx, &vmx, &target).await?
        }
        StartPlan::Register { vmx } => register(ctx, &vmx, &target).await?,
    };
    // The power-on's wait watches the heartbeat too: when it turned green there, no second wait.
    match power_on(ctx, &vm, &target, answers, current).await? {
        None => ctx.log.info("guest heartbeat green: started"),
        Some(left) => wait_heartbeat(ctx, &vm, left).await?,
    }
    Ok(name)
}

async fn register<'a>(ctx: &Ctx<'a>, vmx: &str, host: &HostInfo) -> Result<Vm<'a>, OpError> {
    let pool = ctx.pool_of(host).await?;
    let task = ctx
        .datacenter_of(host)
        .await?
        .register_vm(ctx.session, vmx, &pool, &host.moref)
        .await?;
    let moref = task.wait_for_entity(ctx.session.request_timeout()).await?;
    let vm = ctx.vm(&moref);
    ctx.state(&vm).await?;
    ctx.log.info(format!("registered {vmx} on {}", host.name));
    Ok(vm)
}

/// Powers on, retrying while another host still holds the files' lock, for up to `--start-wait`.
async fn power_on(
    ctx: &Ctx<'_>,
    vm: &Vm<'_>,
    host: &HostInfo,
    answers: &AnswerPolicy,
    mut current: Option<VmState>,
) -> Result<Option<Duration>, OpError> {
    let budget = ctx.settings.start_wait;
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match power_on_once(ctx, vm, host, answers, current.take()).await {
            Err(OpError::Vim(e)) if e.is_file_lock() => {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(OpError::FilesLocked {
                        secs: budget.as_secs(),
                        cause: e,
                    });
                }
                // The last line of ESXi's message names the lock; the rest is context.
                let why = e
                    .fault()
                    .and_then(|f| f.message.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                ctx.log.warn(format!(
                    "power-on refused, files locked ({why}); retrying for up to {} s",
                    left.as_secs()
                ));
                // Nothing signals a lock's expiry: this one wait has to be a timed retry.
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// `current`: the VM's state if it was just read; otherwise it is read here.
async fn power_on_once(
    ctx: &Ctx<'_>,
    vm: &Vm<'_>,
    host: &HostInfo,
    answers: &AnswerPolicy,
    current: Option<VmState>,
) -> Result<Option<Duration>, OpError> {
    let state = match current {
        Some(s) => s,
        None => ctx.state(vm).await?,
    };
    let mut answered = HashSet::new();
    if let Some(q) = &state.question {
        // A question left from an earlier attempt blocks everything until answered.
        answer_question(ctx, answers, vm, q, &mut answered).await?;
    }
    if state.power_state == PowerState::PoweredOn {
        ctx.log.info(format!("running on {}", host.name));
        return Ok(Some(ctx.settings.start_wait));
    }
    let task = match vm.power_on(ctx.vcenter().then_some(&host.moref)).await {
        Ok(t) => t,
        Err(e) => {
            return after_refused_power_on(ctx, vm, answers, &mut answered, e)
                .await
                .map(|()| Some(ctx.settings.start_wait));
        }
    };
    ctx.log.info(format!("powering on (host {})", host.name));
    let limit = ctx.session.request_timeout().max(ctx.settings.start_wait);
    let heartbeat_wait = ctx.settings.start_wait;
    // When the task ended; from then on the same watch waits for the heartbeat, for --start-wait.
    let mut done_at: Option<Duration> = None;
    let targets = Targets::vm(vm, &[VmProp::Question, VmProp::Heartbeat, VmProp::PowerState]).and_task(&task);
    let wake = Some(heartbeat_wait.max(Duration::from_secs(1)));
    let followed = wait::until(ctx.session, targets, limit, wake, async |seen| {
        if done_at.is_none() && seen.task(&task)?.is_some() {
            ctx.log.info(format!("powered on (host {})", host.name));
            done_at = Some(seen.elapsed());
        }
        if let Some(t) = done_at {
            let left = heartbeat_wait.saturating_sub(seen.elapsed().saturating_sub(t));
            return Ok(if seen.heartbeat(vm) == HeartbeatStatus::Green {
                Control::Done(None)
            } else if left.is_zero() || seen.power_state(vm) == Some(PowerState::PoweredOff) {
                // The heartbeat wait reports what it sees: powered off again, or not green in time.
                Control::Done(Some(left))
            } else {
                Control::Continue
            });
        }
        if let Some(q) = seen.question(vm)? {
            answer_question(ctx, answers, vm, &q, &mut answered).await?;
        }
        Ok(Control::Continue)
    })
    .await;
    match followed {
        Ok(Waited::Done(left)) => Ok(left),
        Ok(Waited::TimedOut) if done_at.is_some() => Ok(Some(Duration::ZERO)),
        Ok(Waited::TimedOut) => Err(VimError::Timeout {
            what: task.method().into(),
            secs: limit.as_secs(),
        }
        .into()),
        Err(OpError::Vim(e)) => after_refused_power_on(ctx, vm, answers, &mut answered, e)
            .await
            .map(|()| Some(ctx.settings.start_wait)),
        Err(e) => Err(e),
    }
}

/// A power-on refused or failed: someone else's power-on won (the state we want), or one is already in
/// flight (follow it instead of queueing a second); anything else is the error.
async fn after_refused_power_on(
    ctx: &Ctx<'_>,
    vm: &Vm<'_>,
    answers: &AnswerPolicy,
    answered: &mut HashSet<String>,
    e: VimError,
) -> Result<(), OpError> {
    if e.is_task_in_progress() {
        return follow_other_power_on(ctx, vm, answers, answered).await;
    }
    if e.is_invalid_power_state() && ctx.state(vm).await?.power_state == PowerState::PoweredOn {
        return Ok(());
    }
    Err(e.into())
}

/// Another power-on is in flight (typically one an earlier start left blocked on a question that is now
/// answered): follow it to its end.
async fn follow_other_power_on(
    ctx: &Ctx<'_>,
    vm: &Vm<'_>,
    answers: &AnswerPolicy,
    answered: &mut HashSet<String>,
) -> Result<(), OpError> {
    ctx.log.info("a power-on is already in progress; following it");
    let limit = ctx.session.request_timeout().max(ctx.settings.start_wait);
    let targets = Targets::vm(vm, &[VmProp::PowerState, VmProp::Question]);
    let followed = wait::until(ctx.session, targets, limit, None, async |seen| {
        if seen.power_state(vm) == Some(PowerState::PoweredOn) {
            return Ok::<_, OpError>(Control::Done(()));
        }
        if let Some(q) = seen.question(vm)? {
            answer_question(ctx, answers, vm, &q, answered).await?;
        }
        Ok(Control::Continue)
    })
    .await?;
    if followed == Waited::TimedOut {
        return Err(VimError::Timeout {
            what: "the power-on already in progress".into(),
            secs: limit.as_secs(),
        }
        .into());
    }
    ctx.log.info("powered on");
    Ok(())
}

/// Returns once the guest heartbeat is green; after `--start-wait` without it, succeeds with a warning.
/// `limit`: what is left of `--start-wait` (the power-on's wait may have used some of it).
async fn wait_heartbeat(ctx: &Ctx<'_>, vm: &Vm<'_>, limit: Duration) -> Result<(), OpError> {
    let mut last = HeartbeatStatus::Gray;
    let targets = Targets::vm(vm, &[VmProp::Heartbeat, VmProp::PowerState]);
    let waited = wait::until(ctx.session, targets, limit, None, async |seen| {
        if seen.power_state(vm) == Some(PowerState::PoweredOff) {
            return Err(OpError::PoweredOffAgain);
        }
        last = seen.heartbeat(vm);
        Ok(match last {
            HeartbeatStatus::Green => Control::Done(()),
            _ => Control::Continue,
        })
    })
    .await?;
    match waited {
        Waited::Done(()) => ctx.log.info("guest heartbeat green: started"),
        Waited::TimedOut => {
            let why = match last {
                HeartbeatStatus::Gray => "VMware Tools is not reporting".to_string(),
                other => format!("heartbeat is {other}"),
            };
            ctx.log.warn(format!(
                "no green guest heartbeat after {} s ({why}); the VM is powered on: started",
                ctx.settings.start_wait.as_secs()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One test per row of the README's start table.
    use super::*;
    use crate::ops::fixtures::{host, vm_on};
    use crate::vim::QuestionInfo;

    fn h1() -> HostInfo {
        host("esx1", "host-1", HostConnectionState::Connected)
    }

    fn decide(target: &HostInfo, vm: Option<&VmState>, vmx: Option<&str>, vcenter: bool) -> Result<StartPlan, OpError> {
        decide_with_peers(target, vm, vmx, vcenter, &[])
    }

    fn decide_with_peers(
        target: &HostInfo,
        vm: Option<&VmState>,
        vmx: Option<&str>,
        vcenter: bool,
        peers: &[PeerSeen],
    ) -> Result<StartPlan, OpError> {
        plan(&StartInput {
            target,
            vm,
            vmx,
            label: "vm1",
            vcenter,
            peers,
        })
    }

    fn peer(host: &str, seen: Result<Option<PowerState>, String>) -> PeerSeen {
        PeerSeen {
            host: host.into(),
            seen,
        }
    }

    #[test]
    fn through_a_host_not_registered_here_and_running_on_a_peer_is_refused_exit_5() {
        let peers = [
            peer("esx0", Err("connection refused".into())),
            peer("esx2", Ok(Some(PowerState::PoweredOn))),
        ];
        let e = decide_with_peers(&h1(), None, Some("[ds] vm1/vm1.vmx"), false, &peers).unwrap_err();
        assert!(
            matches!(&e, OpError::RunningElsewhere { host, .. } if host == "esx2"),
            "{e}"
        );
    }

    #[test]
    fn through_a_host_peers_that_do_not_run_it_or_do_not_answer_let_it_register_here() {
        let peers = [
            peer("esx0", Err("connection refused".into())),
            peer("esx2", Ok(Some(PowerState::PoweredOff))),
            peer("esx3", Ok(None)),
        ];
        assert_eq!(
            decide_with_peers(&h1(), None, Some("[ds] vm1/vm1.vmx"), false, &peers).unwrap(),
            StartPlan::Register {
                vmx: "[ds] vm1/vm1.vmx".into()
            }
        );
    }

    fn power_on() -> StartPlan {
        StartPlan::PowerOn {
            vm: MoRef::new("VirtualMachine", "vm-1"),
        }
    }

    fn esx2(state: HostConnectionState) -> HostInfo {
        host("esx2", "host-2", state)
    }

    #[test]
    fn not_registered_with_vmx_registers_on_this_host() {
        assert_eq!(
            decide(&h1(), None, Some("[ds] vm1/vm1.vmx"), true).unwrap(),
            StartPlan::Register {
                vmx: "[ds] vm1/vm1.vmx".into()
            }
        );
    }

    #[test]
    fn not_registered_by_name_is_refused_as_usage() {
        assert!(matches!(
            decide(&h1(), None, None, true),
            Err(OpError::NeedVmxToRegister { .. })
        ));
    }

    #[test]
    fn running_on_this_host_changes_nothing() {
        let vm = vm_on(&h1(), PowerState::PoweredOn);
        assert_eq!(decide(&h1(), Some(&vm), None, true).unwrap(), StartPlan::AlreadyRunning);
    }

    #[test]
    fn off_on_this_host_powers_on() {
        let vm = vm_on(&h1(), PowerState::PoweredOff);
        assert_eq!(decide(&h1(), Some(&vm), None, true).unwrap(), power_on());
    }

    #[test]
    fn suspended_on_this_host_powers_on() {
        let vm = vm_on(&h1(), PowerState::Suspended);
        assert_eq!(decide(&h1(), Some(&vm), None, false).unwrap(), power_on());
    }

    #[test]
    fn running_here_with_a_question_pending_answers_it() {
        let mut vm = vm_on(&h1(), PowerState::PoweredOn);
        vm.question = Some(QuestionInfo {
            id: "q1".into(),
            text: "t".into(),
            choices: vec![],
            default_index: None,
            message_ids: vec![],
        });
        assert_eq!(decide(&h1(), Some(&vm), None, true).unwrap(), power_on());
    }

    #[test]
    fn off_on_another_connected_host_relocates_with_vcenter() {
        let vm = vm_on(&esx2(HostConnectionState::Connected), PowerState::PoweredOff);
        assert_eq!(
            decide(&h1(), Some(&vm), None, true).unwrap(),
            StartPlan::Relocate {
                vm: vm.moref.clone(),
                from: "esx2".into(),
                cancel: None,
            }
        );
    }

    #[test]
    fn off_on_another_connected_host_with_a_question_pending_cancels_that_power_on_then_relocates() {
        let mut vm = vm_on(&esx2(HostConnectionState::Connected), PowerState::PoweredOff);
        vm.question = Some(crate::ops::fixtures::moved_or_copied("msg.uuid.altered"));
        let StartPlan::Relocate { cancel, .. } = decide(&h1(), Some(&vm), None, true).unwrap() else {
            panic!("expected Relocate");
        };
        assert_eq!(cancel.map(|a| a.choice_key), Some("0".into()));
    }

    #[test]
    fn on_a_not_responding_host_is_taken_over_by_its_vmx() {
        let vm = vm_on(&esx2(HostConnectionState::NotResponding), PowerState::PoweredOn);
        assert_eq!(
            decide(&h1(), Some(&vm), None, true).unwrap(),
            StartPlan::TakeOver {
                vm: vm.moref.clone(),
                from: "esx2".into(),
                from_state: HostConnectionState::NotResponding,
                vmx: "[ds] vm1/vm1.vmx".into()
            }
        );
    }

    #[test]
    fn on_a_disconnected_host_is_taken_over_too() {
        let vm = vm_on(&esx2(HostConnectionState::Disconnected), PowerState::PoweredOff);
        assert!(matches!(
            decide(&h1(), Some(&vm), None, true).unwrap(),
            StartPlan::TakeOver { .. }
        ));
    }

    #[test]
    fn takeover_without_a_known_vmx_is_refused() {
        let mut vm = vm_on(&esx2(HostConnectionState::NotResponding), PowerState::PoweredOn);
        vm.vmx = None;
        assert!(matches!(
            decide(&h1(), Some(&vm), None, true),
            Err(OpError::TakeoverNeedsVmx { .. })
        ));
    }

    #[test]
    fn running_on_another_connected_host_is_refused_exit_5() {
        let vm = vm_on(&esx2(HostConnectionState::Connected), PowerState::PoweredOn);
        assert!(matches!(
            decide(&h1(), Some(&vm), None, true),
            Err(OpError::RunningElsewhere { host, .. }) if host == "esx2"
        ));
    }

    #[test]
    fn registered_on_another_host_without_vcenter_is_refused() {
        let vm = vm_on(&esx2(HostConnectionState::Connected), PowerState::PoweredOff);
        assert!(matches!(
            decide(&h1(), Some(&vm), None, false),
            Err(OpError::RegisteredElsewhere { .. })
        ));
    }

    #[test]
    fn this_host_not_connected_is_refused() {
        let down = host("esx1", "host-1", HostConnectionState::NotResponding);
        assert!(matches!(
            decide(&down, None, Some("[ds] vm1/vm1.vmx"), true),
            Err(OpError::HostUnavailable { .. })
        ));
    }
}
