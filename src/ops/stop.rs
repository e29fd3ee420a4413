//! `vmha stop`: deactivate the VM on this node's host. [`plan`] is the README's stop table; [`run`]
//! carries a plan out: guest shutdown first, power-off after `--stop-wait`, then unregister (ESX-direct).

use std::collections::HashSet;
use std::time::Duration;

use super::{
    Answer, AnswerPolicy, Ctx, OpError, Progress, Route, give_answer, power_ons_in_flight, wait_out_power_ons,
};
use crate::client::wait::{self, Control, Targets, VmProp, Waited};
use crate::client::{HostInfo, Task, Vm, VmState};
use crate::vim::{HostConnectionState, MoRef, PowerState};

pub struct StopOptions {
    pub keep_registered: bool,
    pub unregister: bool,
    pub answers: AnswerPolicy,
}

/// What stop observed, for [`plan`].
pub struct StopInput<'a> {
    /// This node's host.
    pub here: &'a HostInfo,
    /// The VM's state, or `None` when it is not registered.
    pub vm: Option<&'a VmState>,
    /// The VM belongs to vCenter's inventory.
    pub vcenter: bool,
    /// Acting through this node's host while vCenter is down: the entry stays in vCenter's inventory (an
    /// unregistration on the host would leave vCenter an orphaned entry), whatever `--unregister` says.
    pub vcenter_down: bool,
    pub opts: &'a StopOptions,
    /// What the VM is called in messages before its inventory name is known.
    pub label: &'a str,
    /// The VM's `recentTask` lists a power-on still queued or running (looked up only when the VM is
    /// not powered on here): a start that gave up can leave one behind.
    pub power_on_in_flight: bool,
}

/// How the VM is brought to poweredOff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowerDown {
    AlreadyOff,
    /// Guest shutdown, up to `--stop-wait`, then PowerOffVM_Task.
    Shutdown,
    /// PowerOffVM_Task at once (a suspended VM has no running guest to shut down).
    PowerOff,
    /// Not powered on, but a power-on is in flight or waits on the question this stop cancels: wait for it
    /// to end, then power down whatever it left. "Already off" now would let it power the VM on after
    /// the cluster was told the VM stopped.
    AfterPowerOn,
}

/// What stop will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopPlan {
    /// Not registered: nothing to stop.
    NotRegistered,
    /// The VM is on another host: this node changes nothing there.
    Elsewhere { host: String },
    /// On this node's host: answer what is pending, power down, unregister if asked to.
    Deactivate {
        vm: MoRef,
        answer: Option<Answer>,
        power: PowerDown,
        unregister: bool,
    },
}

impl StopPlan {
    /// The plan's name in `--json` output.
    pub fn name(&self) -> &'static str {
        match self {
            StopPlan::NotRegistered => "not_registered",
            StopPlan::Elsewhere { .. } => "elsewhere",
            StopPlan::Deactivate { .. } => "deactivate",
        }
    }
}

/// The README's stop table, as a pure function of what stop observed.
pub fn plan(i: &StopInput<'_>) -> Result<StopPlan, OpError> {
    let Some(vm) = i.vm else {
        return Ok(StopPlan::NotRegistered);
    };
    if let Some(h) = &vm.host
        && h != &i.here.moref
    {
        return Ok(StopPlan::Elsewhere {
            host: vm.host_name.clone().unwrap_or_else(|| h.value.clone()),
        });
    }
    let host_state = vm.host_connection_state.as_ref().unwrap_or(&i.here.connection_state);
    if *host_state != HostConnectionState::Connected {
        return Err(OpError::CannotSeeVm {
            host: i.here.name.clone(),
            state: host_state.clone(),
        });
    }
    let running = vm.power_state == PowerState::PoweredOn;
    let answer = match &vm.question {
        // Not running, a question pending: it holds up a power-on (typically one a failed start left).
        // Its cancel choice keeps the VM off; "I moved it" would power it on behind this stop's back.
        Some(q) if !running => match q.cancel_choice() {
            Some(cancel) => Some(Answer::choosing(q, cancel)),
            None => Some(i.opts.answers.decide(i.label, q)?),
        },
        Some(q) => Some(i.opts.answers.decide(i.label, q)?),
        None => None,
    };
    let power = match vm.power_state {
        _ if !running && (vm.question.is_some() || i.power_on_in_flight) => PowerDown::AfterPowerOn,
        PowerState::PoweredOff => PowerDown::AlreadyOff,
        PowerState::Suspended => PowerDown::PowerOff,
        _ => PowerDown::Shutdown,
    };
    Ok(StopPlan::Deactivate {
        vm: vm.moref.clone(),
        answer,
        power,
        // vCenter keeps the inventory entry unless asked; ESX-direct removes it unless asked to keep it.
        unregister: if i.vcenter {
            i.opts.unregister && !i.vcenter_down
        } else {
            !i.opts.keep_registered
        },
    })
}

