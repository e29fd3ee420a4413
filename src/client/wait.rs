//! The one wait primitive, after govmomi's `property.Wait` and kube-rs's `await_condition`: a scoped
//! watch over a PropertyCollector no other process waits on, a condition that sees every update and
//! decides, and the deadline applied here and nowhere else. The collector (or, on the session's default
//! collector, the filter) is destroyed on every exit path (done, error, deadline) unless Logout follows;
//! see [`super::watch::Watch`]'s `Drop` for the one path where it cannot be (cancellation).

use std::time::Duration;

use crate::vim::methods::{PropertyFilterSpec, PropertySpec};
use crate::vim::{HeartbeatStatus, MoRef, PowerState, QuestionInfo, TaskInfo};

use super::watch::Watch;
use super::{Session, Task, VimError, Vm};

/// What a condition decides after looking at the latest values.
#[derive(Debug)]
pub enum Control<T> {
    Continue,
    Done(T),
}

/// How a wait ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    Done(T),
    /// The limit passed before the condition said done: for the caller to judge.
    TimedOut,
}

/// A VM property a wait can watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmProp {
    PowerState,
    Question,
    Heartbeat,
}

impl VmProp {
    fn path(self) -> &'static str {
        match self {
            VmProp::PowerState => "runtime.powerState",
            VmProp::Question => "runtime.question",
            VmProp::Heartbeat => "guestHeartbeatStatus",
        }
    }
}

/// What a wait watches: some properties of one VM, and tasks.
#[derive(Debug, Default)]
pub struct Targets {
    vm: Option<(MoRef, Vec<VmProp>)>,
    tasks: Vec<MoRef>,
}

impl Targets {
    pub fn vm(vm: &Vm<'_>, props: &[VmProp]) -> Targets {
        Targets {
            vm: Some((vm.moref().clone(), props.to_vec())),
            tasks: vec![],
        }
    }

    pub fn task(task: &Task<'_>) -> Targets {
        Targets::default().and_task(task)
    }

    pub fn and_task(mut self, task: &Task<'_>) -> Targets {
        self.tasks.push(task.moref().clone());
        self
    }

    fn spec(&self) -> PropertyFilterSpec {
        let mut props = vec![];
        let mut objs = vec![];
        if let Some((vm, paths)) = &self.vm {
            props.push(PropertySpec {
                kind: vm.kind.clone(),
                paths: paths.iter().map(|p| p.path().to_string()).collect(),
            });
            objs.push(vm.clone());
        }
        if !self.tasks.is_empty() {
            props.push(PropertySpec {
                kind: "Task".into(),
                paths: vec!["info".into()],
            });
            objs.extend(self.tasks.iter().cloned());
        }
        PropertyFilterSpec {
            props,
            objects: PropertyFilterSpec::of_objects(&objs, &[]).objects,
        }
    }
}

/// The latest values a wait has seen, with typed accessors.
pub struct Observed<'w, 'a> {
    watch: &'w Watch<'a>,
    elapsed: Duration,
}

impl Observed<'_, '_> {
    pub fn power_state(&self, vm: &Vm<'_>) -> Option<PowerState> {
        self.watch
            .text(vm.moref(), VmProp::PowerState.path())
            .map(PowerState::parse)
    }

    /// Gray when Tools never reported.
    pub fn heartbeat(&self, vm: &Vm<'_>) -> HeartbeatStatus {
        HeartbeatStatus::parse(self.watch.text(vm.moref(), VmProp::Heartbeat.path()).unwrap_or("gray"))
    }

    pub fn question(&self, vm: &Vm<'_>) -> Result<Option<QuestionInfo>, VimError> {
        self.watch
            .get(vm.moref(), VmProp::Question.path())
            .map(|q| QuestionInfo::from_xml(q).map_err(|e| VimError::from(("runtime.question", e))))
            .transpose()
    }

    /// The task's outcome once it has ended: `Some(info)` on success, `TaskFailed` with its typed fault on
    /// error, `None` while it is queued or running.
    pub fn task(&self, task: &Task<'_>) -> Result<Option<TaskInfo>, VimError> {
        match self.watch.get(task.moref(), "info") {
            None => Ok(None),
            Some(el) => task.outcome(el),
        }
    }

    pub fn is_gone(&self, vm: &Vm<'_>) -> bool {
        self.watch.is_gone(vm.moref())
    }

    /// Time since the wait began (for progress lines).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// Watches `targets` until `condition` says done or fails, or `limit` passes. The condition runs on the
/// first values, on every change, and at least every `wake_every` when given (for progress lines).
pub async fn until<T, E>(
    session: &Session,
    targets: Targets,
    limit: Duration,
    wake_every: Option<Duration>,
    mut condition: impl AsyncFnMut(&Observed<'_, '_>) -> Result<Control<T>, E>,
) -> Result<Waited<T>, E>
where
    E: From<VimError>,
{
    let mut watch = Watch::open(session, targets.spec()).await?;
    let outcome = drive(&mut watch, limit, wake_every, &mut condition).await;
    watch.close().await;
    outcome
}

async fn drive<T, E>(
    watch: &mut Watch<'_>,
    limit: Duration,
    wake_every: Option<Duration>,
    condition: &mut impl AsyncFnMut(&Observed<'_, '_>) -> Result<Control<T>, E>,
) -> Result<Waited<T>, E>
where
    E: From<VimError>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + limit;
    let mut max_wait = Duration::ZERO;
    loop {
        watch.next(max_wait).await?;
        let seen = Observed {
            watch,
            elapsed: started.elapsed(),
        };
        if let Control::Done(t) = condition(&seen).await? {
            return Ok(Waited::Done(t));
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(Waited::TimedOut);
        }
        max_wait = wake_every.map_or(left, |w| w.min(left));
    }
}

#[cfg(test)]
mod tests {
    /// Waiting goes through [`until`] (or blocks on what it waits for, bounded by a timeout): no source file
    /// sleeps between checks or polls a child, except the two timed retries that have nothing to wait on
    /// (a file lock's expiry, a server that is away), each documented where it is, and the fence agent's
    /// configured pauses (fence-agents' `--delay` before fencing, `--power-wait` after a power action),
    /// which are the administrator's fixed waits, not polling.
    #[test]
    fn no_hand_rolled_polling_loops() {
        let allowed = [
            ("ops/start.rs", 1),
            ("client/stream.rs", 1),
            ("adapters/fence.rs", 1),
            ("ops/power.rs", 1),
        ];
        let words = ["sleep(", "try_wait("];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![root.clone()];
        let mut found = Vec::new();
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                // Tests may pause; the code they test may not.
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                let rel = p.strip_prefix(&root).unwrap().display().to_string();
                let hits = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .filter(|l| words.iter().any(|w| l.contains(w)))
                    .count();
                let ok = allowed.iter().find(|(f, _)| *f == rel).map_or(0, |(_, n)| *n);
                if hits > ok {
                    found.push(format!("{rel}: {hits}"));
                }
            }
        }
        assert!(found.is_empty(), "polling loops outside wait::until: {found:?}");
    }
}
