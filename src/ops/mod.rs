//! The commands. Each works through the client layer and reports in the step log.

pub mod check;
pub mod migrate;
pub mod monitor;
pub mod start;
pub mod status;
pub mod stop;

use std::collections::HashSet;
use std::time::Duration;

use crate::client::{ConnectOptions, Credentials, FoundVm, HostInfo, Inventory, Session, VmState};
use crate::config::{ConnectionSettings, ResourceSettings};
use crate::error::{Error, OpError};
use crate::log::StepLog;
use crate::soap::TransportOptions;
use crate::vim::{MoRef, QuestionInfo, methods};

/// Connects, runs `work`, and logs out whatever happens: success, error, timeout, SIGINT or SIGTERM.
pub async fn with_session<T, F>(conn: ConnectionSettings, work: F) -> Result<T, Error>
where
    F: AsyncFnOnce(&Session) -> Result<T, Error>,
{
    let opts = ConnectOptions {
        transport: TransportOptions::new(&conn.url, conn.tls, conn.request_timeout),
        credentials: Credentials {
            user: conn.user,
            password: conn.password,
        },
        record: conn.record.map(|d| (d, conn.record_label)),
    };
    // Connecting is bounded by the request timeout; a signal during it only ends the process.
    let session = tokio::select! {
        s = Session::connect(opts) => s?,
        name = shutdown_signal() => return Err(OpError::Interrupted(name).into()),
    };
    let result = tokio::select! {
        r = work(&session) => r,
        name = shutdown_signal() => Err(OpError::Interrupted(name).into()),
    };
    session.logout().await;
    result
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// What a command works with once logged in.
pub struct Ctx<'a> {
    pub session: &'a Session,
    pub settings: &'a ResourceSettings,
    pub log: &'a StepLog,
    pub inv: Inventory,
}

