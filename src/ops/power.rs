//! Power a VM hard on or off and confirm it, for the fence agent. Unlike `start`/`stop` these know no
//! cluster node or host: a fence acts on the VM wherever it runs, and never reports a state it has not
//! read back from the server.

use std::time::Duration;

use crate::client::wait::{self, Control, Targets, VmProp, Waited};
use crate::client::{FoundVm, ListedVm, Session, VimError, Vm, VmSelector, VmState};
use crate::log::StepLog;
use crate::vim::{HostConnectionState, PowerState, VmConnectionState};

use super::{Answer, AnswerPolicy, OpError, wait_out_power_ons};

/// The power state a fence asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::On => "on",
            Power::Off => "off",
        }
    }
}

/// What a fence's status reads: on, or off (powered off or suspended: the guest does not run).
pub fn as_power(state: &PowerState) -> Option<Power> {
    match state {
        PowerState::PoweredOn => Some(Power::On),
        PowerState::PoweredOff | PowerState::Suspended => Some(Power::Off),
        PowerState::Other(_) => None,
    }
}

/// How long a power change may take, fence-agents' `--power-wait` and `--power-timeout`.
#[derive(Clone, Copy, Debug)]
pub struct PowerLimits {
    /// Pause after the power task before the state is read back.
    pub wait: Duration,
    /// The task and the confirmation together.
    pub timeout: Duration,
}

/// The VM named by `plug`: a UUID form is looked up as BIOS UUID, then instance UUID, then as a name
/// (a VM may be named like a UUID); anything else as a name, refused when two VMs share it.
/// Returns the VM and, when finding it already read it (a warm lookup), that state: the caller's first state
/// read then costs no request.
pub async fn find_plug<'s>(session: &'s Session, plug: &str) -> Result<(Vm<'s>, Option<VmState>), OpError> {
    let key = format!("fence plug {plug}");
    let uuid = crate::config::normalize_uuid(plug).ok();
    if let Some((moref, _)) = session.remembered_vm(&key) {
        let vm = Vm::new(session, moref.clone());
        match vm.read().await {
            // The remembered VM still answers to this plug: a warm fence needs no search.
            Ok((s, _)) if matches_plug(&s, plug, uuid.as_deref()) => return Ok((vm, Some(s))),
            Ok(_) => tracing::debug!("{moref} no longer answers to plug {plug}: searching again"),
            Err(e) if e.is_object_gone() => tracing::debug!("{moref} is gone: searching again"),
            Err(e) => return Err(e.into()),
        }
    }
    let mut found = None;
    if let Some(u) = &uuid {
        found = lookup(session, &VmSelector::Uuid(u.clone())).await?;
    }
    if found.is_none() {
        found = lookup(session, &VmSelector::Name(plug.to_string())).await?;
    }
    let Some(moref) = found else {
        return Err(OpError::PlugNotFound { plug: plug.into() });
    };
    session.remember_vm(&key, Some((&moref, None))).await;
    Ok((Vm::new(session, moref), None))
}

async fn lookup(session: &Session, sel: &VmSelector) -> Result<Option<crate::vim::MoRef>, OpError> {
    match crate::client::find_vm_anywhere(session, sel).await {
        Some(found) => Ok(found.map(|FoundVm { vm, .. }| vm)?),
        None => Ok(None),
    }
}

