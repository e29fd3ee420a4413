//! `vmha monitor`: health once, or `--watch` until the VM turns unhealthy (as clpvmmon.pl did).

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;

use super::Ctx;
use crate::client::VmState;
use crate::client::stream::{VmEvent, vm_states};
use crate::error::{Error, ExitCode};
use crate::vim::{HeartbeatStatus, HostConnectionState, MoRef, PowerState};

pub struct MonitorOptions {
    pub watch: bool,
    pub require_heartbeat: bool,
}

/// What one look at the VM says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy(Option<String>),
    /// On another host: reported only if it stays there past `--migration-wait`.
    Elsewhere(String),
    Unhealthy(ExitCode, String),
}

pub fn assess(s: &VmState, want_host: Option<&MoRef>, require_heartbeat: bool) -> Health {
    if let Some(q) = &s.question {
        return Health::Unhealthy(
            ExitCode::QuestionPending,
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
        return Health::Unhealthy(ExitCode::HostNotConnected, format!("host {h} is {c}"));
    }
    if s.power_state != PowerState::PoweredOn {
        return Health::Unhealthy(ExitCode::NotPoweredOn, format!("VM is {}", s.power_state));
    }
    if let (Some(want), Some(h)) = (want_host, &s.host)
        && want != h
    {
        return Health::Elsewhere(s.host_name.clone().unwrap_or_else(|| h.value.clone()));
    }
    match s.heartbeat {
        HeartbeatStatus::Red => Health::Unhealthy(ExitCode::HeartbeatRed, "guest heartbeat is red".into()),
        HeartbeatStatus::Gray if require_heartbeat => Health::Unhealthy(
            ExitCode::HeartbeatRed,
            "guest heartbeat is gray (VMware Tools not reporting) and --require-heartbeat is set".into(),
        ),
        HeartbeatStatus::Yellow => Health::Healthy(Some("guest heartbeat is yellow (intermittent)".into())),
        HeartbeatStatus::Gray => Health::Healthy(Some("guest heartbeat is gray (VMware Tools not reporting)".into())),
        _ => Health::Healthy(None),
    }
}

/// Returns the exit code and the reason.
pub async fn run(ctx: &Ctx<'_>, opts: &MonitorOptions) -> Result<(ExitCode, String), Error> {
    let want = ctx.target_host(true)?.map(|h| h.moref);
    let found = ctx.find().await?;
    let Some(vm) = found.vm else {
        return Ok((
            ExitCode::NotRegistered,
            format!("{} is not registered", ctx.settings.vm),
        ));
    };
    let hosts: Vec<MoRef> = ctx.inv.hosts.iter().map(|h| h.moref.clone()).collect();
    // Each wait is bounded well inside the request timeout; the calls keep the session alive.
    let max_wait = ctx
        .session
        .client()
        .request_timeout()
        .saturating_sub(Duration::from_secs(10))
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut states = pin!(vm_states(ctx.session, vm, hosts, max_wait));
    let mut elsewhere_since: Option<(tokio::time::Instant, String)> = None;
    let mut last_warning: Option<String> = None;
    let mut healthy_logged = false;
    loop {
        let next = match &elsewhere_since {
            // While the VM sits on another host, wake up when the migration wait runs out.
            Some((since, _)) => {
                let left =
                    (*since + ctx.settings.migration_wait).saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, states.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let host = elsewhere_since.take().map(|(_, h)| h).unwrap_or_default();
                        return Ok((
                            ExitCode::Migrated,
                            format!("VM now runs on {host} (moved by someone else); follow it there"),
                        ));
                    }
                }
            }
            None => states.next().await,
        };
        let state = match next {
            None => return Ok((ExitCode::NotRegistered, "the VM left the inventory".into())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(VmEvent::Gone)) => {
                return Ok((ExitCode::NotRegistered, "the VM was unregistered".into()));
            }
            Some(Ok(VmEvent::Reconnected(note))) => {
                ctx.log.warn(note);
                continue;
            }
            Some(Ok(VmEvent::State(s))) => *s,
        };
        ctx.log.set_label(&state.name);
        match assess(&state, want.as_ref(), opts.require_heartbeat) {
            Health::Unhealthy(code, why) => return Ok((code, why)),
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
                if !opts.watch {
                    let host = state.host_name.clone().unwrap_or_default();
                    return Ok((
                        ExitCode::Ok,
                        format!("healthy: poweredOn on {host}, heartbeat {}", state.heartbeat),
                    ));
                }
                if !healthy_logged {
                    ctx.log.info(format!(
                        "healthy on {}; watching",
                        state.host_name.clone().unwrap_or_default()
                    ));
                    healthy_logged = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vim::VmConnectionState;

    fn state() -> VmState {
        VmState {
            moref: MoRef::new("VirtualMachine", "vm-1"),
            name: "vm1".into(),
            vmx: None,
            uuid: None,
            power_state: PowerState::PoweredOn,
            host: Some(MoRef::new("HostSystem", "host-1")),
            host_name: Some("esx1".into()),
            host_connection_state: Some(HostConnectionState::Connected),
            connection_state: VmConnectionState::Connected,
            heartbeat: HeartbeatStatus::Green,
            question: None,
        }
    }

    #[test]
    fn verdicts() {
        let h1 = MoRef::new("HostSystem", "host-1");
        let h2 = MoRef::new("HostSystem", "host-2");
        assert_eq!(assess(&state(), Some(&h1), false), Health::Healthy(None));
        assert_eq!(assess(&state(), Some(&h2), false), Health::Elsewhere("esx1".into()));
        let mut s = state();
        s.heartbeat = HeartbeatStatus::Red;
        assert!(matches!(
            assess(&s, None, false),
            Health::Unhealthy(ExitCode::HeartbeatRed, _)
        ));
        s.heartbeat = HeartbeatStatus::Gray;
        assert!(matches!(assess(&s, None, false), Health::Healthy(Some(_))));
        assert!(matches!(
            assess(&s, None, true),
            Health::Unhealthy(ExitCode::HeartbeatRed, _)
        ));
        s.power_state = PowerState::PoweredOff;
        assert!(matches!(
            assess(&s, None, false),
            Health::Unhealthy(ExitCode::NotPoweredOn, _)
        ));
        s.host_connection_state = Some(HostConnectionState::NotResponding);
        assert!(matches!(
            assess(&s, None, false),
            Health::Unhealthy(ExitCode::HostNotConnected, _)
        ));
    }
}