impl<'a> Ctx<'a> {
    pub async fn new(session: &'a Session, settings: &'a ResourceSettings, log: &'a StepLog) -> Result<Ctx<'a>, Error> {
        let inv = Inventory::load(session).await?;
        Ok(Ctx {
            session,
            settings,
            log,
            inv,
        })
    }

    pub fn vcenter(&self) -> bool {
        self.session.is_vcenter()
    }

    pub async fn find(&self) -> Result<FoundVm, Error> {
        Ok(crate::client::find_vm(
            self.session,
            &self.inv,
            &self.settings.vm,
            self.settings.datacenter.as_deref(),
        )
        .await?)
    }

    pub async fn state(&self, vm: &MoRef) -> Result<VmState, Error> {
        let s = crate::client::read_state(self.session, &self.inv, vm).await?;
        self.log.set_label(&s.name);
        Ok(s)
    }

    /// The host this node stands for: `--host`, required with vCenter; the connected host on ESX-direct.
    pub fn target_host(&self, required: bool) -> Result<Option<HostInfo>, Error> {
        match &self.settings.host {
            Some(name) => match self.inv.host_by_name(name) {
                Some(h) => Ok(Some(h.clone())),
                None => Err(OpError::Usage(format!(
                    "no host named '{name}' on this server (known: {}); fix --host",
                    self.inv
                        .hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into()),
            },
            None if !self.vcenter() && self.inv.hosts.len() == 1 => Ok(self.inv.hosts.first().cloned()),
            None if required && self.vcenter() => Err(OpError::Usage(
                "vCenter mode: give --host ESXHOST, the host this cluster node stands for".into(),
            )
            .into()),
            None if required => {
                Err(OpError::Usage("give --host ESXHOST: this server has more than one host".into()).into())
            }
            None => Ok(None),
        }
    }

    pub fn host_name(&self, h: &MoRef) -> String {
        self.inv
            .host(h)
            .map(|h| h.name.clone())
            .unwrap_or_else(|| h.value.clone())
    }
}

/// Answers to questions, from `--answer ID=CHOICE`, plus the built-in "I moved it".
#[derive(Clone, Debug, Default)]
pub struct AnswerPolicy {
    rules: Vec<(String, String)>,
}

impl AnswerPolicy {
    pub fn parse(list: &[String]) -> Result<AnswerPolicy, Error> {
        let mut rules = Vec::new();
        for item in list {
            let (id, choice) = item
                .split_once('=')
                .filter(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
                .ok_or_else(|| {
                    OpError::Usage(format!(
                        "--answer '{item}': write QUESTION=CHOICE, e.g. msg.uuid.altered=button.uuid.movedTheVM"
                    ))
                })?;
            rules.push((id.trim().to_string(), choice.trim().to_string()));
        }
        Ok(AnswerPolicy { rules })
    }

    /// The choice key to answer, with the choice's text, or None when vmha must not guess.
    pub fn choose(&self, q: &QuestionInfo) -> Option<(String, String)> {
        let norm = |s: &str| s.replace('_', "").to_lowercase();
        for (id, choice) in &self.rules {
            if &q.id == id || q.message_ids.iter().any(|m| m == id) {
                return q
                    .choices
                    .iter()
                    .find(|c| &c.label == choice || &c.key == choice || norm(&c.summary) == norm(choice))
                    .map(|c| (c.key.clone(), c.summary.replace('_', "")));
            }
        }
        if q.is_uuid_altered() {
            return q.moved_choice().map(|c| (c.key.clone(), c.summary.replace('_', "")));
        }
        None
    }
}

/// Answers a pending question once, or fails with its text and choices.
pub async fn answer_question(
    ctx: &Ctx<'_>,
    policy: &AnswerPolicy,
    vm: &MoRef,
    q: &QuestionInfo,
    answered: &mut HashSet<String>,
) -> Result<(), Error> {
    if answered.contains(&q.id) {
        return Ok(());
    }
    let first_line = q.text.lines().next().unwrap_or("").to_string();
    match policy.choose(q) {
        Some((key, summary)) => {
            methods::answer_vm(ctx.session.client(), vm, &q.id, &key).await?;
            answered.insert(q.id.clone());
            ctx.log
                .info(format!("answered question \"{first_line}\" with \"{summary}\""));
            Ok(())
        }
        None => Err(OpError::Question {
            vm: ctx.log_label(),
            id: q.id.clone(),
            message: q.message_ids.first().cloned().unwrap_or_else(|| q.id.clone()),
            text: first_line,
            choices: q
                .choices
                .iter()
                .map(|c| format!("{}={} ({})", c.key, c.label, c.summary.replace('_', "")))
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into()),
    }
}

impl Ctx<'_> {
    fn log_label(&self) -> String {
        match &self.settings.vm {
            crate::client::VmSelector::Name(n) => n.clone(),
            other => other.to_string(),
        }
    }
}

/// Prints "waiting ... 10/240 s" lines every `every` while a wait goes on.
pub struct Progress {
    started: tokio::time::Instant,
    next: Duration,
    every: Duration,
}

impl Progress {
    pub fn new(every: Duration) -> Progress {
        Progress {
            started: tokio::time::Instant::now(),
            next: every,
            every,
        }
    }

    pub fn tick(&mut self, log: &StepLog, what: &str, limit: Duration) {
        let elapsed = self.started.elapsed();
        if elapsed >= self.next {
            log.info(format!("{what} {}/{} s", elapsed.as_secs(), limit.as_secs()));
            self.next += self.every;
        }
    }

    /// How long until the next progress line is due, so a watch can wake up for it.
    pub fn until_next(&self) -> Duration {
        self.next
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vim::QuestionChoice;

    fn question(msg: &str) -> QuestionInfo {
        QuestionInfo {
            id: "_vmx1".into(),
            text: "moved?".into(),
            choices: vec![
                QuestionChoice {
                    key: "0".into(),
                    label: "button.uuid.cancel".into(),
                    summary: "Cancel".into(),
                },
                QuestionChoice {
                    key: "1".into(),
                    label: "button.uuid.movedTheVM".into(),
                    summary: "I _moved it".into(),
                },
                QuestionChoice {
                    key: "2".into(),
                    label: "button.uuid.copiedTheVM".into(),
                    summary: "I _copied it".into(),
                },
            ],
            default_index: Some(2),
            message_ids: vec![msg.into()],
        }
    }

    #[test]
    fn moved_by_default_and_rules_override() {
        let none = AnswerPolicy::default();
        assert_eq!(none.choose(&question("msg.uuid.altered")).unwrap().0, "1");
        let mut disk_full = question("msg.hbacommon.outofspace");
        disk_full.choices = vec![
            QuestionChoice {
                key: "0".into(),
                label: "button.retry".into(),
                summary: "_Retry".into(),
            },
            QuestionChoice {
                key: "1".into(),
                label: "button.abort".into(),
                summary: "_Cancel".into(),
            },
        ];
        assert!(none.choose(&disk_full).is_none());
        let copy = AnswerPolicy::parse(&["msg.uuid.altered=I copied it".into()]).unwrap();
        assert_eq!(copy.choose(&question("msg.uuid.altered")).unwrap().0, "2");
        let other = AnswerPolicy::parse(&["msg.hbacommon.outofspace=button.abort".into()]).unwrap();
        assert_eq!(other.choose(&disk_full).unwrap().0, "1");
        assert!(AnswerPolicy::parse(&["nochoice".into()]).is_err());
    }
}
