//! Hand-written vim25 data types, decoded from the response tree.
//!
//! Decoders are lenient where servers differ (missing optional elements, unknown extra elements) and strict
//! where a missing value would make vmha act on a guess (a ManagedObjectReference without its type).

use serde::{Deserialize, Serialize};

use crate::soap::{Element, Fault};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct DecodeError {
    pub what: String,
    pub why: String,
}

pub fn decode_err(what: &str, why: impl Into<String>) -> DecodeError {
    DecodeError {
        what: what.to_string(),
        why: why.into(),
    }
}

fn req_text<'a>(el: &'a Element, name: &str) -> Result<&'a str, DecodeError> {
    el.child_text(name)
        .ok_or_else(|| decode_err(&el.name, format!("missing <{name}>")))
}

fn opt_text(el: &Element, name: &str) -> Option<String> {
    el.child_text(name).map(str::to_string)
}

/// A managed object reference: its `type` attribute (never `xsi:type`) and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MoRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl MoRef {
    pub fn new(kind: &str, value: &str) -> MoRef {
        MoRef {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }

    pub fn from_xml(el: &Element) -> Result<MoRef, DecodeError> {
        let kind = el
            .type_attr
            .clone()
            .ok_or_else(|| decode_err(&el.name, "managed object reference without a type attribute"))?;
        Ok(MoRef {
            kind,
            value: el.text.trim().to_string(),
        })
    }
}

impl std::fmt::Display for MoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

fn opt_moref(el: &Element, name: &str) -> Result<Option<MoRef>, DecodeError> {
    el.child(name).map(MoRef::from_xml).transpose()
}

fn req_moref(el: &Element, name: &str) -> Result<MoRef, DecodeError> {
    opt_moref(el, name)?.ok_or_else(|| decode_err(&el.name, format!("missing <{name}>")))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AboutInfo {
    pub name: String,
    pub full_name: String,
    pub vendor: String,
    pub version: String,
    pub build: String,
    pub api_type: String,
    pub api_version: String,
    pub instance_uuid: Option<String>,
}

impl AboutInfo {
    pub fn from_xml(el: &Element) -> Result<AboutInfo, DecodeError> {
        Ok(AboutInfo {
            name: req_text(el, "name")?.to_string(),
            full_name: req_text(el, "fullName")?.to_string(),
            vendor: opt_text(el, "vendor").unwrap_or_default(),
            version: req_text(el, "version")?.to_string(),
            build: opt_text(el, "build").unwrap_or_default(),
            api_type: req_text(el, "apiType")?.to_string(),
            api_version: req_text(el, "apiVersion")?.to_string(),
            // ESX 4.x predates instanceUuid.
            instance_uuid: opt_text(el, "instanceUuid"),
        })
    }

    pub fn is_vcenter(&self) -> bool {
        self.api_type == "VirtualCenter"
    }
}

/// Serialisable so that the session cache can keep it beside the session (as govc's persisted session does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceContent {
    pub root_folder: MoRef,
    pub property_collector: MoRef,
    pub about: AboutInfo,
    pub session_manager: Option<MoRef>,
    pub search_index: Option<MoRef>,
    /// Absent from session files older vmha versions wrote; `check --privileges` (never cached) reads it.
    #[serde(default)]
    pub authorization_manager: Option<MoRef>,
}

impl ServiceContent {
    pub fn from_xml(el: &Element) -> Result<ServiceContent, DecodeError> {
        Ok(ServiceContent {
            root_folder: req_moref(el, "rootFolder")?,
            property_collector: req_moref(el, "propertyCollector")?,
            about: AboutInfo::from_xml(
                el.child("about")
                    .ok_or_else(|| decode_err("ServiceContent", "missing <about>"))?,
            )?,
            session_manager: opt_moref(el, "sessionManager")?,
            search_index: opt_moref(el, "searchIndex")?,
            authorization_manager: opt_moref(el, "authorizationManager")?,
        })
    }
}