fn matches_plug(s: &VmState, plug: &str, uuid: Option<&str>) -> bool {
    s.name == plug || uuid.is_some_and(|u| s.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
}

/// The VM's power state as the server sees it now; refused when that state cannot be trusted (the VM
/// or its host is not connected: vCenter then shows the last state it knew).
pub async fn state(vm: &Vm<'_>) -> Result<(VmState, Power), OpError> {
    let (s, _) = vm.read().await?;
    judge(s)
}

/// [`state`] on a read already made (`seen`), else a fresh one.
pub async fn state_or_read(vm: &Vm<'_>, seen: Option<VmState>) -> Result<(VmState, Power), OpError> {
    match seen {
        Some(s) => judge(s),
        None => state(vm).await,
    }
}

/// Whether a read VM state can be trusted, and the power it means.
fn judge(s: VmState) -> Result<(VmState, Power), OpError> {
    if s.connection_state != VmConnectionState::Connected {
        return Err(OpError::StateUnseen {
            vm: s.name.clone(),
            why: format!("the VM is {}", s.connection_state),
        });
    }
    if let Some(h) = &s.host_connection_state
        && *h != HostConnectionState::Connected
    {
        return Err(OpError::StateUnseen {
            vm: s.name.clone(),
            why: format!("its host {} is {h}", s.host_name.as_deref().unwrap_or("?")),
        });
    }
    let power = as_power(&s.power_state).ok_or_else(|| OpError::StateUnseen {
        vm: s.name.clone(),
        why: format!("the server reports power state '{}'", s.power_state),
    })?;
    Ok((s, power))
}

/// Powers the VM hard on or off (PowerOnVM_Task / PowerOffVM_Task, never a guest shutdown) and reads
/// the state back until it is `target`, within `limits.timeout`. A suspended VM counts as off for
/// status but is powered off all the same by `Off`, so that it cannot be resumed. Returns whether a
/// change was made (false: it already was so).
/// `seen`: a state read just made (by [`find_plug`]), used instead of a new read.
pub async fn set(
    vm: &Vm<'_>,
    seen: Option<VmState>,
    target: Power,
    limits: PowerLimits,
    log: &StepLog,
) -> Result<bool, OpError> {
    let (mut s, mut now) = state_or_read(vm, seen).await?;
    log.set_label(&s.name);
    if target == Power::Off && s.power_state == PowerState::PoweredOff {
        // Off now, but a power-on in flight would bring the node back after the fence reported it off:
        // wait for it to end, then act on what it left. One held up by a question is cancelled first.
        if let Some(q) = &s.question
            && let Some(cancel) = q.cancel_choice()
        {
            let answer = Answer::choosing(q, cancel);
            log.info(format!(
                "answering \"{}\" with \"{}\": a power-on waits on it",
                answer.question, answer.choice_text
            ));
            vm.answer(&answer.question_id, &answer.choice_key).await?;
        }
        let in_flight = vm.power_ons_in_flight().await?;
        wait_out_power_ons(log, &in_flight, limits.timeout).await?;
        if !in_flight.is_empty() {
            (s, now) = state(vm).await?;
        }
    }
    let already = match target {
        Power::Off => s.power_state == PowerState::PoweredOff,
        Power::On => now == Power::On,
    };
    if already {
        log.info(format!("already {}", target.as_str()));
        return Ok(false);
    }
    let want = match target {
        Power::On => PowerState::PoweredOn,
        Power::Off => PowerState::PoweredOff,
    };
    let started = tokio::time::Instant::now();
    let (task, method) = match target {
        Power::Off => (vm.power_off().await, "PowerOffVM_Task"),
        Power::On => (vm.power_on(None).await, "PowerOnVM_Task"),
    };
    log.info(format!("{method} (was {})", s.power_state));
    match task {
        Ok(task) => {
            // One watch sees the task end and the power state change. A power-on may stop on a question (a
            // moved VM): the task then never ends, so the question is watched too.
            let targets = Targets::vm(vm, &[VmProp::PowerState, VmProp::Question]).and_task(&task);
            let mut ended_ok = false;
            let mut answered = std::collections::HashSet::new();
            let ended = wait::until(vm.session(), targets, limits.timeout, None, async |seen| {
                if let Some(q) = seen.question(vm)? {
                    // The same rule as start: "I moved it" is answered, any other question fails the fence.
                    let answer = AnswerPolicy::default().decide(&s.name, &q)?;
                    if answered.insert(answer.question_id.clone()) {
                        log.info(format!(
                            "answering \"{}\" with \"{}\"",
                            answer.question, answer.choice_text
                        ));
                        vm.answer(&answer.question_id, &answer.choice_key).await?;
                    }
                }
                match seen.task(&task) {
                    Ok(Some(_)) => ended_ok = true,
                    Ok(None) => {}
                    // Already in the state asked for by the time the task ran: the state decides.
                    Err(e) if e.is_invalid_power_state() => ended_ok = true,
                    Err(e) => return Err(e.into()),
                }
                Ok::<_, OpError>(if ended_ok && seen.power_state(vm).as_ref() == Some(&want) {
                    Control::Done(())
                } else {
                    Control::Continue
                })
            })
            .await?;
            if ended == Waited::TimedOut && ended_ok {
                // The task succeeded, the state never followed: the read-back below reports what it is.
                let (now, _) = state(vm).await?;
                return Err(OpError::PowerNotConfirmed {
                    vm: s.name.clone(),
                    wanted: target.as_str(),
                    seen: now.power_state.to_string(),
                    secs: limits.timeout.as_secs(),
                    method,
                });
            }
            if ended == Waited::TimedOut {
                return Err(VimError::Timeout {
                    what: method.into(),
                    secs: limits.timeout.as_secs(),
                }
                .into());
            }
        }
        Err(e) if e.is_invalid_power_state() => {}
        Err(e) => return Err(e.into()),
    }
    if !limits.wait.is_zero() {
        tokio::time::sleep(limits.wait).await;
    }
    let left = limits
        .timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    confirm(vm, &s.name, target, method, left).await?;
    log.info(format!("powered {} (confirmed)", target.as_str()));
    Ok(true)
}

/// Reads the power state until it is `target` (powered off exactly, for Off), within `limit`: one plain read
/// when it already is (the usual case after the task's watch), else a watch, then that read.
async fn confirm(vm: &Vm<'_>, name: &str, target: Power, method: &'static str, limit: Duration) -> Result<(), OpError> {
    let want = match target {
        Power::On => PowerState::PoweredOn,
        Power::Off => PowerState::PoweredOff,
    };
    if state(vm).await?.0.power_state == want {
        return Ok(());
    }
    let mut last = None;
    let waited = wait::until(
        vm.session(),
        Targets::vm(vm, &[VmProp::PowerState]),
        limit,
        None,
        async |seen| {
            last = seen.power_state(vm);
            Ok::<_, OpError>(if last.as_ref() == Some(&want) {
                Control::Done(())
            } else {
                Control::Continue
            })
        },
    )
    .await?;
    if waited == Waited::TimedOut {
        return Err(OpError::PowerNotConfirmed {
            vm: name.into(),
            wanted: target.as_str(),
            seen: last.map_or_else(|| "unknown".into(), |p| p.to_string()),
            secs: limit.as_secs(),
            method,
        });
    }
    // The watch saw the change; one plain read proves the server still reports it, with the VM and
    // host connected (a change seen just before the host dropped out would not count).
    let (s, _) = state(vm).await?;
    if s.power_state != want {
        return Err(OpError::PowerNotConfirmed {
            vm: name.into(),
            wanted: target.as_str(),
            seen: s.power_state.to_string(),
            secs: limit.as_secs(),
            method,
        });
    }
    Ok(())
}

/// Every VM, sorted by name, for the fence agent's `list` and `list-status`.
pub async fn list(session: &Session) -> Result<Vec<ListedVm>, OpError> {
    let mut vms = crate::client::list_vms(session).await?;
    vms.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.moref.value.cmp(&b.moref.value)));
    Ok(vms)
}

/// The device answers: one request on the (possibly cached) session, so an expired session or a dead
/// server shows.
pub async fn ping(session: &Session) -> Result<(), OpError> {
    let root = session.content().root_folder.clone();
    session.properties(&root, &["name"]).await?;
    Ok(())
}
