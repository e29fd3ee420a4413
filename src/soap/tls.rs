//! TLS policy: verified against the system roots (plus `--ca-file`), pinned by SHA-256 thumbprint, or off.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
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

/// The pinned verifier's refusal, carried inside `rustls::Error` as a `CertificateError::Other` so that the
/// transport can tell it apart by downcasting.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server's certificate differs from the pinned one (the server's SHA-256 is {})",
    format_thumbprint(server_sha256)
)]
pub struct PinMismatch {
    /// SHA-256 of the certificate the server presented.
    pub server_sha256: [u8; 32],
}

/// A server certificate whose RSA key is shorter than ring verifies (2048 bits), met without a pin.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has a {bits}-bit RSA key, too weak to verify against a CA")]
pub struct WeakServerKey {
    pub bits: usize,
    /// SHA-256 of the server's certificate, for `--thumbprint`.
    pub server_sha256: [u8; 32],
}

fn certificate_error(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The smallest RSA key ring verifies; shorter ones go through RustCrypto's `rsa` (pinned or `--insecure` only).
const RING_MIN_RSA_BITS: usize = 2048;
/// Shorter keys than this are refused whatever the policy: they are broken.
const WEAKEST_RSA_BITS: usize = 1024;

/// The certificate's RSA public key, when it has one.
fn rsa_key(cert: &CertificateDer<'_>) -> Option<rsa::RsaPublicKey> {
    use rsa::pkcs8::DecodePublicKey;
    use x509_cert::der::{Decode, Encode};
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let spki = &parsed.tbs_certificate.subject_public_key_info;
    // rsaEncryption
    if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
        return None;
    }
    rsa::RsaPublicKey::from_public_key_der(&spki.to_der().ok()?).ok()
}

fn rsa_bits(key: &rsa::RsaPublicKey) -> usize {
    use rsa::traits::PublicKeyParts;
    key.n().bits()
}

/// Verifies a handshake signature made with an RSA key ring refuses as too short.
fn verify_weak_rsa(
    key: &rsa::RsaPublicKey,
    message: &[u8],
    scheme: SignatureScheme,
    sig: &[u8],
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use rsa::sha2::{Digest, Sha256, Sha384, Sha512};
    use rsa::{Pkcs1v15Sign, Pss};
    if rsa_bits(key) < WEAKEST_RSA_BITS {
        return Err(rustls::Error::InvalidCertificate(CertificateError::BadSignature));
    }
    let ok = match scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message), sig),
        SignatureScheme::RSA_PKCS1_SHA384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(message), sig),
        SignatureScheme::RSA_PKCS1_SHA512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(message), sig),
        SignatureScheme::RSA_PSS_SHA256 => key.verify(Pss::new::<Sha256>(), &Sha256::digest(message), sig),
        SignatureScheme::RSA_PSS_SHA384 => key.verify(Pss::new::<Sha384>(), &Sha384::digest(message), sig),
        SignatureScheme::RSA_PSS_SHA512 => key.verify(Pss::new::<Sha512>(), &Sha512::digest(message), sig),
        _ => return Err(rustls::Error::InvalidCertificate(CertificateError::BadSignature)),
    };
    ok.map(|_| HandshakeSignatureValid::assertion())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))
}

/// Handshake signatures: ring for everything it supports, RustCrypto's `rsa` for short RSA keys (which only a
/// pin or `--insecure` lets this far).
fn verify_signature(
    provider: &CryptoProvider,
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if let Some(key) = rsa_key(cert).filter(|k| rsa_bits(k) < RING_MIN_RSA_BITS) {
        // TLS 1.3 allows only PSS with RSA keys.
        if tls13
            && !matches!(
                dss.scheme,
                SignatureScheme::RSA_PSS_SHA256 | SignatureScheme::RSA_PSS_SHA384 | SignatureScheme::RSA_PSS_SHA512
            )
        {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        return verify_weak_rsa(&key, message, dss.scheme, dss.signature());
    }
    let algs = &provider.signature_verification_algorithms;
    if tls13 {
        verify_tls13_signature(message, cert, dss, algs)
    } else {
        verify_tls12_signature(message, cert, dss, algs)
    }
}

pub fn client_config(policy: &TlsPolicy) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let verifier: Arc<dyn ServerCertVerifier> = match policy {
        TlsPolicy::Verify { extra_roots_pem } => {
            let mut roots = RootCertStore::empty();
            // A CA file replaces the system store, as curl's --cacert, govmomi's SetRootCAs and Python's
            // ssl.create_default_context(cafile=...) do: the operator named whom to trust (and reading
            // the system's hundred-odd certificates is most of a warm call's time).
            if extra_roots_pem.is_empty() {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A broken system certificate must not take the others down with it.
                    let _ = roots.add(cert);
                }
            }
            let mut own = Vec::new();
            for pem in extra_roots_pem {
                let mut found = 0;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| TlsSetupError::BadPem(e.to_string()))?;
                    roots
                        .add(cert.clone())
                        .map_err(|e| TlsSetupError::BadPem(e.to_string()))?;
                    own.push(cert);
                    found += 1;
                }
                if found == 0 {
                    return Err(TlsSetupError::NoCertificates("no BEGIN CERTIFICATE block".into()));
                }
            }
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsSetupError::BadPem(e.to_string()))?;
            Arc::new(CaVerifier {
                webpki,
                own_certs: own,
                provider: provider(),
            })
        }
        TlsPolicy::Pinned { sha256 } => Arc::new(PinnedVerifier {
            sha256: *sha256,
            provider: provider(),
        }),
        TlsPolicy::Insecure => Arc::new(NoVerifier { provider: provider() }),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Checks that `cert` is valid at `now` and names `server_name`: what webpki checks of an end entity, for a
