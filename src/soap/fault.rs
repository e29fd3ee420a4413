//! SOAP faults and `LocalizedMethodFault`s, decoded into one typed error.

use super::xml::Element;

/// The fault kinds vmha acts on. Anything else keeps its vim25 type name in `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    InvalidLogin,
    NotAuthenticated,
    InvalidPowerState,
    InvalidState,
    TaskInProgress,
    FileNotFound,
    FileLocked,
    AlreadyExists,
    ManagedObjectNotFound,
    NotFound,
    ToolsUnavailable,
    MethodNotFound,
    NotImplemented,
    NotSupported,
    HostNotConnected,
    InvalidArgument,
    RequestCanceled,
    Other(String),
}

impl FaultKind {
    pub fn from_type_name(name: &str) -> FaultKind {
        match name {
            "InvalidLogin" => FaultKind::InvalidLogin,
            "NotAuthenticated" => FaultKind::NotAuthenticated,
            "InvalidPowerState" => FaultKind::InvalidPowerState,
            "InvalidState" => FaultKind::InvalidState,
            "TaskInProgress" => FaultKind::TaskInProgress,
            "FileNotFound" => FaultKind::FileNotFound,
            "FileLocked" => FaultKind::FileLocked,
            "AlreadyExists" | "DuplicateName" => FaultKind::AlreadyExists,
            "ManagedObjectNotFound" => FaultKind::ManagedObjectNotFound,
            "NotFound" => FaultKind::NotFound,
            "ToolsUnavailable" => FaultKind::ToolsUnavailable,
            "MethodNotFound" => FaultKind::MethodNotFound,
            "NotImplemented" => FaultKind::NotImplemented,
            "NotSupported" => FaultKind::NotSupported,
            "HostNotConnected" => FaultKind::HostNotConnected,
            "InvalidArgument" => FaultKind::InvalidArgument,
            "RequestCanceled" => FaultKind::RequestCanceled,
            other => FaultKind::Other(other.to_string()),
        }
    }
}

/// A vim25 fault: its type name as the server sent it, and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The xsi:type name (`InvalidLogin`, `GenericVmConfigFault`, ...), or the SOAP faultcode when the
    /// server sent no detail.
    pub type_name: String,
    pub message: String,
    /// `reason` of a GenericVmConfigFault, `name` of ManagedObjectNotFound and the like, when present.
    pub detail_text: Option<String>,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Servers send multi-line messages; a log line must stay one line.
        let message = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        if message.is_empty() {
            write!(f, "{}", self.type_name)
        } else {
            write!(f, "{}: {}", self.type_name, message)
        }
    }
}

impl std::error::Error for Fault {}

impl Fault {
    fn from_detail(type_name: &str, message: String, detail: Option<&Element>) -> Fault {
        let detail_text = detail.and_then(|d| {
            ["reason", "text", "file", "name"]
                .iter()
                .find_map(|k| d.child_text(k).map(str::to_string))
                .filter(|s| !s.is_empty())
        });
        let message = if message.is_empty() {
            // Some faults carry their text in `faultMessage` only.
            detail
                .and_then(|d| d.path(&["faultMessage", "message"]))
                .map(|m| m.text.clone())
                .unwrap_or_default()
        } else {
            message
        };
        Fault {
            kind: FaultKind::from_type_name(type_name),
            type_name: type_name.to_string(),
            message,
            detail_text,
        }
    }

    /// Decodes `<soapenv:Fault>`: faultcode, faultstring, and `detail/<XFault xsi:type="X">`.
    pub fn from_soap_fault(fault: &Element) -> Fault {
        let message = fault.child_text("faultstring").unwrap_or_default().trim().to_string();
        let detail = fault.child("detail").and_then(|d| d.children.first());
        match detail {
            Some(d) => {
                // The element is named `XFault`; its xsi:type names X. Older servers omit xsi:type.
                let name = d
                    .xsi_type
                    .clone()
                    .unwrap_or_else(|| d.name.strip_suffix("Fault").unwrap_or(&d.name).to_string());
                Fault::from_detail(&name, message, Some(d))
            }
            None => {
                let code = fault.child_text("faultcode").unwrap_or("ServerFaultCode");
                Fault::from_detail(code.rsplit(':').next().unwrap_or(code), message, None)
            }
        }
    }

    /// Decodes a `LocalizedMethodFault` (TaskInfo.error, MissingProperty.fault): `fault` + `localizedMessage`.
    pub fn from_localized(lmf: &Element) -> Fault {
        let message = lmf
            .child_text("localizedMessage")
            .unwrap_or_default()
            .trim()
            .to_string();
        match lmf.child("fault") {
            Some(f) => {
                let name = f.xsi_type.clone().unwrap_or_else(|| "MethodFault".to_string());
                Fault::from_detail(&name, message, Some(f))
            }
            None => Fault::from_detail("MethodFault", message, None),
        }
    }

    /// Files held by another host (a running VM, or a lock not yet expired after a host failure).
    /// ESXi reports this as FileLocked, or as a GenericVmConfigFault whose text names the lock.
    pub fn is_file_lock(&self) -> bool {
        if self.kind == FaultKind::FileLocked {
            return true;
        }
        let text = format!("{} {}", self.message, self.detail_text.as_deref().unwrap_or("")).to_lowercase();
        text.contains("lock the file") || text.contains("file is locked") || text.contains("msg.fileio.lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::xml::parse;

    #[test]
    fn decodes_soap_fault_with_detail() {
        let doc = r#"<Fault xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><faultcode>ServerFaultCode</faultcode>
          <faultstring>Cannot complete login due to an incorrect user name or password.</faultstring>
          <detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></Fault>"#;
        let f = Fault::from_soap_fault(&parse(doc, 16).unwrap());
        assert_eq!(f.kind, FaultKind::InvalidLogin);
        assert_eq!(f.type_name, "InvalidLogin");
        assert!(f.message.contains("incorrect user name"));
    }

    #[test]
    fn unknown_fault_keeps_its_name() {
        let doc = r#"<Fault xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><faultcode>ServerFaultCode</faultcode>
          <faultstring>x</faultstring><detail><VmConfigIncompatibleForFaultToleranceFault xsi:type="VmConfigIncompatibleForFaultTolerance"/></detail></Fault>"#;
        let f = Fault::from_soap_fault(&parse(doc, 16).unwrap());
        assert_eq!(f.kind, FaultKind::Other("VmConfigIncompatibleForFaultTolerance".into()));
    }

    #[test]
    fn detail_without_xsi_type_uses_element_name() {
        let doc = r#"<Fault><faultcode>ServerFaultCode</faultcode><faultstring>m</faultstring><detail><NotAuthenticatedFault/></detail></Fault>"#;
        let f = Fault::from_soap_fault(&parse(doc, 16).unwrap());
        assert_eq!(f.kind, FaultKind::NotAuthenticated);
    }

    #[test]
    fn localized_fault_and_lock_detection() {
        let doc = r#"<error xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><fault xsi:type="GenericVmConfigFault"><reason>Failed to lock the file</reason></fault>
            <localizedMessage>Cannot open the disk '/vmfs/volumes/ds/vm/vm.vmdk': Failed to lock the file</localizedMessage></error>"#;
        let f = Fault::from_localized(&parse(doc, 16).unwrap());
        assert_eq!(f.type_name, "GenericVmConfigFault");
        assert!(f.is_file_lock());
        let other = Fault {
            kind: FaultKind::InvalidPowerState,
            type_name: "InvalidPowerState".into(),
            message: "off".into(),
            detail_text: None,
        };
        assert!(!other.is_file_lock());
    }
}
