//! Waiting for a Task through the property collector.

use std::time::Duration;

use crate::soap::{Fault, FaultKind};
use crate::vim::{MoRef, TaskInfo, TaskState};

use super::{Session, VimError, Watch};

/// Waits for the task to finish and returns its TaskInfo. A task that ends in error becomes
/// `VimError::TaskFailed` carrying the typed fault.
pub async fn wait(session: &Session, task: &MoRef, what: &str, limit: Duration) -> Result<TaskInfo, VimError> {
    let mut watch = Watch::objects(session, std::slice::from_ref(task), &["info"]).await?;
    let result = wait_on(&mut watch, task, what, limit).await;
    watch.close().await;
    result
}

async fn wait_on(watch: &mut Watch<'_>, task: &MoRef, what: &str, limit: Duration) -> Result<TaskInfo, VimError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(info) = finished(watch, task, what)? {
            return Ok(info);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(VimError::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
            });
        }
        watch.next(left.max(Duration::from_secs(1))).await?;
    }
}

/// The task's TaskInfo once it has ended: `Some` on success, `TaskFailed` with its typed fault on error,
/// `None` while queued or running (or before the watch has seen it).
pub fn finished(watch: &Watch<'_>, task: &MoRef, what: &str) -> Result<Option<TaskInfo>, VimError> {
    let Some(el) = watch.get(task, "info") else {
        return Ok(None);
    };
    let info = TaskInfo::from_xml(el).map_err(|e| VimError::Unexpected(e.to_string()))?;
    match info.state {
        TaskState::Success => Ok(Some(info)),
        TaskState::Error => {
            let fault = info.error.unwrap_or_else(|| Fault {
                kind: FaultKind::Other("MethodFault".into()),
                type_name: "MethodFault".into(),
                message: "the task failed without saying why".into(),
                detail_text: None,
            });
            Err(VimError::TaskFailed {
                what: what.to_string(),
                fault,
            })
        }
        _ => Ok(None),
    }
}
