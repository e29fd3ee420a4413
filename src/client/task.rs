//! Waiting for a Task through the property collector.

use std::time::Duration;

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
        if let Some(info) = watch.get(task, "info") {
            let info = TaskInfo::from_xml(info).map_err(|e| VimError::Unexpected(e.to_string()))?;
            match info.state {
                TaskState::Success => return Ok(info),
                TaskState::Error => {
                    let fault = info.error.clone().unwrap_or_else(|| crate::soap::Fault {
                        kind: crate::soap::FaultKind::Other("MethodFault".into()),
                        type_name: "MethodFault".into(),
                        message: "task failed without an error".into(),
                        detail_text: None,
                    });
                    return Err(VimError::TaskFailed {
                        what: what.to_string(),
                        fault,
                    });
                }
                _ => {}
            }
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
