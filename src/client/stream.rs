//! `vm_states`: a Stream of VM states over WaitForUpdatesEx, in the manner of kube-rs's watcher.
//! It keeps itself alive across session expiry (logs in again) and lost connections (reconnects),
//! and yields an error only when it can no longer see the VM.

use std::time::Duration;

use futures_util::Stream;

use super::{Session, VM_PATHS, VimError, VmState, Watch};
use crate::vim::methods::{PropertyFilterSpec, PropertySpec};
use crate::vim::{HostConnectionState, MoRef};

/// One observation of the VM.
#[derive(Clone, Debug, PartialEq)]
pub enum VmEvent {
    State(Box<VmState>),
    /// The VM left the inventory (unregistered or deleted).
    Gone,
    /// The connection was lost and has been restored (for the log).
    Reconnected(String),
}

struct WatchState<'a> {
    watch: Option<Watch<'a>>,
    session: &'a Session,
    vm: MoRef,
    hosts: Vec<MoRef>,
    first: bool,
    done: bool,
    note: Option<String>,
}

fn spec(vm: &MoRef, hosts: &[MoRef]) -> PropertyFilterSpec {
    let mut objs = vec![vm.clone()];
    objs.extend(hosts.iter().cloned());
    PropertyFilterSpec {
        props: vec![
            PropertySpec {
                kind: "VirtualMachine".into(),
                paths: VM_PATHS.iter().map(|p| p.to_string()).collect(),
            },
            PropertySpec {
                kind: "HostSystem".into(),
                paths: vec!["name".into(), "runtime.connectionState".into()],
            },
        ],
        objects: PropertyFilterSpec::of_objects(&objs, &[]).objects,
    }
}

fn state_of(w: &Watch<'_>, vm: &MoRef) -> Result<VmState, VimError> {
    let mut s = VmState::from_props(vm, |p| w.get(vm, p))?;
    if let Some(h) = s.host.clone() {
        s.host_name = w.text(&h, "name").map(str::to_string);
        s.host_connection_state = w.text(&h, "runtime.connectionState").map(HostConnectionState::parse);
    }
    Ok(s)
}

/// Recovers the session and the watch within the request timeout.
async fn recover(st: &mut WatchState<'_>, cause: &VimError) -> Result<(), VimError> {
    let limit = st.session.client().request_timeout();
    let deadline = tokio::time::Instant::now() + limit;
    let mut delay = Duration::from_millis(250);
    let mut last;
    loop {
        let attempt = async {
            match Watch::new(st.session, spec(&st.vm, &st.hosts)).await {
                Err(e) if e.is_not_authenticated() => {
                    st.session.relogin().await?;
                    Watch::new(st.session, spec(&st.vm, &st.hosts)).await
                }
                other => other,
            }
        };
        match attempt.await {
            Ok(w) => {
                st.watch = Some(w);
                st.note = Some(format!("recovered after: {cause}"));
                return Ok(());
            }
            Err(e @ VimError::LoginRefused { .. }) => return Err(e),
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(VimError::Unexpected(format!(
                "lost the server for {} s: {last}",
                limit.as_secs()
            )));
        }
        // Reconnection has nothing to watch; back off briefly between attempts.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Yields the VM's state first, then once per change. `max_wait` bounds each server-side wait, which
/// also keeps the session alive.
pub fn vm_states<'a>(
    session: &'a Session,
    vm: MoRef,
    hosts: Vec<MoRef>,
    max_wait: Duration,
) -> impl Stream<Item = Result<VmEvent, VimError>> + 'a {
    let init = WatchState {
        watch: None,
        session,
        vm,
        hosts,
        first: true,
        done: false,
        note: None,
    };
    futures_util::stream::unfold(init, move |mut st| async move {
        if st.done {
            if let Some(w) = st.watch.take() {
                w.close().await;
            }
            return None;
        }
        loop {
            if let Some(note) = st.note.take() {
                return Some((Ok(VmEvent::Reconnected(note)), st));
            }
            if st.watch.is_none() {
                match Watch::new(st.session, spec(&st.vm, &st.hosts)).await {
                    Ok(w) => st.watch = Some(w),
                    Err(e) => {
                        if let Err(e) = recover_or_fail(&mut st, e).await {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                        continue;
                    }
                }
            }
            let w = st.watch.as_mut().expect("set above");
            let wait = if st.first { Duration::ZERO } else { max_wait };
            match w.next(wait).await {
                Ok(updates) => {
                    if w.is_gone(&st.vm) {
                        st.done = true;
                        return Some((Ok(VmEvent::Gone), st));
                    }
                    let relevant = st.first || !updates.is_empty();
                    st.first = false;
                    if relevant {
                        let item = state_of(w, &st.vm).map(|s| VmEvent::State(Box::new(s)));
                        return Some((item, st));
                    }
                }
                // Without reportMissingObjectsInResults (6.0+), an unregistered VM shows as this fault.
                Err(e) if e.fault_kind() == Some(&crate::soap::FaultKind::ManagedObjectNotFound) => {
                    st.done = true;
                    return Some((Ok(VmEvent::Gone), st));
                }
                Err(e) => {
                    st.watch = None;
                    st.first = true;
                    if let Err(e) = recover_or_fail(&mut st, e).await {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        }
    })
}

async fn recover_or_fail(st: &mut WatchState<'_>, e: VimError) -> Result<(), VimError> {
    if e.is_not_authenticated() || e.is_connection_loss() {
        recover(st, &e).await
    } else {
        Err(e)
    }
}
