//! `vmha monitor`: health once, or `--watch` until the VM turns unhealthy (as clpvmmon.pl did).
//! [`assess`] is the README's monitor table; [`run`] feeds it states from the `vm_states` stream.

use std::pin::pin;

use futures_util::StreamExt;

use super::{Ctx, OpError};
use crate::client::VmState;
use crate::client::stream::{VmEvent, vm_states};
use crate::vim::{HeartbeatStatus, HostConnectionState, MoRef, PowerState};

pub struct MonitorOptions {
    pub watch: bool,
    pub require_heartbeat: bool,
}

/// Why the VM is not healthy on this node; `crate::error` gives each its exit code (10 to 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorFailure {
    NotRegistered,
    NotPoweredOn,
    /// Heartbeat red, or gray with `--require-heartbeat`.
    HeartbeatRed,
    QuestionPending,
    /// On another host for longer than `--migration-wait`.
    Migrated,
    /// The VM's host is not connected to vCenter.
    HostNotConnected,
}

/// What one look at the VM says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy(Option<String>),
    /// On another host: reported only if it stays there past `--migration-wait`.
    Elsewhere(String),
    Unhealthy(MonitorFailure, String),
}

/// The monitor's verdict: healthy (`failure` None) or why not, with the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MonitorReport {
    pub failure: Option<MonitorFailure>,
    pub why: String,
}

impl MonitorReport {
    fn failed(failure: MonitorFailure, why: impl Into<String>) -> MonitorReport {
        MonitorReport {
            failure: Some(failure),
            why: why.into(),
        }
    }
}

/// The README's monitor table: the VM's state (`None`: not registered) judged for this node's host.
pub fn assess(s: Option<&VmState>, want_host: Option<&MoRef>, require_heartbeat: bool) -> Health {
    let Some(s) = s else {
        return Health::Unhealthy(MonitorFailure::NotRegistered, "the VM is not registered".into());
    };
    if let Some(q) = &s.question {
        return Health::Unhealthy(
            MonitorFailure::QuestionPending,
            format!(
                "question pending: \"{}\" (id {})",
                q.text.lines().next().unwrap_or(""),
                q.id
            ),
        );
    }
    if let Some(c) = &s.host_connection_state
        && *c != HostConnectionState::Connected
    {
        let h = s.host_name.clone().unwrap_or_default();
        return Health::Unhealthy(MonitorFailure::HostNotConnected, format!("host {h} is {c}"));
    }
    if s.power_state != PowerState::PoweredOn {
        return Health::Unhealthy(MonitorFailure::NotPoweredOn, format!("VM is {}", s.power_state));
    }
    if let (Some(want), Some(h)) = (want_host, &s.host)
        && want != h
    {
        return Health::Elsewhere(s.host_name.clone().unwrap_or_else(|| h.value.clone()));
    }
    match s.heartbeat {
        HeartbeatStatus::Red => Health::Unhealthy(MonitorFailure::HeartbeatRed, "guest heartbeat is red".into()),
        HeartbeatStatus::Gray if require_heartbeat => Health::Unhealthy(
            MonitorFailure::HeartbeatRed,
            "guest heartbeat is gray (VMware Tools not reporting) and --require-heartbeat is set".into(),
        ),
        HeartbeatStatus::Yellow => Health::Healthy(Some("guest heartbeat is yellow (intermittent)".into())),
        HeartbeatStatus::Gray => Health::Healthy(Some("guest heartbeat is gray (VMware Tools not reporting)".into())),
        _ => Health::Healthy(None),
    }
}

