//! `vmha status`: the VM as the server sees it. Not registered is an answer, not an error.

use serde::Serialize;

use super::{Ctx, OpError, Route};
use crate::client::VmState;
use crate::vim::QuestionInfo;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub registered: bool,
    pub name: Option<String>,
    pub vmx: Option<String>,
    pub uuid: Option<String>,
    pub power_state: Option<String>,
    pub host: Option<String>,
    pub host_connection_state: Option<String>,
    pub connection_state: Option<String>,
    pub heartbeat: Option<String>,
    pub question: Option<QuestionInfo>,
    /// Other inventory entries of the same files (after vCenter was away): moref, host, states.
    pub other_entries: Vec<OtherEntry>,
    /// `vcenter`, or `host` when the answer came from this node's host directly.
    pub source: &'static str,
    /// Why the host was asked instead of vCenter.
    pub fallback_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OtherEntry {
    pub moref: String,
    pub host: Option<String>,
    pub power_state: String,
    pub connection_state: String,
}

impl StatusReport {
    pub fn unregistered(vmx: Option<String>) -> StatusReport {
        StatusReport {
            registered: false,
            name: None,
            vmx,
            uuid: None,
            power_state: None,
            host: None,
            host_connection_state: None,
            connection_state: None,
            heartbeat: None,
            question: None,
            other_entries: Vec::new(),
            source: "server",
            fallback_reason: None,
        }
    }

    pub fn from_state(s: &VmState) -> StatusReport {
        StatusReport {
            registered: true,
            name: Some(s.name.clone()),
            vmx: s.vmx.clone(),
            uuid: s.uuid.clone(),
            power_state: Some(s.power_state.to_string()),
            host: s.host_name.clone(),
            host_connection_state: s.host_connection_state.as_ref().map(|c| c.to_string()),
            connection_state: Some(s.connection_state.to_string()),
            heartbeat: Some(s.heartbeat.to_string()),
            question: s.question.clone(),
            other_entries: Vec::new(),
            source: "server",
            fallback_reason: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let mut out = format!("registered: {}\n", if self.registered { "yes" } else { "no" });
        if self.registered {
            out += &format!(
                "name: {}\nvmx: {}\nuuid: {}\npower_state: {}\nhost: {} ({})\nconnection_state: {}\nheartbeat: {}\n",
                v(&self.name),
                v(&self.vmx),
                v(&self.uuid),
                v(&self.power_state),
                v(&self.host),
                v(&self.host_connection_state),
                v(&self.connection_state),
                v(&self.heartbeat)
            );
            match &self.question {
                None => out += "question: none\n",
                Some(q) => {
                    out += &format!("question: {} \"{}\"\n", q.id, q.text.lines().next().unwrap_or(""));
                    for c in &q.choices {
                        out += &format!("  choice {}: {} ({})\n", c.key, c.summary.replace('_', ""), c.label);
                    }
                }
            }
        } else if let Some(vmx) = &self.vmx {
            out += &format!("vmx: {vmx}\n");
        }
        for e in &self.other_entries {
            out += &format!(
                "other entry: {} on {} ({}, {})\n",
                e.moref,
                e.host.as_deref().unwrap_or("-"),
                e.power_state,
                e.connection_state
            );
        }
        if let Some(why) = &self.fallback_reason {
            out += &format!("source: this node's host directly ({why})\n");
        }
        out
    }
}

pub async fn run(ctx: &Ctx<'_>) -> Result<StatusReport, OpError> {
    let mut report = match ctx.observe().await? {
        (found, None) => StatusReport::unregistered(found.vmx),
        (_, Some(state)) => StatusReport::from_state(&state),
    };
    report.other_entries = ctx
        .duplicates()
        .iter()
        .map(|d| OtherEntry {
            moref: d.moref.value.clone(),
            host: d.host_name.clone(),
            power_state: d.power_state.to_string(),
            connection_state: d.connection_state.to_string(),
        })
        .collect();
    (report.source, report.fallback_reason) = match ctx.route() {
        Route::Server if ctx.vcenter() => ("vcenter", None),
        Route::Server => ("host", None),
        Route::Host { vcenter_down, .. } => ("host", vcenter_down.clone()),
    };
    Ok(report)
}
