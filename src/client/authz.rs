//! The logged-in user's effective privileges, from AuthorizationManager.HasPrivilegeOnEntities: what the
//! server itself would decide, roles, group memberships and propagation included.

use secrecy::SecretString;

use super::{Session, VimError};
use crate::vim::methods;
use crate::vim::{EntityPrivilege, MoRef};

/// The oldest vim25 version with HasPrivilegeOnEntities (vSphere API 5.5).
pub const SINCE: (u32, u32) = (5, 5);

/// True when `api_version` ("8.0.2.0", "5.5") is at least [`SINCE`]; an unreadable version counts as new
/// enough (the call then says for itself whether the server has it).
pub fn supported(api_version: &str) -> bool {
    let mut parts = api_version.split('.').map(|p| p.trim().parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= SINCE,
        (Some(Ok(major)), None) => major > SINCE.0,
        _ => true,
    }
}

/// Whether this session's user holds each of `privileges` on each of `entities`: one request for the
/// session's own id (SessionManager.currentSession, a secret kept out of logs and recordings), one for the
/// answer.
pub async fn privileges_on(
    session: &Session,
    entities: &[MoRef],
    privileges: &[&str],
) -> Result<Vec<EntityPrivilege>, VimError> {
    let authz = session
        .content()
        .authorization_manager
        .clone()
        .ok_or(VimError::MissingManager("authorizationManager"))?;
    let sm = session
        .content()
        .session_manager
        .clone()
        .ok_or(VimError::MissingManager("sessionManager"))?;
    let current = session.properties(&sm, &["currentSession"]).await?;
    let key = current
        .prop("currentSession")
        .and_then(|s| s.child_text("key"))
        .map(|k| SecretString::from(k.trim().to_string()))
        .ok_or_else(|| {
            VimError::from((
                "SessionManager.currentSession",
                crate::vim::types::decode_err("currentSession", "no session key"),
            ))
        })?;
    // Once, as it is: a re-login in between would make `key` another session's.
    session
        .call_once(async |c| methods::has_privilege_on_entities(c, &authz, entities, &key, privileges).await)
        .await
}

#[cfg(test)]
mod tests {
    use super::supported;

    #[test]
    fn versions_with_the_method() {
        for v in ["5.5", "6.0", "6.7.3", "8.0.2.0", "9", "x"] {
            assert!(supported(v), "{v}");
        }
        for v in ["4.1", "5.0", "5.1", "4"] {
            assert!(!supported(v), "{v}");
        }
    }
}
