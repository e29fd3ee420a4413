//! The commands. Each decides with a pure function (`start::plan`, `stop::plan`, `monitor::assess`)
//! and carries the decision out through the client layer's handles; none touches the wire.

pub mod check;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod migrate;
pub mod monitor;
pub mod start;
pub mod status;
pub mod stop;

use std::collections::HashSet;
use std::time::Duration;

pub use error::OpError;

use crate::client::{DatacenterInfo, FoundVm, HostInfo, Inventory, Session, Vm, VmSelector, VmState};
use crate::config::ResourceSettings;
use crate::log::StepLog;
use crate::vim::{MoRef, QuestionInfo};

/// What a command works with once logged in.
pub struct Ctx<'a> {
    pub session: &'a Session,
    pub settings: &'a ResourceSettings,
    pub log: &'a StepLog,
    pub inv: Inventory,
}

impl<'a> Ctx<'a> {
    pub async fn new(
        session: &'a Session,
        settings: &'a ResourceSettings,
        log: &'a StepLog,
    ) -> Result<Ctx<'a>, OpError> {
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

    pub async fn find(&self) -> Result<FoundVm, OpError> {
        Ok(crate::client::find_vm(
            self.session,
            &self.inv,
            &self.settings.vm,
            self.settings.datacenter.as_deref(),
        )
        .await?)
    }

    pub fn vm(&self, moref: &MoRef) -> Vm<'a> {
        Vm::new(self.session, moref.clone())
    }

    /// The VM's state now; its name becomes the log label.
    pub async fn state(&self, vm: &Vm<'_>) -> Result<VmState, OpError> {
        let s = vm.state(&self.inv).await?;
        self.log.set_label(&s.name);
        Ok(s)
    }

    /// Finds the VM and reads its state: `None` when it is not registered.
    pub async fn observe(&self) -> Result<(FoundVm, Option<VmState>), OpError> {
        let found = self.find().await?;
        let state = match &found.vm {
            Some(m) => Some(self.state(&self.vm(m)).await?),
            None => None,
        };
        Ok((found, state))
    }

    /// The host this node stands for: `--host`, required with vCenter; the connected host on ESX-direct.
    pub fn node_host(&self) -> Result<HostInfo, OpError> {
        match &self.settings.host {
            Some(name) => self.host_named(name, "--host"),
            None if !self.vcenter() && self.inv.hosts.len() == 1 => Ok(self.inv.hosts[0].clone()),
            None if self.vcenter() => Err(OpError::HostRequired),
            None => Err(OpError::HostAmbiguous),
        }
    }

    pub fn host_named(&self, name: &str, flag: &'static str) -> Result<HostInfo, OpError> {
        self.inv
            .host_by_name(name)
            .cloned()
            .ok_or_else(|| OpError::UnknownHost {
                name: name.to_string(),
                known: self
                    .inv
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                flag,
            })
    }

    /// The root resource pool of the host's cluster or standalone compute resource.
    pub fn pool_of(&self, host: &HostInfo) -> Result<MoRef, OpError> {
        self.inv
            .pool_for_host(&host.moref)
            .cloned()
            .ok_or_else(|| OpError::HostPlacement {
                what: "resource pool",
                host: host.name.clone(),
            })
    }

    pub fn datacenter_of(&self, host: &HostInfo) -> Result<&DatacenterInfo, OpError> {
        self.inv
            .datacenter_of(&host.moref)
            .ok_or_else(|| OpError::HostPlacement {
                what: "datacenter",
                host: host.name.clone(),
            })
    }

    /// How the VM is named in messages before its inventory name is known.
    fn vm_label(&self) -> String {
        match &self.settings.vm {
            VmSelector::Name(n) => n.clone(),
            other => other.to_string(),
        }
    }
}

/// An answer vmha has decided to give to a pending question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub question_id: String,
    pub choice_key: String,
    /// The choice's text, for the log.
    pub choice_text: String,
    /// The question's first line, for the log.
    pub question: String,
}

/// Answers to questions, from `--answer ID=CHOICE`, plus the built-in "I moved it".
#[derive(Clone, Debug, Default)]
pub struct AnswerPolicy {
    rules: Vec<(String, String)>,
}

