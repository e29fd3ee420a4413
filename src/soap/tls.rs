//! TLS policy: verified against the system roots (plus `--ca-file`), pinned by SHA-256 thumbprint, or off.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Verify the chain and the host name against the system roots and any extra PEM roots.
    Verify { extra_roots_pem: Vec<Vec<u8>> },
    /// Accept exactly the server certificate with this SHA-256 digest (self-signed allowed).
    Pinned { sha256: [u8; 32] },
    /// No verification at all. The caller warns on every run.
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the CA file holds no PEM certificate: {0}")]
    NoCertificates(String),
    #[error("the CA file could not be read as PEM: {0}")]
    BadPem(String),
    #[error("no trusted root certificates: the system store is empty and no --ca-file was given")]
    NoRoots,
}

/// Parses a SHA-256 thumbprint: 64 hex digits, colons (or spaces) optional, any case.
pub fn parse_thumbprint(s: &str) -> Result<[u8; 32], String> {
    let hexstr: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    if hexstr.len() == 40 {
        return Err("this looks like a SHA-1 thumbprint (40 hex digits); give the SHA-256 one (64 hex digits)".into());
    }
    let bytes = hex::decode(&hexstr).map_err(|_| format!("'{s}' is not hexadecimal"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "a SHA-256 thumbprint has 32 bytes (64 hex digits), this one has {}",
            b.len()
        )
    })
}

/// Formats a digest the way vCenter shows it: uppercase hex pairs joined by colons.
pub fn format_thumbprint(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn client_config(policy: &TlsPolicy) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match policy {
        TlsPolicy::Verify { extra_roots_pem } => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A broken system certificate must not take the others down with it.
                let _ = roots.add(cert);
            }
            for pem in extra_roots_pem {
                let mut found = 0;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| TlsSetupError::BadPem(e.to_string()))?;
                    roots.add(cert).map_err(|e| TlsSetupError::BadPem(e.to_string()))?;
                    found += 1;
                }
                if found == 0 {
                    return Err(TlsSetupError::NoCertificates("no BEGIN CERTIFICATE block".into()));
                }
            }
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsPolicy::Pinned { sha256 } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                sha256: *sha256,
                provider: provider(),
            }))
            .with_no_client_auth(),
        TlsPolicy::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerifier { provider: provider() }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts the one certificate whose digest was pinned. The handshake signature is still checked, so a
/// peer must hold the pinned certificate's private key.
#[derive(Debug)]
struct PinnedVerifier {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if digest == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate thumbprint {} does not match the pinned one",
                format_thumbprint(&digest)
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct NoVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_forms() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_thumbprint(&hex64).unwrap(), [0xab; 32]);
        assert_eq!(parse_thumbprint(&colons).unwrap(), [0xab; 32]);
        assert!(parse_thumbprint(&"ab".repeat(20)).unwrap_err().contains("SHA-1"));
        assert!(parse_thumbprint("zz").is_err());
        assert!(parse_thumbprint(&"ab".repeat(31)).unwrap_err().contains("31"));
        assert_eq!(format_thumbprint(&[0xab, 0x01]), "AB:01");
    }
}
