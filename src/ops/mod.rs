//! The commands. Each decides with a pure function (`start::plan`, `stop::plan`, `monitor::assess`)
//! and carries the decision out through the client layer's handles; none touches the wire.

pub mod check;
pub mod entries;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod host_power;
pub mod migrate;
pub mod monitor;
pub mod power;
pub mod privileges;
pub mod start;
pub mod status;
pub mod stop;

use std::collections::HashSet;
use std::time::Duration;

pub use error::OpError;

use crate::client::{DatacenterInfo, FoundVm, HostInfo, Inventory, Session, Task, Vm, VmSelector, VmState};
use crate::config::ResourceSettings;
use crate::log::StepLog;
use crate::vim::{MoRef, QuestionInfo};

/// Which endpoint a command acts through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// The server `--url` names: vCenter, or an ESX host (its `apiType` says which).
    #[default]
    Server,
    /// This node's own ESX host, directly: `vcenter_down` says why not vCenter; `None` is a cluster with no
    /// vCenter at all (ESX-only). The connected host is this node's host, whatever it calls itself.
    Host { name: String, vcenter_down: Option<String> },
}

/// What another host says of the VM, asked directly before a start through this node's host registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSeen {
    pub host: String,
    /// `Ok(None)`: not registered there; `Err`: the host did not answer (dead, or cut off).
    pub seen: Result<Option<crate::vim::PowerState>, String>,
}

/// Asks the other hosts about the VM (given by the caller, which owns the connections).
pub type PeerProbe<'a> = Box<dyn Fn() -> futures_util::future::LocalBoxFuture<'a, Vec<PeerSeen>> + 'a>;

/// The session cache's key for the VM the settings name (its remembered managed object and memo).
pub fn selector_key(settings: &ResourceSettings) -> String {
    format!("{} in {}", settings.vm, settings.datacenter.as_deref().unwrap_or("*"))
}

/// What a command works with once logged in.
pub struct Ctx<'a> {
    pub session: &'a Session,
    pub settings: &'a ResourceSettings,
    pub log: &'a StepLog,
    /// Read on first use: most calls never need the inventory above the VM.
    inv: tokio::sync::OnceCell<Inventory>,
    route: Route,
    /// The VM's files as vCenter last reported them: what a takeover through a host registers when the
    /// settings name the VM otherwise.
    remembered_vmx: Option<String>,
    peers: Option<PeerProbe<'a>>,
    /// The last state read of the VM and its host, for the memo kept beside the session.
    last_seen: std::sync::Mutex<Option<(VmState, Option<HostInfo>)>>,
    /// Other inventory entries of the VM's files, and those of them safe to unregister.
    duplicates: std::sync::Mutex<Vec<VmState>>,
    removable: std::sync::Mutex<Vec<MoRef>>,
    removed: std::sync::Mutex<Vec<MoRef>>,
    /// The VM had several entries last time: look for them again even if the entry found looks sound.
    recheck_twins: bool,
}

