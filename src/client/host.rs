//! One HostSystem: its state as host-shutdown / host-reboot need it, the power tasks, and what vCenter
//! reports that lets a node reach the host directly (its certificate and lockdown mode).

use sha2::{Digest, Sha256};

use crate::soap::Element;

use crate::vim::methods;
use crate::vim::{HostConnectionState, MoRef};

use super::{Session, Task, VimError};

/// What a host power command checks first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostState {
    pub name: String,
    pub connection_state: HostConnectionState,
    pub in_maintenance_mode: bool,
    /// `runtime.powerState`: poweredOn, poweredOff, standBy or unknown.
    pub power_state: String,
}

/// A HostSystem handle, as govmomi's `object.HostSystem`.
pub struct Host<'s> {
    session: &'s Session,
    moref: MoRef,
}

impl<'s> Host<'s> {
    pub fn new(session: &'s Session, moref: MoRef) -> Host<'s> {
        Host { session, moref }
    }

    pub fn moref(&self) -> &MoRef {
        &self.moref
    }

    /// Reads name, connection state, maintenance mode and power state in one request.
    pub async fn state(&self) -> Result<HostState, VimError> {
        let oc = self
            .session
            .properties(
                &self.moref,
                &[
                    "name",
                    "runtime.connectionState",
                    "runtime.inMaintenanceMode",
                    "runtime.powerState",
                ],
            )
            .await?;
        Ok(HostState {
            name: oc.text("name").unwrap_or_default().to_string(),
            connection_state: HostConnectionState::parse(oc.text("runtime.connectionState").unwrap_or("connected")),
            in_maintenance_mode: oc.text("runtime.inMaintenanceMode").map(str::trim) == Some("true"),
            power_state: oc.text("runtime.powerState").unwrap_or("unknown").trim().to_string(),
        })
    }

    /// ShutdownHost_Task. Without `force` the server refuses a host not in maintenance mode.
    pub async fn shutdown(&self, force: bool) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::shutdown_host_task(c, &self.moref, force).await)
            .await?;
        Ok(Task::new(self.session, t, "ShutdownHost_Task"))
    }

    /// RebootHost_Task; `force` as for [`Host::shutdown`].
    pub async fn reboot(&self, force: bool) -> Result<Task<'s>, VimError> {
        let t = self
            .session
            .call(async |c| methods::reboot_host_task(c, &self.moref, force).await)
            .await?;
        Ok(Task::new(self.session, t, "RebootHost_Task"))
    }
}

/// How a host can be trusted and whether it takes direct logins, as vCenter reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTrust {
    /// SHA-256 of the DER certificate the host presents.
    pub cert_sha256: Option<[u8; 32]>,
    /// `lockdownDisabled`, `lockdownNormal` or `lockdownStrict`; `None` before vSphere 6.0.
    pub lockdown: Option<String>,
}

impl Host<'_> {
    /// What vCenter reports of the host for reaching it directly: `config.certificate` and
    /// `config.lockdownMode` (vSphere 6.0+; empty, not an error, where the server knows neither).
    pub async fn trust(&self) -> Result<HostTrust, VimError> {
        let oc = self
            .session
            .properties(&self.moref, &["config.certificate", "config.lockdownMode"])
            .await?;
        Ok(HostTrust {
            cert_sha256: oc.prop("config.certificate").and_then(certificate_sha256),
            lockdown: oc
                .text("config.lockdownMode")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        })
    }
}

/// The SHA-256 of the certificate in a `config.certificate` value. The WSDL types it `xsd:byte[]`, which
/// vCenter sends as an `ArrayOfByte` (one signed `<byte>` per byte of the PEM); govmomi-based servers send
/// the bytes as text. Either way the bytes are a PEM (or, defensively, a DER) certificate.
pub fn certificate_sha256(val: &Element) -> Option<[u8; 32]> {
    let bytes: Vec<u8> = if val.children.is_empty() {
        val.text.trim().as_bytes().to_vec()
    } else {
        val.children
            .iter()
            .map(|b| b.text.trim().parse::<i16>().ok().map(|v| v as u8))
            .collect::<Option<Vec<u8>>>()?
    };
    let der = if bytes.starts_with(b"-----BEGIN") {
        let mut reader = &bytes[..];
        rustls_pemfile::certs(&mut reader).next()?.ok()?.to_vec()
    } else if bytes.first() == Some(&0x30) {
        bytes
    } else {
        return None;
    };
    Some(Sha256::digest(&der).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificate_as_text_or_array_of_signed_bytes_gives_the_same_digest() {
        let want: [u8; 32] = Sha256::digest([0x30u8, 0x03, 0x02, 0x01, 0x01]).into();
        let text = crate::soap::xml::parse(&format!("<val>{PEM}</val>"), 8).unwrap();
        assert_eq!(certificate_sha256(&text), Some(want));
        let items: String = PEM.bytes().map(|b| format!("<byte>{}</byte>", b as i8)).collect();
        let array = crate::soap::xml::parse(&format!("<val>{items}</val>"), 8).unwrap();
        assert_eq!(certificate_sha256(&array), Some(want));
        let junk = crate::soap::xml::parse("<val>not a certificate</val>", 8).unwrap();
        assert_eq!(certificate_sha256(&junk), None);
    }
}