/// The session Login returns. Its `key` is a secret and is not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSession {
    pub user_name: String,
    pub full_name: String,
    pub login_time: String,
}

impl UserSession {
    pub fn from_xml(el: &Element) -> Result<UserSession, DecodeError> {
        Ok(UserSession {
            user_name: req_text(el, "userName")?.to_string(),
            full_name: opt_text(el, "fullName").unwrap_or_default(),
            login_time: opt_text(el, "loginTime").unwrap_or_default(),
        })
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* Other(String) }
        impl $name {
            pub fn parse(s: &str) -> $name {
                match s.trim() { $($wire => $name::$variant,)* other => $name::Other(other.to_string()) }
            }
            pub fn as_str(&self) -> &str {
                match self { $($name::$variant => $wire,)* $name::Other(s) => s }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
    };
}

wire_enum!(
    /// VirtualMachinePowerState.
    PowerState { PoweredOn = "poweredOn", PoweredOff = "poweredOff", Suspended = "suspended" }
);
wire_enum!(
    /// VirtualMachineConnectionState.
    VmConnectionState { Connected = "connected", Disconnected = "disconnected", Orphaned = "orphaned", Inaccessible = "inaccessible", Invalid = "invalid" }
);
wire_enum!(
    /// HostSystemConnectionState.
    HostConnectionState { Connected = "connected", NotResponding = "notResponding", Disconnected = "disconnected" }
);
wire_enum!(
    /// ManagedEntityStatus, as guestHeartbeatStatus reports it.
    HeartbeatStatus { Gray = "gray", Green = "green", Yellow = "yellow", Red = "red" }
);
wire_enum!(
    /// TaskInfoState.
    TaskState { Queued = "queued", Running = "running", Success = "success", Error = "error" }
);

/// The label id of "I moved it" in the `msg.uuid.altered` question: keeps the VM's identity (BIOS UUID,
/// MAC addresses), as the old scripts did. "I copied it" would give the VM a new UUID.
pub const MOVED_LABEL: &str = "button.uuid.movedTheVM";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuestionChoice {
    pub key: String,
    pub label: String,
    pub summary: String,
}

/// VirtualMachineQuestionInfo: a pending question that blocks the VM until answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuestionInfo {
    pub id: String,
    pub text: String,
    pub choices: Vec<QuestionChoice>,
    pub default_index: Option<usize>,
    /// `message[].id`, such as `msg.uuid.altered`.
    pub message_ids: Vec<String>,
}

