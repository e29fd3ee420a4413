//! What vCenter reports about its hosts that lets a node reach them directly: the certificate each host
//! presents (`config.certificate`, vSphere 6.0+) and its lockdown mode (`config.lockdownMode`).

use sha2::{Digest, Sha256};

use super::{Session, VimError};
use crate::soap::Element;
use crate::vim::MoRef;

/// How a host can be trusted and whether it takes direct logins, as vCenter reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTrust {
    /// SHA-256 of the DER certificate the host presents.
    pub cert_sha256: Option<[u8; 32]>,
    /// `lockdownDisabled`, `lockdownNormal` or `lockdownStrict`; `None` before vSphere 6.0.
    pub lockdown: Option<String>,
}

/// Reads `config.certificate` and `config.lockdownMode` of `host`. A server that knows neither (before
/// 6.0) answers with an empty trust, not an error.
pub async fn host_trust(session: &Session, host: &MoRef) -> Result<HostTrust, VimError> {
    let oc = session
        .properties(host, &["config.certificate", "config.lockdownMode"])
        .await?;
    Ok(HostTrust {
        cert_sha256: oc.prop("config.certificate").and_then(certificate_sha256),
        lockdown: oc
            .text("config.lockdownMode")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    })
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