impl AnswerPolicy {
    pub fn parse(list: &[String]) -> Result<AnswerPolicy, OpError> {
        let mut rules = Vec::new();
        for item in list {
            let (id, choice) = item
                .split_once('=')
                .filter(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
                .ok_or_else(|| OpError::BadAnswer(item.clone()))?;
            rules.push((id.trim().to_string(), choice.trim().to_string()));
        }
        Ok(AnswerPolicy { rules })
    }

    /// The choice to answer with, or a `Question` error when vmha must not guess. Pure.
    pub fn decide(&self, vm: &str, q: &QuestionInfo) -> Result<Answer, OpError> {
        let norm = |s: &str| s.replace('_', "").to_lowercase();
        let rule = self
            .rules
            .iter()
            .find(|(id, _)| &q.id == id || q.message_ids.iter().any(|m| m == id));
        let choice = match rule {
            Some((_, choice)) => q
                .choices
                .iter()
                .find(|c| &c.label == choice || &c.key == choice || norm(&c.summary) == norm(choice)),
            None if q.is_uuid_altered() => q.moved_choice(),
            None => None,
        };
        let question = q.text.lines().next().unwrap_or("").to_string();
        match choice {
            Some(c) => Ok(Answer {
                question_id: q.id.clone(),
                choice_key: c.key.clone(),
                choice_text: c.summary.replace('_', ""),
                question,
            }),
            None => Err(OpError::Question {
                vm: vm.to_string(),
                id: q.id.clone(),
                message: q.message_ids.first().cloned().unwrap_or_else(|| q.id.clone()),
                text: question,
                choices: q
                    .choices
                    .iter()
                    .map(|c| format!("{}={} ({})", c.key, c.label, c.summary.replace('_', "")))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Gives an answer once per question id (a question stays visible until the server clears it).
pub async fn give_answer(
    ctx: &Ctx<'_>,
    vm: &Vm<'_>,
    answer: &Answer,
    answered: &mut HashSet<String>,
) -> Result<(), OpError> {
    if !answered.insert(answer.question_id.clone()) {
        return Ok(());
    }
    vm.answer(&answer.question_id, &answer.choice_key).await?;
    ctx.log.info(format!(
        "answered question \"{}\" with \"{}\"",
        answer.question, answer.choice_text
    ));
    Ok(())
}

/// Decides and gives the answer to a question seen while waiting.
pub async fn answer_question(
    ctx: &Ctx<'_>,
    policy: &AnswerPolicy,
    vm: &Vm<'_>,
    q: &QuestionInfo,
    answered: &mut HashSet<String>,
) -> Result<(), OpError> {
    if answered.contains(&q.id) {
        return Ok(());
    }
    let answer = policy.decide(&ctx.vm_label(), q)?;
    give_answer(ctx, vm, &answer, answered).await
}

/// Prints "waiting ... 10/240 s" lines every `every` while a wait goes on.
pub struct Progress {
    next: Duration,
    every: Duration,
}

impl Progress {
    pub fn new(every: Duration) -> Progress {
        Progress { next: every, every }
    }

    pub fn tick(&mut self, log: &StepLog, what: &str, elapsed: Duration, limit: Duration) {
        if elapsed >= self.next {
            log.info(format!("{what} {}/{} s", elapsed.as_secs(), limit.as_secs()));
            self.next += self.every;
        }
    }

    pub fn every(&self) -> Duration {
        self.every
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

    fn disk_full() -> QuestionInfo {
        let mut q = question("msg.hbacommon.outofspace");
        q.choices = vec![
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
        q
    }

    #[test]
    fn moved_question_is_answered_i_moved_it_by_label() {
        let a = AnswerPolicy::default()
            .decide("vm1", &question("msg.uuid.altered"))
            .unwrap();
        assert_eq!((a.choice_key.as_str(), a.choice_text.as_str()), ("1", "I moved it"));
    }

    #[test]
    fn other_question_without_a_rule_is_refused_with_its_choices() {
        let e = AnswerPolicy::default().decide("vm1", &disk_full()).unwrap_err();
        assert!(matches!(&e, OpError::Question { message, .. } if message == "msg.hbacommon.outofspace"));
        assert!(e.to_string().contains("1=button.abort (Cancel)"), "{e}");
    }

    #[test]
    fn answer_rules_override_by_text_label_or_key() {
        let copy = AnswerPolicy::parse(&["msg.uuid.altered=I copied it".into()]).unwrap();
        assert_eq!(
            copy.decide("vm1", &question("msg.uuid.altered")).unwrap().choice_key,
            "2"
        );
        let abort = AnswerPolicy::parse(&["msg.hbacommon.outofspace=button.abort".into()]).unwrap();
        assert_eq!(abort.decide("vm1", &disk_full()).unwrap().choice_key, "1");
        assert!(matches!(
            AnswerPolicy::parse(&["nochoice".into()]),
            Err(OpError::BadAnswer(_))
        ));
    }
}