impl QuestionInfo {
    pub fn from_xml(el: &Element) -> Result<QuestionInfo, DecodeError> {
        let choice = el.child("choice");
        let choices = choice
            .map(|c| {
                c.children_named("choiceInfo")
                    .map(|ci| QuestionChoice {
                        key: ci.child_text("key").unwrap_or_default().to_string(),
                        label: ci.child_text("label").unwrap_or_default().to_string(),
                        summary: ci.child_text("summary").unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(QuestionInfo {
            id: req_text(el, "id")?.to_string(),
            text: opt_text(el, "text").unwrap_or_default(),
            choices,
            default_index: choice
                .and_then(|c| c.child_text("defaultIndex"))
                .and_then(|s| s.trim().parse().ok()),
            message_ids: el.children_named("message").filter_map(|m| opt_text(m, "id")).collect(),
        })
    }

    /// The "moved or copied" question (`msg.uuid.altered`), which start answers "I moved it".
    pub fn is_uuid_altered(&self) -> bool {
        self.message_ids.iter().any(|m| m == "msg.uuid.altered")
            || self.choices.iter().any(|c| c.label == "button.uuid.movedTheVM")
    }

    /// The "I moved it" choice: by its label id, else (hostd builds that send display text as the label) by
    /// a label or summary that says "moved".
    pub fn moved_choice(&self) -> Option<&QuestionChoice> {
        let says_moved = |s: &str| s.replace('_', "").to_lowercase().contains("moved");
        self.choice_by_label(MOVED_LABEL).or_else(|| {
            self.choices
                .iter()
                .find(|c| says_moved(&c.label) || says_moved(&c.summary))
        })
    }

    /// The choice that cancels the operation waiting on the question (`button.uuid.cancel`, `button.cancel`,
    /// `button.abort`, or one whose text says "Cancel"): answering it fails a pending power-on.
    pub fn cancel_choice(&self) -> Option<&QuestionChoice> {
        let norm = |s: &str| s.replace('_', "").trim().to_lowercase();
        self.choices.iter().find(|c| {
            let label = c.label.to_lowercase();
            label.ends_with(".cancel") || label.ends_with(".abort") || norm(&c.summary) == "cancel"
        })
    }

    /// The choice key whose label id is `label` (`button.uuid.movedTheVM`), never by position.
    pub fn choice_by_label(&self, label: &str) -> Option<&QuestionChoice> {
        self.choices.iter().find(|c| c.label == label)
    }
}

#[derive(Clone, Debug)]
pub struct TaskInfo {
    pub key: String,
    pub state: TaskState,
    pub error: Option<Fault>,
    pub result: Option<Element>,
}

impl TaskInfo {
    pub fn from_xml(el: &Element) -> Result<TaskInfo, DecodeError> {
        Ok(TaskInfo {
            key: opt_text(el, "key").unwrap_or_default(),
            state: TaskState::parse(req_text(el, "state")?),
            error: el.child("error").map(Fault::from_localized),
            result: el.child("result").cloned(),
        })
    }
}

/// One object's properties from RetrievePropertiesEx.
#[derive(Clone, Debug)]
pub struct ObjectContent {
    pub obj: MoRef,
    pub props: Vec<(String, Element)>,
    /// Properties the server could not read (e.g. `config` of an inaccessible VM).
    pub missing: Vec<(String, Fault)>,
}

impl ObjectContent {
    pub fn from_xml(el: &Element) -> Result<ObjectContent, DecodeError> {
        let obj = req_moref(el, "obj")?;
        let mut props = Vec::new();
        for p in el.children_named("propSet") {
            let name = req_text(p, "name")?.to_string();
            // A property present without <val> is unset; treat it as absent.
            if let Some(v) = p.child("val") {
                props.push((name, v.clone()));
            }
        }
        let missing = el
            .children_named("missingSet")
            .map(|m| {
                let path = m.child_text("path").unwrap_or_default().to_string();
                let fault = m
                    .child("fault")
                    .map(Fault::from_localized)
                    .unwrap_or_else(|| Fault::from_localized(m));
                (path, fault)
            })
            .collect();
        Ok(ObjectContent { obj, props, missing })
    }

    pub fn prop(&self, name: &str) -> Option<&Element> {
        self.props.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.prop(name).map(|e| e.text.as_str())
    }
}

/// EntityPrivilege (HasPrivilegeOnEntities' answer): which of the asked privileges the session's user holds
/// on one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityPrivilege {
    pub entity: MoRef,
    /// (privId, isGranted), as the server listed them.
    pub granted: Vec<(String, bool)>,
}

impl EntityPrivilege {
    pub fn from_xml(el: &Element) -> Result<EntityPrivilege, DecodeError> {
        let entity = req_moref(el, "entity")?;
        let granted = el
            .children_named("privAvailability")
            .map(|a| {
                let id = req_text(a, "privId")?.trim().to_string();
                let is = req_text(a, "isGranted")?.trim();
                Ok((id, matches!(is, "true" | "1")))
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(EntityPrivilege { entity, granted })
    }
}

/// RetrieveResult: objects plus an optional continuation token.
#[derive(Clone, Debug, Default)]
pub struct RetrieveResult {
    pub objects: Vec<ObjectContent>,
    pub token: Option<String>,
}

impl RetrieveResult {
    pub fn from_xml(el: &Element) -> Result<RetrieveResult, DecodeError> {
        Ok(RetrieveResult {
            objects: el
                .children_named("objects")
                .map(ObjectContent::from_xml)
                .collect::<Result<_, _>>()?,
            token: opt_text(el, "token"),
        })
    }
}

/// One property change in an update.
#[derive(Clone, Debug)]
pub struct PropertyChange {
    pub name: String,
    pub op: String,
    pub val: Option<Element>,
}

#[derive(Clone, Debug)]
pub struct ObjectUpdate {
    /// enter, modify or leave.
    pub kind: String,
    pub obj: MoRef,
    pub changes: Vec<PropertyChange>,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateSet {
    pub version: String,
    pub truncated: bool,
    pub objects: Vec<ObjectUpdate>,
}

impl UpdateSet {
    pub fn from_xml(el: &Element) -> Result<UpdateSet, DecodeError> {
        let mut objects = Vec::new();
        for fs in el.children_named("filterSet") {
            for os in fs.children_named("objectSet") {
                let changes = os
                    .children_named("changeSet")
                    .map(|c| PropertyChange {
                        name: c.child_text("name").unwrap_or_default().to_string(),
                        op: c.child_text("op").unwrap_or_default().to_string(),
                        val: c.child("val").cloned(),
                    })
                    .collect();
                objects.push(ObjectUpdate {
                    kind: req_text(os, "kind")?.to_string(),
                    obj: req_moref(os, "obj")?,
                    changes,
                });
            }
        }
        Ok(UpdateSet {
            version: req_text(el, "version")?.to_string(),
            truncated: el.child_text("truncated").map(|t| t.trim() == "true").unwrap_or(false),
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::xml::parse;

    #[test]
    fn question_choice_by_label_not_position() {
        let doc = r#"<q><id>_vmx1</id><text>moved?</text><choice><choiceInfo><key>0</key><label>button.uuid.cancel</label><summary>Cancel</summary></choiceInfo>
          <choiceInfo><key>2</key><label>button.uuid.copiedTheVM</label><summary>I _copied it</summary></choiceInfo>
          <choiceInfo><key>1</key><label>button.uuid.movedTheVM</label><summary>I _moved it</summary></choiceInfo><defaultIndex>1</defaultIndex></choice>
          <message><id>msg.uuid.altered</id><text>t</text></message></q>"#;
        let q = QuestionInfo::from_xml(&parse(doc, 16).unwrap()).unwrap();
        assert!(q.is_uuid_altered());
        assert_eq!(q.choice_by_label("button.uuid.movedTheVM").unwrap().key, "1");
        assert_eq!(q.default_index, Some(1));
        assert_eq!(q.moved_choice().unwrap().key, "1");
        let mut textual = q.clone();
        for c in &mut textual.choices {
            c.label = c.summary.clone();
        }
        assert_eq!(textual.moved_choice().unwrap().key, "1");
        assert_eq!(q.cancel_choice().unwrap().key, "0");
        assert_eq!(textual.cancel_choice().unwrap().key, "0");
    }

    #[test]
    fn a_question_without_a_cancel_choice_has_none() {
        let doc = r#"<q><id>_vmx2</id><text>t</text><choice><choiceInfo><key>0</key><label>button.ok</label><summary>OK</summary></choiceInfo></choice></q>"#;
        let q = QuestionInfo::from_xml(&parse(doc, 16).unwrap()).unwrap();
        assert!(q.cancel_choice().is_none());
    }

    #[test]
    fn moref_requires_type_attribute() {
        let doc = r#"<o xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><obj xsi:type="ManagedObjectReference">vm-1</obj></o>"#;
        let root = parse(doc, 16).unwrap();
        assert!(MoRef::from_xml(root.child("obj").unwrap()).is_err());
    }

    #[test]
    fn enums_keep_unknown_values() {
        assert_eq!(PowerState::parse("poweredOn"), PowerState::PoweredOn);
        assert_eq!(PowerState::parse("limbo").as_str(), "limbo");
        assert_eq!(HeartbeatStatus::parse("red"), HeartbeatStatus::Red);
    }
}
