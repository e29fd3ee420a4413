//! `vm_states`: a Stream of VM states over WaitForUpdatesEx, in the manner of kube-rs's watcher: an
//! explicit [`Phase`] enum, one step per poll. It logs in again after session expiry (inside the watch)
//! and reconnects after a lost connection, until the server has been silent for the request timeout;
//! then it yields [`VimError::ServerLost`] and ends.

use std::time::Duration;

use futures_util::Stream;
use tokio::time::Instant;

use super::vm::vm_and_host_props;
use super::watch::Watch;
use super::{Session, VimError, VmState};
use crate::vim::methods::PropertyFilterSpec;
use crate::vim::{HostConnectionState, MoRef};

/// How long a reconnect may take after the loss was noticed, even when the server has already been
/// silent for the whole request timeout (a stalled request then still gets one fresh attempt). Kept short:
/// with the cleanup after it, the exit stays within the request timeout plus 2 s.
const RECONNECT_GRACE: Duration = Duration::from_millis(500);

/// One observation of the VM.
#[derive(Clone, Debug, PartialEq)]
pub enum VmEvent {
    State(Box<VmState>),
    /// The VM left the inventory (unregistered or deleted).
    Gone,
    /// The connection was lost and has been restored (for the log).
    Reconnected(String),
}

/// Where the watcher stands.
enum Phase<'a> {
    /// No watch yet: the next step opens one.
    Opening,
    /// Watching; `fresh` until the first values have been yielded.
    Watching { watch: Watch<'a>, fresh: bool },
    /// The connection broke: reconnect until `last_contact` + the request timeout.
    Reconnecting { cause: VimError },
    /// Ended (after Gone or an error).
    Done,
}

struct Watcher<'a> {
    session: &'a Session,
    vm: MoRef,
    hosts: Vec<MoRef>,
    max_wait: Duration,
    phase: Phase<'a>,
    /// When the server last answered; the reconnect window runs from here.
    last_contact: Instant,
}

fn spec(vm: &MoRef, hosts: &[MoRef]) -> PropertyFilterSpec {
    let mut objs = vec![vm.clone()];
    objs.extend(hosts.iter().cloned());
    PropertyFilterSpec {
        props: vm_and_host_props(&["name", "runtime.connectionState"]),
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

impl<'a> Watcher<'a> {
    /// Advances by one step; `Some` is an item to yield.
    async fn step(&mut self) -> Option<Result<VmEvent, VimError>> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Done => None,
            Phase::Opening => match Watch::open_private(self.session, spec(&self.vm, &self.hosts)).await {
                Ok(watch) => {
                    self.last_contact = Instant::now();
                    self.phase = Phase::Watching { watch, fresh: true };
                    None
                }
                Err(e) => self.lost_or_fail(e),
            },
            Phase::Watching { mut watch, fresh } => {
                let wait = if fresh { Duration::ZERO } else { self.max_wait };
                match watch.next(wait).await {
                    Ok(changed) => {
                        self.last_contact = Instant::now();
                        if watch.is_gone(&self.vm) {
                            watch.close().await;
                            return Some(Ok(VmEvent::Gone));
                        }
                        let item = (fresh || changed).then(|| state_of(&watch, &self.vm));
                        self.phase = Phase::Watching { watch, fresh: false };
                        item.map(|s| s.map(|s| VmEvent::State(Box::new(s))))
                    }
                    // Without reportMissingObjectsInResults (6.0+), an unregistered VM shows as this fault.
                    Err(e) if e.is_object_gone() => {
                        watch.close().await;
                        Some(Ok(VmEvent::Gone))
                    }
                    Err(e) => {
                        watch.close().await;
                        self.lost_or_fail(e)
                    }
                }
            }
            Phase::Reconnecting { cause } => {
                let window = self.session.request_timeout();
                // One stalled request is not yet a lost server: a quick reconnect is always tried.
                let until = (self.last_contact + window).max(Instant::now() + RECONNECT_GRACE);
                match tokio::time::timeout_at(until, self.reconnect()).await {
                    Ok(Ok(watch)) => {
                        self.last_contact = Instant::now();
                        self.phase = Phase::Watching { watch, fresh: true };
                        Some(Ok(VmEvent::Reconnected(format!("reconnected after: {cause}"))))
                    }
                    Ok(Err(e)) => Some(Err(e)),
                    Err(_) => Some(Err(VimError::ServerLost {
                        url: self.session.url().to_string(),
                        secs: window.as_secs(),
                        cause: Box::new(cause),
                    })),
                }
            }
        }
    }

    /// A lost connection starts reconnecting; anything else ends the stream with the error.
    fn lost_or_fail(&mut self, e: VimError) -> Option<Result<VmEvent, VimError>> {
        if e.is_connection_loss() {
            tracing::debug!("connection lost: {e}");
            self.phase = Phase::Reconnecting { cause: e };
            None
        } else {
            Some(Err(e))
        }
    }

    /// Tries to open a watch again, backing off between attempts; the caller bounds it in time.
    async fn reconnect(&self) -> Result<Watch<'a>, VimError> {
        let mut delay = Duration::from_millis(250);
        loop {
            match Watch::open_private(self.session, spec(&self.vm, &self.hosts)).await {
                Ok(w) => return Ok(w),
                Err(e) if e.is_connection_loss() => tracing::debug!("reconnect: {e}"),
                Err(e) => return Err(e),
            }
            // Nothing to watch while the server is away: back off briefly between attempts.
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Yields the VM's state first, then once per change. Each server-side wait is bounded well inside the
/// request timeout, which also keeps the session alive.
pub fn vm_states<'a>(
    session: &'a Session,
    vm: MoRef,
    hosts: Vec<MoRef>,
) -> impl Stream<Item = Result<VmEvent, VimError>> + 'a {
    let max_wait = session
        .request_timeout()
        .saturating_sub(Duration::from_secs(10))
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let watcher = Watcher {
        session,
        vm,
        hosts,
        max_wait,
        phase: Phase::Opening,
        last_contact: Instant::now(),
    };
    futures_util::stream::unfold(watcher, |mut w| async move {
        loop {
            if matches!(w.phase, Phase::Done) {
                return None;
            }
            if let Some(item) = w.step().await {
                return Some((item, w));
            }
        }
    })
}
