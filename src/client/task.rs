//! A Task handle, as govmomi's `object.Task`: the method that started it travels with it, so every
//! failure names what failed.

use std::time::Duration;

use crate::soap::{Element, Fault, FaultKind};
use crate::vim::{MoRef, TaskInfo, TaskState};

use super::wait::{self, Control, Targets, Waited};
use super::{Session, VimError};

pub struct Task<'s> {
    session: &'s Session,
    moref: MoRef,
    method: &'static str,
}

impl<'s> Task<'s> {
    pub(crate) fn new(session: &'s Session, moref: MoRef, method: &'static str) -> Task<'s> {
        Task { session, moref, method }
    }

    pub fn moref(&self) -> &MoRef {
        &self.moref
    }

    /// The vim25 method that started this task (`PowerOnVM_Task`, ...).
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Waits for the task to end: its TaskInfo on success, `TaskFailed` with the typed fault on error,
    /// `Timeout` after `limit`.
    pub async fn wait(&self, limit: Duration) -> Result<TaskInfo, VimError> {
        let ended = wait::until(self.session, Targets::task(self), limit, None, async |seen| {
            Ok::<_, VimError>(match seen.task(self)? {
                Some(info) => Control::Done(info),
                None => Control::Continue,
            })
        })
        .await?;
        match ended {
            Waited::Done(info) => Ok(info),
            Waited::TimedOut => Err(VimError::Timeout {
                what: self.method.to_string(),
                secs: limit.as_secs(),
            }),
        }
    }

    /// Waits for the task to end, however it ends (someone else's task: what it left is read afterwards):
    /// a failed task, or one the server no longer knows, has ended. `Timeout` after `limit`; a lost
    /// connection is an error too.
    pub async fn wait_ended(&self, limit: Duration) -> Result<(), VimError> {
        match self.wait(limit).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_fault() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits for a task whose result is a managed object (RegisterVM_Task's new VM).
    pub async fn wait_for_entity(&self, limit: Duration) -> Result<MoRef, VimError> {
        let info = self.wait(limit).await?;
        info.result
            .as_ref()
            .and_then(|r| MoRef::from_xml(r).ok())
            .ok_or(VimError::NoTaskResult(self.method))
    }

    /// Decodes `Task.info`: `Some` once it succeeded, `TaskFailed` once it failed, `None` before.
    pub(crate) fn outcome(&self, info: &Element) -> Result<Option<TaskInfo>, VimError> {
        let info = TaskInfo::from_xml(info).map_err(|e| VimError::from(("Task.info", e)))?;
        match info.state {
            TaskState::Success => Ok(Some(info)),
            TaskState::Error => Err(VimError::TaskFailed {
                method: self.method,
                fault: info.error.unwrap_or_else(|| Fault {
                    kind: FaultKind::Other("MethodFault".into()),
                    type_name: "MethodFault".into(),
                    message: "the task failed without saying why".into(),
                    detail_text: None,
                }),
            }),
            _ => Ok(None),
        }
    }
}