/// self-signed certificate the operator trusted directly through `--ca-file`.
fn check_direct_trust(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    use x509_cert::der::Decode;
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
    let validity = &parsed.tbs_certificate.validity;
    let not_before = UnixTime::since_unix_epoch(validity.not_before.to_unix_duration());
    let not_after = UnixTime::since_unix_epoch(validity.not_after.to_unix_duration());
    if now.as_secs() < not_before.as_secs() {
        return Err(CertificateError::NotValidYetContext { time: now, not_before }.into());
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(CertificateError::ExpiredContext { time: now, not_after }.into());
    }
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| bad())?;
    ee.verify_is_valid_for_subject_name(server_name).map_err(|e| match e {
        webpki::Error::CertNotValidForName(ctx) => CertificateError::NotValidForNameContext {
            expected: ctx.expected,
            presented: ctx.presented,
        }
        .into(),
        _ => CertificateError::NotValidForName.into(),
    })
}

/// Verifies against the roots, and also accepts a server certificate that is itself in `--ca-file` (a
/// self-signed CA:TRUE certificate, as `openssl req -x509` makes and many ESXi hosts present; webpki refuses
/// those as CaUsedAsEndEntity, curl --cacert and pyVmomi accept them). Its dates and name are still checked.
#[derive(Debug)]
struct CaVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    own_certs: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // A key ring cannot verify would fail the handshake later with a bare BadSignature: say why now.
        if let Some(key) = rsa_key(end_entity).filter(|k| rsa_bits(k) < RING_MIN_RSA_BITS) {
            return Err(certificate_error(WeakServerKey {
                bits: rsa_bits(&key),
                server_sha256: Sha256::digest(end_entity.as_ref()).into(),
            }));
        }
        if self.own_certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            check_direct_trust(end_entity, server_name, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, false, message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, true, message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
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
            Err(certificate_error(PinMismatch { server_sha256: digest }))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, false, message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, true, message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `--insecure`: any certificate. Signatures are still checked (short RSA keys included), which costs nothing.
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
        verify_signature(&self.provider, false, message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, true, message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throw-away 1024-bit test key (openssl genpkey), to sign handshake-like messages.
    const TEST_KEY_1024: &str = "-----BEGIN PRIVATE KEY-----\nMIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAL9dUo1PvuHVw9nQ\nITIKzZHlGCjudJP3aVytvc+KlEs6z8wPTM+r4zRXVDC4z/llGqT000B5OBVNBNXZ\n7YjaxxjCEscW/5mjvsgKyO8/6Mmm6CQWRNQ0Ar5anv9SobgymoD9bebzGFUZCLEL\nYu3bRKKW8XpvPg+2pqJMfyDghHRXAgMBAAECgYAZT2KHxjBc9kT9HgYF9F/UGBTl\n9QP+Pg71bxVXyeBrQtAREUT7gqR+W76K4ya+uZyYjLkUIfRE/PbSwgwkuarzZKzr\ncfRprcdmcQgPe43DTbNv5PyCv2yf600WM7Sgnxs3yKgbbMI4sQ9inR6CggwiNZKp\n01Tya+GoevEXz/DGgQJBAOvffo6ELEARxS99qDGlMxc1rpZSJyHHogJd3aPyt31k\nHI8uPwL8PzNl/QNq7Xc1mqsY6uDUHPHaCp5Z9zNFMWcCQQDPsZEaB4wKNxrxjDyr\n0fmxZyjRNpym+3R55LSAaLPPNQHowjGKWKVz/J03TteeGnuGk/ET00YHqWCcfxnQ\n6B+RAkAogB6l7/H9Kk/2YJghtiD4qkIJE6Aef73EtENbZFC3WhpBR4qQQ6nCdI+m\nJ5UQtAaTvFqQMjuqF2tdV0tH5WifAkEArwEaGOq/D2R7aYkXHlhhoyAffpobyYAc\nFxGlHoYa7L/nie8Hu2ESmPcEqjPe7zO1XiKOgnwFiDMqWvOmFydgYQJATFIr1zUY\nKLFB9UIZAOfuMkzgB6hy/y36eP8X0ga0IUT474HEgD2nMUekzYJgJ+ckf5KjvHAa\n4ZyESAMeUcRhSw==\n-----END PRIVATE KEY-----\n";

    #[test]
    fn short_rsa_signatures_are_verified_not_waved_through() {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::sha2::{Digest, Sha256};
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_KEY_1024).unwrap();
        let public = private.to_public_key();
        assert_eq!(rsa_bits(&public), 1024);
        let message = b"server key exchange params";
        let sig = private
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message))
            .unwrap();
        assert!(verify_weak_rsa(&public, message, SignatureScheme::RSA_PKCS1_SHA256, &sig).is_ok());
        // Another message, a flipped bit, or a scheme other than the one signed with: refused.
        assert!(verify_weak_rsa(&public, b"other params", SignatureScheme::RSA_PKCS1_SHA256, &sig).is_err());
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(verify_weak_rsa(&public, message, SignatureScheme::RSA_PKCS1_SHA256, &bad).is_err());
        assert!(verify_weak_rsa(&public, message, SignatureScheme::RSA_PSS_SHA256, &sig).is_err());
        assert!(verify_weak_rsa(&public, message, SignatureScheme::ECDSA_NISTP256_SHA256, &sig).is_err());
    }

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