pub async fn run(ctx: &Ctx<'_>, opts: &MonitorOptions) -> Result<MonitorReport, OpError> {
    ctx.require_host()?;
    let (found, seen) = ctx.observe_with_host().await?;
    let want = ctx.node_host(seen.as_ref().and_then(|(_, h)| h.as_ref())).await?.moref;
    let Some(vm) = found.vm else {
        return Ok(MonitorReport::failed(
            MonitorFailure::NotRegistered,
            format!("{} is not registered", ctx.settings.vm),
        ));
    };
    // One-shot: the state just read decides, unless the VM is on another host and the migration wait
    // asks to see whether it stays there (that takes the watch below).
    if !opts.watch
        && let Some((state, _)) = &seen
    {
        match assess(Some(state), Some(&want), opts.require_heartbeat) {
            Health::Unhealthy(failure, why) => return Ok(MonitorReport::failed(failure, why)),
            Health::Healthy(warning) => {
                if let Some(w) = &warning {
                    ctx.log.warn(w);
                }
                let host = state.host_name.clone().unwrap_or_default();
                return Ok(MonitorReport {
                    failure: None,
                    why: format!("healthy: poweredOn on {host}, heartbeat {}", state.heartbeat),
                });
            }
            Health::Elsewhere(host) if ctx.settings.migration_wait.is_zero() => {
                return Ok(MonitorReport::failed(
                    MonitorFailure::Migrated,
                    format!("VM now runs on {host} (moved by someone else); follow it there"),
                ));
            }
            Health::Elsewhere(_) => {}
        }
    }
    let hosts: Vec<MoRef> = ctx.inv().await?.hosts.iter().map(|h| h.moref.clone()).collect();
    let mut states = pin!(vm_states(ctx.session, vm, hosts));
    let mut elsewhere_since: Option<(tokio::time::Instant, String)> = None;
    let mut last_warning: Option<String> = None;
    let mut healthy_logged = false;
    loop {
        let next = match &elsewhere_since {
            // While the VM sits on another host, wake up when the migration wait runs out.
            Some((since, host)) => {
                match tokio::time::timeout_at(*since + ctx.settings.migration_wait, states.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        return Ok(MonitorReport::failed(
                            MonitorFailure::Migrated,
                            format!("VM now runs on {host} (moved by someone else); follow it there"),
                        ));
                    }
                }
            }
            None => states.next().await,
        };
        let state = match next {
            None => {
                return Ok(MonitorReport::failed(
                    MonitorFailure::NotRegistered,
                    "the VM left the inventory",
                ));
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(VmEvent::Gone)) => {
                return Ok(MonitorReport::failed(
                    MonitorFailure::NotRegistered,
                    "the VM was unregistered",
                ));
            }
            Some(Ok(VmEvent::Reconnected(note))) => {
                ctx.log.warn(note);
                continue;
            }
            Some(Ok(VmEvent::State(s))) => *s,
        };
        ctx.log.set_label(&state.name);
        match assess(Some(&state), Some(&want), opts.require_heartbeat) {
            Health::Unhealthy(failure, why) => return Ok(MonitorReport::failed(failure, why)),
            Health::Elsewhere(host) => {
                if elsewhere_since.is_none() {
                    ctx.log.warn(format!(
                        "VM is on {host}; waiting {} s to see whether it stays there",
                        ctx.settings.migration_wait.as_secs()
                    ));
                    elsewhere_since = Some((tokio::time::Instant::now(), host));
                }
            }
            Health::Healthy(warning) => {
                if elsewhere_since.take().is_some() {
                    ctx.log.info("VM is back on this node's host");
                }
                if warning != last_warning {
                    if let Some(w) = &warning {
                        ctx.log.warn(w);
                    }
                    last_warning = warning;
                }
                let host = state.host_name.clone().unwrap_or_default();
                if !opts.watch {
                    return Ok(MonitorReport {
                        failure: None,
                        why: format!("healthy: poweredOn on {host}, heartbeat {}", state.heartbeat),
                    });
                }
                if !healthy_logged {
                    ctx.log.info(format!("healthy on {host}; watching"));
                    healthy_logged = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of the README's monitor table.
    use super::*;
    use crate::ops::fixtures::{host, vm_on};
    use crate::vim::QuestionInfo;

    fn h1() -> MoRef {
        MoRef::new("HostSystem", "host-1")
    }

    fn state() -> VmState {
        vm_on(
            &host("esx1", "host-1", HostConnectionState::Connected),
            PowerState::PoweredOn,
        )
    }

    fn failure(s: Option<&VmState>, require_heartbeat: bool) -> Option<MonitorFailure> {
        match assess(s, Some(&h1()), require_heartbeat) {
            Health::Unhealthy(f, _) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn on_this_host_green_is_healthy() {
        assert_eq!(assess(Some(&state()), Some(&h1()), false), Health::Healthy(None));
    }

    #[test]
    fn not_registered_is_10() {
        assert_eq!(failure(None, false), Some(MonitorFailure::NotRegistered));
    }

    #[test]
    fn powered_off_is_11() {
        let mut s = state();
        s.power_state = PowerState::PoweredOff;
        assert_eq!(failure(Some(&s), false), Some(MonitorFailure::NotPoweredOn));
    }

    #[test]
    fn suspended_is_11() {
        let mut s = state();
        s.power_state = PowerState::Suspended;
        assert_eq!(failure(Some(&s), false), Some(MonitorFailure::NotPoweredOn));
    }

    #[test]
    fn heartbeat_red_is_12() {
        let mut s = state();
        s.heartbeat = HeartbeatStatus::Red;
        assert_eq!(failure(Some(&s), false), Some(MonitorFailure::HeartbeatRed));
    }

    #[test]
    fn heartbeat_gray_with_require_heartbeat_is_12() {
        let mut s = state();
        s.heartbeat = HeartbeatStatus::Gray;
        assert_eq!(failure(Some(&s), true), Some(MonitorFailure::HeartbeatRed));
    }

    #[test]
    fn heartbeat_gray_is_healthy_with_a_warning() {
        let mut s = state();
        s.heartbeat = HeartbeatStatus::Gray;
        assert!(matches!(assess(Some(&s), Some(&h1()), false), Health::Healthy(Some(w)) if w.contains("gray")));
    }

    #[test]
    fn heartbeat_yellow_is_healthy_with_a_warning_even_when_required() {
        let mut s = state();
        s.heartbeat = HeartbeatStatus::Yellow;
        assert!(matches!(assess(Some(&s), Some(&h1()), true), Health::Healthy(Some(w)) if w.contains("yellow")));
    }

    #[test]
    fn question_pending_is_13() {
        let mut s = state();
        s.question = Some(QuestionInfo {
            id: "q1".into(),
            text: "moved?".into(),
            choices: vec![],
            default_index: None,
            message_ids: vec![],
        });
        assert_eq!(failure(Some(&s), false), Some(MonitorFailure::QuestionPending));
    }

    #[test]
    fn on_another_host_waits_for_the_migration_wait() {
        let mut s = state();
        s.host = Some(MoRef::new("HostSystem", "host-2"));
        s.host_name = Some("esx2".into());
        assert_eq!(assess(Some(&s), Some(&h1()), false), Health::Elsewhere("esx2".into()));
    }

    #[test]
    fn host_not_connected_is_15() {
        let mut s = state();
        s.host_connection_state = Some(HostConnectionState::NotResponding);
        assert_eq!(failure(Some(&s), false), Some(MonitorFailure::HostNotConnected));
    }
}
