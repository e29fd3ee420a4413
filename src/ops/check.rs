//! `vmha check`: who is the server.

use crate::client::Session;
use crate::vim::AboutInfo;

/// The one line `check` prints: fullName verbatim, then apiType, apiVersion and instanceUuid.
pub fn check_line(about: &AboutInfo) -> String {
    format!(
        "{} | apiType={} | apiVersion={} | instanceUuid={}",
        about.full_name,
        about.api_type,
        about.api_version,
        about.instance_uuid.as_deref().unwrap_or("-")
    )
}

pub fn run(session: &Session) -> String {
    check_line(&session.content().about)
}