/// Stops the VM; returns the name of the plan carried out.
pub async fn run(ctx: &Ctx<'_>, opts: &StopOptions) -> Result<&'static str, OpError> {
    ctx.require_host()?;
    let (_, seen) = ctx.observe_with_host().await?;
    let (state, vm_host) = match seen {
        Some((s, h)) => (Some(s), h),
        None => (None, None),
    };
    let here = ctx.node_host(vm_host.as_ref()).await?;
    let label = ctx.vm_label();
    // Only a VM not running on this node's host can have a power-on pending that matters here.
    let in_flight = match &state {
        Some(s) if s.power_state != PowerState::PoweredOn && s.host.as_ref().is_none_or(|h| *h == here.moref) => {
            power_ons_in_flight(ctx, &ctx.vm(&s.moref)).await?
        }
        _ => Vec::new(),
    };
    let decided = plan(&StopInput {
        here: &here,
        vm: state.as_ref(),
        vcenter: ctx.vcenter_managed(),
        vcenter_down: matches!(
            ctx.route(),
            Route::Host {
                vcenter_down: Some(_),
                ..
            }
        ),
        opts,
        label: &label,
        power_on_in_flight: !in_flight.is_empty(),
    })?;
    ctx.remove_stale_entries().await;
    let name = decided.name();
    let (vm, answer, power, unregister) = match decided {
        StopPlan::NotRegistered => {
            ctx.log.info("not registered: nothing to stop");
            return Ok(name);
        }
        StopPlan::Elsewhere { host } => {
            ctx.log.info(format!(
                "runs on {host}, not on this node's host {}: nothing to stop here",
                here.name
            ));
            return Ok(name);
        }
        StopPlan::Deactivate {
            vm,
            answer,
            power,
            unregister,
        } => (ctx.vm(&vm), answer, power, unregister),
    };
    if let Some(a) = &answer {
        give_answer(ctx, &vm, a, &mut HashSet::new()).await?;
    }
    match power {
        PowerDown::AlreadyOff => ctx.log.info("already powered off"),
        PowerDown::PowerOff => power_off(ctx, &vm, "suspended").await?,
        PowerDown::Shutdown => shutdown(ctx, &vm).await?,
        PowerDown::AfterPowerOn => after_power_on(ctx, &vm, &in_flight).await?,
    }
    if unregister {
        vm.unregister().await?;
        let what = state.as_ref().map(|s| s.vmx.clone().unwrap_or_else(|| s.name.clone()));
        ctx.log.info(format!("unregistered {}", what.unwrap_or_default()));
    }
    ctx.log.info("stopped");
    Ok(name)
}

/// Waits for the power-ons in flight to end (however they end), then powers down what they left.
async fn after_power_on(ctx: &Ctx<'_>, vm: &Vm<'_>, in_flight: &[Task<'_>]) -> Result<(), OpError> {
    wait_out_power_ons(ctx.log, in_flight, ctx.session.request_timeout()).await?;
    let now = ctx.state(vm).await?;
    match now.power_state {
        PowerState::PoweredOn => {
            ctx.log.info("the power-on in flight powered the VM on: stopping it");
            shutdown(ctx, vm).await
        }
        PowerState::Suspended => power_off(ctx, vm, "suspended").await,
        _ => {
            ctx.log.info("powered off (the power-on in flight did not power it on)");
            Ok(())
        }
    }
}

async fn power_off(ctx: &Ctx<'_>, vm: &Vm<'_>, why: &str) -> Result<(), OpError> {
    ctx.log.info(format!("powering off ({why})"));
    let done = match vm.power_off().await {
        Ok(task) => task.wait(ctx.session.request_timeout()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {}
        // Already off by the time the call arrived, or by the time the task ran: the goal is reached.
        Err(e) if e.is_invalid_power_state() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.log.info("powered off");
    Ok(())
}

async fn shutdown(ctx: &Ctx<'_>, vm: &Vm<'_>) -> Result<(), OpError> {
    let limit = ctx.settings.stop_wait;
    match vm.shutdown_guest().await {
        Ok(()) => ctx
            .log
            .info(format!("guest shutdown requested; waiting up to {} s", limit.as_secs())),
        // ToolsUnavailable, or any refusal of the server's: power off at once.
        Err(e) if e.is_fault() => {
            let fault = e.fault().map(|f| f.to_string()).unwrap_or_default();
            return power_off(ctx, vm, &format!("guest shutdown refused: {fault}")).await;
        }
        Err(e) => return Err(e.into()),
    }
    let mut progress = Progress::new(Duration::from_secs(10));
    let targets = Targets::vm(vm, &[VmProp::PowerState]);
    let waited = wait::until(ctx.session, targets, limit, Some(progress.every()), async |seen| {
        if seen.power_state(vm) == Some(PowerState::PoweredOff) {
            return Ok::<_, OpError>(Control::Done(()));
        }
        progress.tick(ctx.log, "waiting for guest shutdown", seen.elapsed(), limit);
        Ok(Control::Continue)
    })
    .await?;
    match waited {
        Waited::Done(()) => {
            ctx.log.info("guest shut down");
            Ok(())
        }
        Waited::TimedOut => power_off(ctx, vm, &format!("guest still running after {} s", limit.as_secs())).await,
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of the README's stop table.
    use super::*;
    use crate::ops::fixtures::{host, moved_or_copied, vm_on};
    use crate::vim::QuestionInfo;

    fn here() -> HostInfo {
        host("esx1", "host-1", HostConnectionState::Connected)
    }

    fn opts(keep_registered: bool, unregister: bool) -> StopOptions {
        StopOptions {
            keep_registered,
            unregister,
            answers: AnswerPolicy::default(),
        }
    }

    fn decide(here: &HostInfo, vm: Option<&VmState>, vcenter: bool, o: &StopOptions) -> Result<StopPlan, OpError> {
        plan(&StopInput {
            here,
            vm,
            vcenter,
            vcenter_down: false,
            opts: o,
            label: "vm1",
            power_on_in_flight: false,
        })
    }

    #[test]
    fn through_the_host_while_vcenter_is_down_the_entry_stays_registered_even_with_unregister() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        let decided = plan(&StopInput {
            here: &here(),
            vm: Some(&vm),
            vcenter: true,
            vcenter_down: true,
            opts: &opts(false, true),
            label: "vm1",
            power_on_in_flight: false,
        })
        .unwrap();
        assert_eq!(decided, deactivate(PowerDown::Shutdown, false));
    }

    fn deactivate(power: PowerDown, unregister: bool) -> StopPlan {
        StopPlan::Deactivate {
            vm: MoRef::new("VirtualMachine", "vm-1"),
            answer: None,
            power,
            unregister,
        }
    }

    #[test]
    fn not_registered_is_success_with_nothing_to_do() {
        assert_eq!(
            decide(&here(), None, true, &opts(false, false)).unwrap(),
            StopPlan::NotRegistered
        );
    }

    #[test]
    fn running_here_shuts_the_guest_down_and_vcenter_keeps_it_registered() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, false)).unwrap(),
            deactivate(PowerDown::Shutdown, false)
        );
    }

    #[test]
    fn vcenter_with_unregister_removes_the_inventory_entry() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, true)).unwrap(),
            deactivate(PowerDown::Shutdown, true)
        );
    }

    #[test]
    fn esx_direct_unregisters_after_power_off() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), false, &opts(false, false)).unwrap(),
            deactivate(PowerDown::Shutdown, true)
        );
    }

    #[test]
    fn esx_direct_keep_registered_keeps_it() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), false, &opts(true, false)).unwrap(),
            deactivate(PowerDown::Shutdown, false)
        );
    }

    #[test]
    fn already_off_here_is_success_without_power_calls() {
        let vm = vm_on(&here(), PowerState::PoweredOff);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, false)).unwrap(),
            deactivate(PowerDown::AlreadyOff, false)
        );
    }

    #[test]
    fn suspended_here_is_powered_off_without_shutdown() {
        let vm = vm_on(&here(), PowerState::Suspended);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, false)).unwrap(),
            deactivate(PowerDown::PowerOff, false)
        );
    }

    #[test]
    fn running_on_another_connected_host_is_left_alone() {
        let other = host("esx2", "host-2", HostConnectionState::Connected);
        let vm = vm_on(&other, PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, true)).unwrap(),
            StopPlan::Elsewhere { host: "esx2".into() }
        );
    }

    #[test]
    fn on_another_unreachable_host_there_is_nothing_to_stop_here() {
        let other = host("esx2", "host-2", HostConnectionState::NotResponding);
        let vm = vm_on(&other, PowerState::PoweredOn);
        assert_eq!(
            decide(&here(), Some(&vm), true, &opts(false, false)).unwrap(),
            StopPlan::Elsewhere { host: "esx2".into() }
        );
    }

    #[test]
    fn this_nodes_host_not_responding_fails_so_the_cluster_fences() {
        let down = host("esx1", "host-1", HostConnectionState::NotResponding);
        let vm = vm_on(&down, PowerState::PoweredOn);
        assert!(matches!(
            decide(&down, Some(&vm), true, &opts(false, false)),
            Err(OpError::CannotSeeVm { .. })
        ));
    }

    fn moved_question() -> QuestionInfo {
        moved_or_copied("msg.uuid.altered")
    }

    fn decide_in_flight(vm: &VmState) -> StopPlan {
        plan(&StopInput {
            here: &here(),
            vm: Some(vm),
            vcenter: true,
            vcenter_down: false,
            opts: &opts(false, false),
            label: "vm1",
            power_on_in_flight: true,
        })
        .unwrap()
    }

    #[test]
    fn running_with_the_moved_question_pending_answers_it_before_power_down() {
        let mut vm = vm_on(&here(), PowerState::PoweredOn);
        vm.question = Some(moved_question());
        let StopPlan::Deactivate { answer, power, .. } = decide(&here(), Some(&vm), true, &opts(false, false)).unwrap()
        else {
            panic!("expected Deactivate");
        };
        assert_eq!(answer.map(|a| a.choice_key), Some("1".into()));
        assert_eq!(power, PowerDown::Shutdown);
    }

    #[test]
    fn off_with_a_question_pending_cancels_the_power_on_waiting_on_it_then_powers_down_what_it_left() {
        let mut vm = vm_on(&here(), PowerState::PoweredOff);
        vm.question = Some(moved_question());
        let StopPlan::Deactivate { answer, power, .. } = decide(&here(), Some(&vm), true, &opts(false, false)).unwrap()
        else {
            panic!("expected Deactivate");
        };
        assert_eq!(answer.map(|a| a.choice_key), Some("0".into()));
        assert_eq!(power, PowerDown::AfterPowerOn);
    }

    #[test]
    fn off_with_a_question_that_has_no_cancel_choice_answers_by_the_rules_and_waits_for_the_power_on() {
        let mut vm = vm_on(&here(), PowerState::PoweredOff);
        let mut q = moved_question();
        q.choices.remove(0);
        vm.question = Some(q);
        let StopPlan::Deactivate { answer, power, .. } = decide(&here(), Some(&vm), true, &opts(false, false)).unwrap()
        else {
            panic!("expected Deactivate");
        };
        assert_eq!(answer.map(|a| a.choice_key), Some("1".into()));
        assert_eq!(power, PowerDown::AfterPowerOn);
    }

    #[test]
    fn off_with_a_power_on_in_flight_waits_for_it_then_powers_down_what_it_left() {
        let vm = vm_on(&here(), PowerState::PoweredOff);
        assert_eq!(decide_in_flight(&vm), deactivate(PowerDown::AfterPowerOn, false));
    }

    #[test]
    fn suspended_with_a_resume_in_flight_waits_for_it_too() {
        let vm = vm_on(&here(), PowerState::Suspended);
        assert_eq!(decide_in_flight(&vm), deactivate(PowerDown::AfterPowerOn, false));
    }

    #[test]
    fn running_shuts_down_whatever_else_is_in_flight() {
        let vm = vm_on(&here(), PowerState::PoweredOn);
        assert_eq!(decide_in_flight(&vm), deactivate(PowerDown::Shutdown, false));
    }

    #[test]
    fn pending_unknown_question_refuses_before_changing_anything() {
        let mut vm = vm_on(&here(), PowerState::PoweredOn);
        vm.question = Some(QuestionInfo {
            id: "q2".into(),
            text: "disk full".into(),
            choices: vec![],
            default_index: None,
            message_ids: vec!["msg.hbacommon.outofspace".into()],
        });
        assert!(matches!(
            decide(&here(), Some(&vm), true, &opts(false, false)),
            Err(OpError::Question { .. })
        ));
    }
}