impl<'a> Ctx<'a> {
    pub async fn new(
        session: &'a Session,
        settings: &'a ResourceSettings,
        log: &'a StepLog,
    ) -> Result<Ctx<'a>, OpError> {
        Ok(Ctx {
            session,
            settings,
            log,
            inv: tokio::sync::OnceCell::new(),
            route: Route::Server,
            remembered_vmx: None,
            peers: None,
            last_seen: std::sync::Mutex::new(None),
            duplicates: std::sync::Mutex::new(Vec::new()),
            removable: std::sync::Mutex::new(Vec::new()),
            removed: std::sync::Mutex::new(Vec::new()),
            recheck_twins: false,
        })
    }

    /// Acts through `route`, knowing the VM's files from an earlier vCenter read, and asking `peers`.
    pub fn with_route(mut self, route: Route, remembered_vmx: Option<String>, peers: Option<PeerProbe<'a>>) -> Self {
        self.route = route;
        self.remembered_vmx = remembered_vmx;
        self.peers = peers;
        self
    }

    /// Looks for other entries of the VM's files even when the one found looks sound (it had twins before).
    pub fn recheck_twins(mut self, yes: bool) -> Self {
        self.recheck_twins = yes;
        self
    }

    /// Whether this command looked for other entries of the VM's files (it found some, or was asked to).
    pub fn looked_for_twins(&self) -> bool {
        self.recheck_twins || !self.duplicates().is_empty()
    }

    /// Whether other entries of the VM's files are still in the inventory after this command.
    pub fn twins_left(&self) -> bool {
        let removed = self.removed.lock().map(|r| r.clone()).unwrap_or_default();
        self.duplicates().iter().any(|d| !removed.contains(&d.moref))
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The VM belongs to vCenter's inventory (even when this command acts through a host).
    pub fn vcenter_managed(&self) -> bool {
        self.vcenter()
            || matches!(
                &self.route,
                Route::Host {
                    vcenter_down: Some(_),
                    ..
                }
            )
    }

    /// The last state read of the VM and its host.
    pub fn last_seen(&self) -> Option<(VmState, Option<HostInfo>)> {
        self.last_seen.lock().ok().and_then(|s| s.clone())
    }

    /// What the other hosts say of the VM; empty when there is nobody to ask.
    pub async fn ask_peers(&self) -> Vec<PeerSeen> {
        match &self.peers {
            Some(probe) => probe().await,
            None => Vec::new(),
        }
    }

    /// Datacenters, hosts, pools and datastores, read once when first needed.
    pub async fn inv(&self) -> Result<&Inventory, OpError> {
        Ok(self.inv.get_or_try_init(|| Inventory::load(self.session)).await?)
    }

    pub fn vcenter(&self) -> bool {
        self.session.is_vcenter()
    }

    pub async fn find(&self) -> Result<FoundVm, OpError> {
        if self.settings.datacenter.is_none()
            && let Some(found) = crate::client::find_vm_anywhere(self.session, &self.settings.vm).await
        {
            return Ok(found?);
        }
        Ok(crate::client::find_vm(
            self.session,
            self.inv().await?,
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
        Ok(self.read(vm).await?.0)
    }

    /// The VM's state and its host, in one request.
    pub async fn read(&self, vm: &Vm<'_>) -> Result<(VmState, Option<HostInfo>), OpError> {
        let (s, h) = vm.read().await?;
        self.log.set_label(&s.name);
        if let Ok(mut last) = self.last_seen.lock() {
            *last = Some((s.clone(), h.clone()));
        }
        Ok((s, h))
    }

    fn selector_key(&self) -> String {
        selector_key(self.settings)
    }

    /// Whether a state read proves the remembered managed object is still the VM the settings name.
    fn still_matches(&self, s: &VmState, path: Option<&str>) -> bool {
        match &self.settings.vm {
            VmSelector::Name(n) => &s.name == n,
            VmSelector::Vmx(_) => path.is_some() && s.vmx.as_deref() == path,
            VmSelector::Uuid(u) => s.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)),
        }
    }

    /// Finds the VM and reads its state: `None` when it is not registered.
    pub async fn observe(&self) -> Result<(FoundVm, Option<VmState>), OpError> {
        let (found, seen) = self.observe_with_host().await?;
        Ok((found, seen.map(|(s, _)| s)))
    }

    /// As [`Ctx::observe`], with the VM's host. Where the session cache remembers the VM, one state
    /// read both checks that memory (same name, .vmx or uuid, and a datacenter given is not checked
    /// again: the key holds it) and is the read the command needs; otherwise it searches, and remembers.
    /// An entry that looks stale (its host lost, or it is not connected) is checked against the other
    /// entries of the same files, and the one that is the VM is used (see [`entries::choose`]).
    pub async fn observe_with_host(&self) -> Result<(FoundVm, Option<(VmState, Option<HostInfo>)>), OpError> {
        let key = self.selector_key();
        if let Some((moref, path)) = self.session.remembered_vm(&key) {
            match self.read(&self.vm(&moref)).await {
                Ok(seen)
                    if self.still_matches(&seen.0, path.as_deref())
                        && !self.looks_stale(&seen.0)
                        && !self.recheck_twins =>
                {
                    let found = FoundVm {
                        vm: Some(moref),
                        vmx: path,
                        others: Vec::new(),
                    };
                    return Ok((found, Some(seen)));
                }
                Ok(_) => tracing::debug!(
                    "{moref} is no longer {}, or looks stale: searching again",
                    self.settings.vm
                ),
                Err(OpError::Vim(e)) if e.is_object_gone() => {
                    tracing::debug!("{moref} is gone: searching again")
                }
                Err(e) => return Err(e),
            }
        }
        let mut found = self.find().await?;
        if found.vm.is_none() && found.vmx.is_none() {
            found.vmx = self.remembered_vmx.clone();
        }
        let seen = match found.vm.clone() {
            Some(m) => {
                let first = self.read(&self.vm(&m)).await?;
                Some(self.pick_entry(&mut found, first).await?)
            }
            None => None,
        };
        let remember = found.vm.as_ref().map(|m| (m, found.vmx.as_deref()));
        self.session.remember_vm(&key, remember).await;
        Ok((found, seen))
    }

    /// Through vCenter, an entry not connected, or on a host that is not: there may be another entry of
    /// the same files (registered through a host while vCenter was away).
    fn looks_stale(&self, s: &VmState) -> bool {
        self.route == Route::Server
            && self.vcenter()
            && (s.connection_state != crate::vim::VmConnectionState::Connected
                || s.host_connection_state
                    .as_ref()
                    .is_some_and(|c| *c != crate::vim::HostConnectionState::Connected))
    }

    /// With several entries (same name, or a stale-looking entry with twins of the same files), reads
    /// them all and keeps the one that is the VM; refuses a name that different VMs share.
    async fn pick_entry(
        &self,
        found: &mut FoundVm,
        first: (VmState, Option<HostInfo>),
    ) -> Result<(VmState, Option<HostInfo>), OpError> {
        let mut candidates = std::mem::take(&mut found.others);
        if (self.looks_stale(&first.0) || self.recheck_twins)
            && let Some(vmx) = &first.0.vmx
        {
            for m in crate::client::inventory::entries_of_files(self.session, vmx).await? {
                if m != first.0.moref && !candidates.contains(&m) {
                    candidates.push(m);
                }
            }
        }
        if candidates.is_empty() {
            return Ok(first);
        }
        let mut entries = vec![first];
        for m in &candidates {
            match self.vm(m).read().await {
                Ok(seen) => entries.push(seen),
                Err(e) if e.is_object_gone() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let VmSelector::Name(name) = &self.settings.vm
            && entries.iter().any(|(s, _)| s.vmx != entries[0].0.vmx)
        {
            let all: Vec<MoRef> = entries.iter().map(|(s, _)| s.moref.clone()).collect();
            return Err(crate::client::inventory::ambiguous(name, &all).into());
        }
        let states: Vec<VmState> = entries.iter().map(|(s, _)| s.clone()).collect();
        let choice = entries::choose(&states, self.settings.host.as_deref());
        let primary = entries.swap_remove(choice.primary);
        let removable: Vec<MoRef> = choice.removable.iter().map(|&i| states[i].moref.clone()).collect();
        self.log.warn(format!(
            "{} inventory entries for {}: using {} on {}",
            states.len(),
            primary.0.vmx.as_deref().unwrap_or(&primary.0.name),
            primary.0.moref,
            primary.0.host_name.as_deref().unwrap_or("no host")
        ));
        if let Ok(mut d) = self.duplicates.lock() {
            *d = states.into_iter().filter(|s| s.moref != primary.0.moref).collect();
        }
        if let Ok(mut r) = self.removable.lock() {
            *r = removable;
        }
        if let Ok(mut last) = self.last_seen.lock() {
            *last = Some(primary.clone());
        }
        self.log.set_label(&primary.0.name);
        found.vm = Some(primary.0.moref.clone());
        Ok(primary)
    }

    /// The VM's other inventory entries seen by the last search (for `status`).
    pub fn duplicates(&self) -> Vec<VmState> {
        self.duplicates.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Unregisters the stale entries [`entries::choose`] found safe to remove. Best effort: a failure is
    /// logged, and leaves only an inventory entry behind.
    pub async fn remove_stale_entries(&self) {
        let stale = self.removable.lock().map(|r| r.clone()).unwrap_or_default();
        for m in stale {
            match self.vm(&m).unregister().await {
                Ok(()) => self
                    .log
                    .info(format!("unregistered the stale inventory entry {m} of the same files")),
                Err(e) => self.log.warn(format!("could not unregister the stale entry {m}: {e}")),
            }
        }
    }

    /// The host this node stands for: `--host`, required with vCenter; the connected host on ESX-direct.
    /// `seen` is a host already read (the VM's): when it is the one named, no inventory is read.
    pub async fn node_host(&self, seen: Option<&HostInfo>) -> Result<HostInfo, OpError> {
        // Through the host itself, the connected host is this node's, whatever name it gives itself (an
        // ESXi calls itself by its own host name, vCenter by the name it was added as).
        if let Route::Host { .. } = &self.route {
            if let Some(h) = seen {
                return Ok(h.clone());
            }
            let inv = self.inv().await?;
            return match inv.hosts.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(OpError::HostAmbiguous),
            };
        }
        match &self.settings.host {
            Some(name) => {
                if let Some(h) = seen.filter(|h| h.name.eq_ignore_ascii_case(name)) {
                    return Ok(h.clone());
                }
                self.host_named(name, "--host").await
            }
            None if self.vcenter() => Err(OpError::HostRequired),
            None => {
                let inv = self.inv().await?;
                match inv.hosts.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => Err(OpError::HostAmbiguous),
                }
            }
        }
    }

    /// Refuses a missing `--host` with vCenter before any lookup.
    pub fn require_host(&self) -> Result<(), OpError> {
        if self.settings.host.is_none() && self.vcenter() && self.route == Route::Server {
            return Err(OpError::HostRequired);
        }
        Ok(())
    }

    pub async fn host_named(&self, name: &str, flag: &'static str) -> Result<HostInfo, OpError> {
        let inv = self.inv().await?;
        inv.host_by_name(name).cloned().ok_or_else(|| OpError::UnknownHost {
            name: name.to_string(),
            known: inv.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
            flag,
        })
    }

    /// The root resource pool of the host's cluster or standalone compute resource.
    pub async fn pool_of(&self, host: &HostInfo) -> Result<MoRef, OpError> {
        self.inv()
            .await?
            .pool_for_host(&host.moref)
            .cloned()
            .ok_or_else(|| OpError::HostPlacement {
                what: "resource pool",
                host: host.name.clone(),
            })
    }

    pub async fn datacenter_of(&self, host: &HostInfo) -> Result<&DatacenterInfo, OpError> {
        self.inv()
            .await?
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

impl Answer {
    /// The answer `choice` to `q`.
    pub fn choosing(q: &QuestionInfo, choice: &crate::vim::QuestionChoice) -> Answer {
        Answer {
            question_id: q.id.clone(),
            choice_key: choice.key.clone(),
            choice_text: choice.summary.replace('_', ""),
            question: q.text.lines().next().unwrap_or("").to_string(),
        }
    }
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
            Some(c) => Ok(Answer::choosing(q, c)),
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

/// The VM's power-ons in flight; a server that refuses the read (a fault, not a lost connection) is logged
/// and treated as having none, as stop did before it looked.
pub async fn power_ons_in_flight<'s>(ctx: &Ctx<'s>, vm: &Vm<'s>) -> Result<Vec<Task<'s>>, OpError> {
    match vm.power_ons_in_flight().await {
        Ok(tasks) => Ok(tasks),
        Err(e) if e.is_fault() => {
            ctx.log.warn(format!(
                "could not list the VM's recent tasks ({e}): a power-on in flight would go unseen"
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits for each power-on in flight to end, however it ends (cancelled, refused, done): the caller reads
/// what it left afterwards. Stop, start and the fence's off share it.
pub async fn wait_out_power_ons(log: &StepLog, tasks: &[Task<'_>], limit: Duration) -> Result<(), OpError> {
    for task in tasks {
        log.info(format!(
            "a power-on is in flight ({}): waiting for it to end",
            task.moref().value
        ));
        task.wait_ended(limit).await?;
    }
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
        super::fixtures::moved_or_copied(msg)
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
