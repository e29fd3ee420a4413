//! The vim25 SOAP transport: envelopes, the session cookie, timeouts, size caps, faults, recording.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

pub use super::conn::ConnectStage;
use super::conn::{ConnectFailure, Connections, Endpoint};
use super::fault::Fault;
use super::record::{Exchange, REDACTED, Recorder};
use super::tls::{PinMismatch, TlsPolicy, TlsSetupError, WeakServerKey, client_config, format_thumbprint};
use super::xml::{self, Element, XmlError};

/// API version sent before the server has told us its own. RetrievePropertiesEx and WaitForUpdatesEx need
/// 4.1, which is also the oldest server vmha supports.
pub const BASELINE_VERSION: &str = "4.1";
/// The newest vim25 version whose behaviour vmha knows; newer servers are spoken to at this version.
pub const NEWEST_KNOWN_VERSION: &str = "8.0.3.0";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;
/// The file next to the SDK URL that lists the vim25 versions a server speaks (read before the first call).
pub const VERSIONS_FILE: &str = "vimServiceVersions.xml";
pub const SESSION_COOKIE: &str = "vmware_soap_session";

/// Everything the transport can fail with. Causes stay typed (`#[source]`); `Display` is one line an operator
/// can act on, and `error.rs` maps each variant to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    /// No TCP connection could be made (refused, unreachable, name not resolved).
    #[error("cannot connect to {url}: {}", io_cause(source))]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The TCP and TLS connection was not up within the connect timeout; `stage` says how far it got.
    #[error("{}", connect_timeout_text(url, *secs, *stage))]
    ConnectTimeout {
        url: String,
        secs: u64,
        stage: ConnectStage,
    },
    /// The TLS handshake failed; `reason` says why in an operator's terms.
    #[error("TLS handshake with {url} failed: {reason}")]
    Tls {
        url: String,
        reason: TlsFailure,
        #[source]
        source: rustls::Error,
    },
    /// `--thumbprint` was given and the server presented another certificate.
    #[error("TLS handshake with {url} refused: {source}")]
    PinMismatch {
        url: String,
        #[source]
        source: PinMismatch,
    },
    /// The request was sent but the connection broke before the whole answer arrived.
    #[error(
        "{method}: the connection to the server broke before the answer was complete: {}",
        io_cause(source)
    )]
    ConnectionLost {
        method: String,
        #[source]
        source: hyper::Error,
    },
    /// The server accepted the request and did not finish answering within the request timeout.
    #[error("{method} got no answer within {secs} s")]
    Timeout { method: String, secs: u64 },
    /// An HTTP error status with a body that is not a SOAP fault.
    #[error("{method}: the server answered HTTP {status}: {snippet}")]
    Http {
        method: String,
        status: u16,
        snippet: String,
    },
    /// A redirect: the SDK endpoint is elsewhere (vmha does not follow redirects, they could leak the session).
    #[error("{method}: the server redirects (HTTP {status}) to {location}; give that address as --url")]
    Redirect {
        method: String,
        status: u16,
        location: String,
    },
    /// An HTML page with a success status where a SOAP answer was expected: the URL is a web page, not the SDK.
    #[error(
        "{method}: the server answered with an HTML page (HTTP {status}), not SOAP: this is not a vSphere SDK endpoint; check the URL path (usually https://HOST/sdk)"
    )]
    NotSdk { method: String, status: u16 },
    /// The answer exceeded the body cap.
    #[error("{method}: response larger than {limit} bytes")]
    TooLarge { method: String, limit: usize },
    /// The answer is not well-formed XML, or XML vmha refuses (DTDs, nesting past the cap).
    #[error("{method}: unreadable response: {source}")]
    Malformed {
        method: String,
        #[source]
        source: XmlError,
    },
    /// Well-formed XML without what the method's answer must hold (also raised by the typed decoders above).
    #[error("{method}: unreadable response: {cause}")]
    Parse { method: String, cause: String },
    /// A SOAP fault.
    #[error("{method} failed: {fault}")]
    Fault { method: String, fault: Fault },
    /// The TLS settings could not be built (bad `--ca-file`, no roots).
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    /// `--record` could not create its directory or write its file.
    #[error("cannot write the recording in {dir}: {source}")]
    Record {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl SoapError {
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            SoapError::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }

    /// Errors after which a retry on a fresh connection may succeed.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            SoapError::Connect { .. }
                | SoapError::ConnectTimeout { .. }
                | SoapError::ConnectionLost { .. }
                | SoapError::Timeout { .. }
        )
    }
}

/// Why a TLS handshake failed, decided from rustls's error types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The chain leads to no trusted root (self-signed, or a CA that is not in the store or `--ca-file`).
    Untrusted,
    /// The certificate expired.
    Expired { not_after: String, now: String },
    /// The certificate is not valid yet.
    NotYetValid { not_before: String, now: String },
    /// The certificate does not name the host in `--url`.
    WrongName { presented: Vec<String> },
    /// The server's RSA key is shorter than 2048 bits and nothing pins it.
    WeakKey { bits: usize, server_sha256: String },
    /// The server offers only TLS 1.0 or 1.1.
    LegacyProtocol,
    /// The server answered in plain HTTP.
    PlainHttp,
    /// Anything else, in rustls's words.
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Untrusted => write!(f, "the server's certificate is not trusted (no trusted CA signed it)"),
            TlsFailure::Expired { not_after, now } => {
                write!(f, "the server's certificate expired on {not_after} (now {now})")
            }
            TlsFailure::NotYetValid { not_before, now } => {
                write!(
                    f,
                    "the server's certificate is valid only from {not_before} (now {now}); check the clocks"
                )
            }
            TlsFailure::WrongName { presented } if presented.is_empty() => {
                write!(f, "the server's certificate is not issued for this host name")
            }
            TlsFailure::WrongName { presented } => write!(
                f,
                "the server's certificate is not issued for this host name; it names {}",
                presented.join(", ")
            ),
            TlsFailure::WeakKey { bits, server_sha256 } => write!(
                f,
                "the server's certificate has a {bits}-bit RSA key, too weak to verify against a CA (its SHA-256 is {server_sha256})"
            ),
            TlsFailure::LegacyProtocol => write!(
                f,
                "the server offers only TLS 1.0/1.1, which vmha does not speak (it needs TLS 1.2: ESXi 5.5 U3 / 6.0 U1 or later)"
            ),
            TlsFailure::PlainHttp => write!(f, "the server speaks plain HTTP, not HTTPS, on this port"),
            TlsFailure::Other(text) => write!(f, "{text}"),
        }
    }
}

/// A UNIX time as an operator reads it.
fn date(t: rustls::pki_types::UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after 1970"))
}

impl TlsFailure {
    /// Classifies a rustls error; `None` for a pin mismatch, which is its own [`SoapError`] variant.
    fn from_rustls(e: &rustls::Error) -> TlsFailure {
        use rustls::{AlertDescription, CertificateError as C, Error as E, InvalidMessage, PeerIncompatible};
        match e {
            E::InvalidCertificate(c) => match c {
                C::UnknownIssuer => TlsFailure::Untrusted,
                C::ExpiredContext { time, not_after } => TlsFailure::Expired {
                    not_after: date(*not_after),
                    now: date(*time),
                },
                C::NotValidYetContext { time, not_before } => TlsFailure::NotYetValid {
                    not_before: date(*not_before),
                    now: date(*time),
                },
                C::NotValidForNameContext { presented, .. } => TlsFailure::WrongName {
                    presented: presented.clone(),
                },
                C::NotValidForName => TlsFailure::WrongName { presented: vec![] },
                C::Other(other) => {
                    if let Some(weak) = other.0.downcast_ref::<WeakServerKey>() {
                        TlsFailure::WeakKey {
                            bits: weak.bits,
                            server_sha256: format_thumbprint(&weak.server_sha256),
                        }
                    } else if let Some(webpki::Error::CaUsedAsEndEntity) = other.0.downcast_ref::<webpki::Error>() {
                        // A self-signed CA:TRUE certificate that is not in --ca-file.
                        TlsFailure::Untrusted
                    } else {
                        TlsFailure::Other(e.to_string())
                    }
                }
                _ => TlsFailure::Other(e.to_string()),
            },
            E::InvalidMessage(InvalidMessage::InvalidContentType) => TlsFailure::PlainHttp,
            E::AlertReceived(AlertDescription::ProtocolVersion)
            | E::PeerIncompatible(PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig)
            | E::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired) => TlsFailure::LegacyProtocol,
            _ => TlsFailure::Other(e.to_string()),
        }
    }
}

/// Finds an error of type `T` along a source chain. `io::Error` hides its payload from `source()` (it returns
/// the payload's own source), so the payload is looked into explicitly.
fn find_in_chain<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        // io::Error payloads nest (hyper wraps rustls's io::Error in another): walk into the payload itself.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

fn connect_timeout_text(url: &str, secs: u64, stage: ConnectStage) -> String {
    match stage {
        ConnectStage::Tcp => format!("cannot connect to {url}: no connection within {secs} s"),
        ConnectStage::TlsHandshake => {
            format!("connected to {url}, but no answer came to the TLS handshake within {secs} s")
        }
        ConnectStage::Http => {
            format!("connected to {url}, but the HTTP connection did not start within {secs} s")
        }
    }
}

/// The innermost cause of a connection failure, said plainly for the common `io::ErrorKind`s.
fn io_cause(e: &(dyn std::error::Error + 'static)) -> String {
    use std::io::ErrorKind as K;
    if let Some(io) = find_in_chain::<std::io::Error>(e) {
        let plain = match io.kind() {
            K::ConnectionRefused => Some("connection refused (nothing listens on that port)"),
            K::ConnectionReset => Some("connection reset by the server"),
            K::ConnectionAborted => Some("connection aborted"),
            K::UnexpectedEof => Some("the server closed the connection"),
            K::BrokenPipe => Some("the server closed the connection"),
            K::HostUnreachable => Some("host unreachable"),
            K::NetworkUnreachable => Some("network unreachable"),
            _ => None,
        };
        if let Some(p) = plain {
            return p.to_string();
        }
    }
    let mut last = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    last
}

#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub url: String,
    pub tls: TlsPolicy,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// A shorter bound for the connection and the first answer (vCenter, when a host can stand in for it):
    /// a server that is down or frozen is given up on quickly; once it has answered, `request_timeout` rules.
    pub first_answer_timeout: Option<Duration>,
    pub max_body: usize,
    pub max_depth: usize,
}

impl TransportOptions {
    pub fn new(url: &str, tls: TlsPolicy, request_timeout: Duration) -> Self {
        TransportOptions {
            url: url.to_string(),
            tls,
            request_timeout,
            // Connecting is quick or it is not happening: keep it short and apart from the request timeout.
            connect_timeout: request_timeout.min(Duration::from_secs(10)),
            first_answer_timeout: None,
            max_body: DEFAULT_MAX_BODY,
            max_depth: xml::DEFAULT_MAX_DEPTH,
        }
    }
}

pub struct SoapClient {
    conns: Connections,
    opts: TransportOptions,
    version: Mutex<String>,
    cookie: Mutex<Option<SecretString>>,
    /// Secrets this client has sent (the Login password, as sent and unescaped), scrubbed from every text the
    /// server sends back before it is shown, logged or recorded: a server may quote the request in a fault.
    secrets: Mutex<Vec<SecretString>>,
    /// `/sdk/vimServiceVersions.xml` is read once, before the first call.
    versions_read: tokio::sync::OnceCell<()>,
    recorder: Option<Recorder>,
    /// Set by the first complete answer: from then on `request_timeout` applies, not `first_answer_timeout`.
    answered: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SoapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoapClient")
            .field("url", &self.opts.url)
            .field("version", &self.version())
            .field("has_session", &self.cookie.lock().map(|c| c.is_some()).unwrap_or(false))
            .finish()
    }
}

const ENVELOPE_HEAD: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
    "<soapenv:Body>"
);
const ENVELOPE_TAIL: &str = "</soapenv:Body></soapenv:Envelope>";

/// The versions file is small; anything bigger is not it.
const VERSIONS_FILE_LIMIT: usize = 64 * 1024;

impl SoapClient {
    pub fn new(opts: TransportOptions, recorder: Option<Recorder>) -> Result<SoapClient, SoapError> {
        let tls = client_config(&opts.tls)?;
        let endpoint = Endpoint::new(&opts.url, tls).map_err(|e| SoapError::Connect {
            url: opts.url.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let mut opts = opts;
        if let Some(first) = opts.first_answer_timeout {
            opts.connect_timeout = opts.connect_timeout.min(first);
        }
        Ok(SoapClient {
            conns: Connections::new(endpoint, opts.connect_timeout),
            opts,
            version: Mutex::new(BASELINE_VERSION.to_string()),
            cookie: Mutex::new(None),
            secrets: Mutex::new(Vec::new()),
            versions_read: tokio::sync::OnceCell::new(),
            recorder,
            answered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One HTTP exchange on the shared connection, within the request timeout: status, headers and the body
    /// (at most `limit` bytes). The connection is given back only once the whole answer has been read.
    async fn exchange(
        &self,
        method: &str,
        request: impl Fn() -> http::Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(u16, http::HeaderMap, String), SoapError> {
        let attempt = async {
            let mut sender = self.conns.take().await.map_err(|e| self.connect_error(e))?;
            let resp = match sender.try_send_request(request()).await {
                Ok(r) => r,
                // The idle connection was closed by the server before our request went out: send it on a new one.
                Err(e) if e.message().is_some() => {
                    sender = self.conns.connect().await.map_err(|e| self.connect_error(e))?;
                    sender.send_request(request()).await.map_err(|e| self.lost(method, e))?
                }
                Err(e) => return Err(self.lost(method, e.into_error())),
            };
            let status = resp.status().as_u16();
            let (parts, mut body) = resp.into_parts();
            // Kept as soon as the headers arrive: a Login whose body is then cut has still opened a session,
            // and only this cookie lets it be logged out.
            self.keep_session_cookie(&parts.headers);
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(SoapError::TooLarge {
                    method: method.into(),
                    limit,
                });
            }
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.lost(method, e))?;
                if let Ok(chunk) = frame.into_data() {
                    if buf.len() + chunk.len() > limit {
                        return Err(SoapError::TooLarge {
                            method: method.into(),
                            limit,
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
            self.conns.give_back(sender);
            let text = String::from_utf8(buf).map_err(|_| SoapError::Parse {
                method: method.into(),
                cause: "response is not UTF-8".into(),
            })?;
            Ok((status, parts.headers, text))
        };
        let limit = match self.opts.first_answer_timeout {
            Some(first) if !self.answered.load(std::sync::atomic::Ordering::Relaxed) => first,
            _ => self.opts.request_timeout,
        };
        let answer = tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| SoapError::Timeout {
                method: method.into(),
                secs: limit.as_secs(),
            })??;
        self.answered.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(answer)
    }

    fn keep_session_cookie(&self, headers: &http::HeaderMap) {
        for v in headers.get_all(http::header::SET_COOKIE) {
            if let Some(session) = v.to_str().ok().and_then(session_cookie_value)
                && let Ok(mut c) = self.cookie.lock()
            {
                *c = Some(SecretString::from(session));
            }
        }
    }

    /// Whether the server has given this client a session cookie (even on an answer that was then cut).
    pub fn has_session_cookie(&self) -> bool {
        self.cookie.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    fn http_request(&self, verb: http::Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(verb)
            .uri(path)
            .header(http::header::HOST, &self.conns.endpoint().authority)
            .header(http::header::USER_AGENT, concat!("vmha/", env!("CARGO_PKG_VERSION")))
    }

    pub fn url(&self) -> &str {
        &self.opts.url
    }

    pub fn request_timeout(&self) -> Duration {
        self.opts.request_timeout
    }

    pub fn version(&self) -> String {
        self.version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|_| BASELINE_VERSION.to_string())
    }

    /// Adopts the server's API version, capped to the newest one vmha knows.
    pub fn negotiate_version(&self, server: &str) {
        let chosen = if version_le(server, NEWEST_KNOWN_VERSION) {
            server
        } else {
            NEWEST_KNOWN_VERSION
        };
        if let Ok(mut v) = self.version.lock() {
            *v = chosen.to_string();
        }
    }

    /// Speaks `version`, which an earlier process negotiated with this server (the session cache keeps it),
    /// without reading `vimServiceVersions.xml` again.
    pub fn adopt_version(&self, version: &str) {
        self.negotiate_version(version);
        let _ = self.versions_read.set(());
    }

    /// Opens the connection (TCP and TLS) without sending anything, so that the server's certificate is
    /// known before a cached session cookie goes out (see [`SoapClient::peer_sha256`]).
    pub async fn open(&self) -> Result<(), SoapError> {
        let sender = self.conns.take().await.map_err(|e| self.connect_error(e))?;
        self.conns.give_back(sender);
        Ok(())
    }

    /// The session cookie, to keep it for the next process (the session cache).
    pub fn session_cookie(&self) -> Option<SecretString> {
        self.cookie.lock().ok().and_then(|c| c.clone())
    }

    /// Adopts a session cookie an earlier process was given by this server.
    pub fn set_session_cookie(&self, cookie: SecretString) {
        if let Ok(mut c) = self.cookie.lock() {
            *c = Some(cookie);
        }
    }

    /// SHA-256 of the certificate the server presented (`None` on plain HTTP or before the first call).
    pub fn peer_sha256(&self) -> Option<[u8; 32]> {
        self.conns.peer_sha256()
    }

    pub fn clear_session(&self) {
        if let Ok(mut c) = self.cookie.lock() {
            *c = None;
        }
    }

    /// Replaces every secret this client has sent with `(redacted)`.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = match self.secrets.lock() {
            Ok(s) => s,
            Err(_) => return text.to_string(),
        };
        let mut out = text.to_string();
        for secret in secrets.iter() {
            let secret = secret.expose_secret();
            if !secret.is_empty() && out.contains(secret) {
                out = out.replace(secret, REDACTED);
            }
        }
        out
    }

    /// Remembers the secrets of an outgoing body (a Login's `<password>`, a session id sent to
    /// HasPrivilegeOnEntities), both as sent (escaped) and as the server may quote them.
    fn learn_secrets(&self, body: &str) {
        for tag in ["password", "sessionId"] {
            let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
            let Some(start) = body.find(&open) else {
                continue;
            };
            let rest = &body[start + open.len()..];
            let Some(end) = rest.find(&close) else {
                continue;
            };
            let escaped = &rest[..end];
            let plain = quick_xml::escape::unescape(escaped)
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| escaped.to_string());
            if let Ok(mut secrets) = self.secrets.lock() {
                // Longest first, so that a secret containing another is replaced whole.
                for s in [escaped.to_string(), plain] {
                    if !s.is_empty() && !secrets.iter().any(|k| k.expose_secret() == s) {
                        secrets.push(SecretString::from(s));
                    }
                }
                secrets.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
            }
        }
    }

    /// Reads `vimServiceVersions.xml` next to the SDK URL, as pyVmomi does, and speaks the newest version both
    /// sides know. A missing or unreadable file keeps the baseline (the caller still adopts `about.apiVersion`).
    /// A failure to reach the server at all is returned (as `method`'s), so that the call does not wait out a
    /// second connect timeout.
    async fn read_versions_file(&self, method: &str) -> Result<(), SoapError> {
        let path = format!("{}/{VERSIONS_FILE}", self.conns.endpoint().path.trim_end_matches('/'));
        let request = || {
            self.http_request(http::Method::GET, &path)
                .body(Full::new(Bytes::new()))
                .expect("a GET of a fixed path is a valid request")
        };
        let answer = self.exchange(method, request, VERSIONS_FILE_LIMIT).await;
        if let (Some(rec), Ok((status, _, text))) = (&self.recorder, &answer) {
            // Recorded like a call, so that a replay serves it too.
            let ex = Exchange {
                method: VERSIONS_FILE.to_string(),
                status: *status,
                request: format!("GET {path}"),
                response: text.clone(),
            };
            rec.write(&ex).map_err(|source| SoapError::Record {
                dir: rec.dir().display().to_string(),
                source,
            })?;
        }
        let text = match answer {
            Ok((200..=299, _, text)) => text,
            Ok((status, _, _)) => {
                tracing::debug!(status, "no vimServiceVersions.xml");
                return Ok(());
            }
            Err(
                e @ (SoapError::Connect { .. }
                | SoapError::ConnectTimeout { .. }
                | SoapError::Tls { .. }
                | SoapError::PinMismatch { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "vimServiceVersions.xml unreadable");
                return Ok(());
            }
        };
        match newest_common_version(&text, self.opts.max_depth) {
            Some(v) => {
                tracing::debug!(version = %v, "version from vimServiceVersions.xml");
                self.negotiate_version(&v);
            }
            None => tracing::debug!("vimServiceVersions.xml names no usable urn:vim25 version"),
        }
        Ok(())
    }

    /// Sends one method call. `body` is the method element's inner XML (starting with `_this`).
    /// Returns the response element (`<MethodResponse>`).
    pub async fn call(&self, method: &str, body: &str) -> Result<Element, SoapError> {
        self.versions_read
            .get_or_try_init(|| self.read_versions_file(method))
            .await?;
        self.learn_secrets(body);
        let request = format!("{ENVELOPE_HEAD}<{method} xmlns=\"urn:vim25\">{body}</{method}>{ENVELOPE_TAIL}");
        let payload = Bytes::from(request.clone());
        let soap_action = format!("\"urn:vim25/{}\"", self.version());
        let cookie = self
            .cookie
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .map(|c| format!("{SESSION_COOKIE}={}", c.expose_secret()));
        let build = || {
            let mut r = self
                .http_request(http::Method::POST, &self.conns.endpoint().path)
                .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .header("SOAPAction", &soap_action);
            if let Some(c) = &cookie {
                r = r.header(http::header::COOKIE, c);
            }
            r.body(Full::new(payload.clone()))
                .expect("method names and cookies are valid header values")
        };
        tracing::debug!(method, "SOAP request");
        let (status, headers, text) = self.exchange(method, build, self.opts.max_body).await?;
        if (300..400).contains(&status) {
            let location = headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.scrub(l))
                .unwrap_or_else(|| "(no Location given)".into());
            return Err(SoapError::Redirect {
                method: method.into(),
                status,
                location,
            });
        }
        let html = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("text/html"));
        if let Some(rec) = &self.recorder {
            let ex = Exchange {
                method: method.to_string(),
                status,
                request,
                response: self.scrub(&text),
            };
            rec.write(&ex).map_err(|source| SoapError::Record {
                dir: rec.dir().display().to_string(),
                source,
            })?;
        }
        // A 2xx HTML page is a web UI or portal at that URL; HTML with an error status (a proxy's or a starting
        // vCenter's page) is reported with its status below.
        if (200..300).contains(&status) && (html || looks_like_html(&text)) {
            return Err(SoapError::NotSdk {
                method: method.into(),
                status,
            });
        }
        self.decode(method, status, &text)
    }

    fn decode(&self, method: &str, status: u16, text: &str) -> Result<Element, SoapError> {
        let is_soap = |r: &Element| r.name == "Envelope" && r.child("Body").is_some();
        let result = match xml::parse(text, self.opts.max_depth) {
            Ok(root) if is_soap(&root) => decode_envelope(method, status, root),
            // An error page from a proxy or a starting vCenter is not a SOAP answer: report the status.
            Ok(_) | Err(_) if !(200..300).contains(&status) => Err(SoapError::Http {
                method: method.into(),
                status,
                snippet: snippet(text),
            }),
            Ok(_) => Err(SoapError::Parse {
                method: method.into(),
                cause: "not a SOAP envelope".into(),
            }),
            Err(e) => Err(SoapError::Malformed {
                method: method.into(),
                source: e,
            }),
        };
        result.map_err(|e| self.scrub_error(e))
    }

    /// Scrubs secrets from the server's text carried by an error.
    fn scrub_error(&self, e: SoapError) -> SoapError {
        match e {
            SoapError::Fault { method, fault } => SoapError::Fault {
                method,
                fault: Fault {
                    message: self.scrub(&fault.message),
                    detail_text: fault.detail_text.map(|d| self.scrub(&d)),
                    ..fault
                },
            },
            SoapError::Http {
                method,
                status,
                snippet,
            } => SoapError::Http {
                method,
                status,
                snippet: self.scrub(&snippet),
            },
            SoapError::Parse { method, cause } => SoapError::Parse {
                method,
                cause: self.scrub(&cause),
            },
            SoapError::Malformed {
                method,
                source: XmlError::Malformed(text),
            } => SoapError::Malformed {
                method,
                source: XmlError::Malformed(self.scrub(&text)),
            },
            other => other,
        }
    }

    /// Types a failed connect from io's and rustls's error types (never from message text).
    fn connect_error(&self, e: ConnectFailure) -> SoapError {
        let url = self.opts.url.clone();
        match e {
            ConnectFailure::Timeout { stage } => SoapError::ConnectTimeout {
                url,
                secs: self.opts.connect_timeout.as_secs(),
                stage,
            },
            ConnectFailure::Io(io) => match tls_error(&url, &io) {
                Some(tls) => tls,
                None => SoapError::Connect { url, source: io },
            },
            ConnectFailure::Http(h) => SoapError::Connect {
                url,
                source: std::io::Error::other(h),
            },
        }
    }

    /// Types a failure after the request went out: TLS (an alert mid-stream) or a broken connection.
    fn lost(&self, method: &str, e: hyper::Error) -> SoapError {
        tls_error(&self.opts.url, &e).unwrap_or_else(|| SoapError::ConnectionLost {
            method: method.into(),
            source: e,
        })
    }
}

/// A TLS failure found along `e`'s source chain, as its own variant.
fn tls_error(url: &str, e: &(dyn std::error::Error + 'static)) -> Option<SoapError> {
    let tls = find_in_chain::<rustls::Error>(e)?;
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = tls
        && let Some(pin) = other.0.downcast_ref::<PinMismatch>()
    {
        return Some(SoapError::PinMismatch {
            url: url.into(),
            source: PinMismatch {
                server_sha256: pin.server_sha256,
            },
        });
    }
    Some(SoapError::Tls {
        url: url.into(),
        reason: TlsFailure::from_rustls(tls),
        source: tls.clone(),
    })
}

/// An HTML page rather than XML (a web UI, a login portal, a proxy's error page).
fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start()
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// The version to speak from a `vimServiceVersions.xml`: the newest `urn:vim25` version (current or prior)
/// that is not newer than [`NEWEST_KNOWN_VERSION`].
pub fn newest_common_version(text: &str, max_depth: usize) -> Option<String> {
    let root = xml::parse(text, max_depth).ok()?;
    if root.name != "namespaces" {
        return None;
    }
    let ns = root
        .children_named("namespace")
        .find(|n| n.child_text("name").map(str::trim) == Some("urn:vim25"))?;
    let mut versions: Vec<&str> = ns.child_text("version").map(str::trim).into_iter().collect();
    if let Some(prior) = ns.child("priorVersions") {
        versions.extend(prior.children_named("version").map(|v| v.text.trim()));
    }
    let newest = versions
        .into_iter()
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .max_by(|a, b| {
            if version_le(a, b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })?;
    // A server newer than vmha is spoken to at the newest version vmha knows (vim25 servers accept older ones).
    Some(if version_le(newest, NEWEST_KNOWN_VERSION) {
        newest.to_string()
    } else {
        NEWEST_KNOWN_VERSION.to_string()
    })
}

/// Reads `<Envelope><Body>`: either the method response or a fault.
pub fn decode_envelope(method: &str, status: u16, root: Element) -> Result<Element, SoapError> {
    let body = root.child("Body").ok_or_else(|| SoapError::Parse {
        method: method.into(),
        cause: "no SOAP Body".into(),
    })?;
    let first = body.children.first().ok_or_else(|| SoapError::Parse {
        method: method.into(),
        cause: "empty SOAP Body".into(),
    })?;
    if first.name == "Fault" {
        return Err(SoapError::Fault {
            method: method.into(),
            fault: Fault::from_soap_fault(first),
        });
    }
    if !(200..300).contains(&status) {
        return Err(SoapError::Http {
            method: method.into(),
            status,
            snippet: snippet(&first.to_xml()),
        });
    }
    Ok(first.clone())
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `vmware_soap_session="52abc..."; Path=/; HttpOnly` gives `"52abc..."` (quotes kept: the server wants them back).
fn session_cookie_value(header: &str) -> Option<String> {
    let first = header.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name.trim() == SESSION_COOKIE).then(|| value.trim().to_string())
}

/// Compares dotted version strings numerically (`6.7.3` < `8.0.1.0`).
pub fn version_le(a: &str, b: &str) -> bool {
    let parse = |s: &str| s.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    let (mut pa, mut pb) = (parse(a), parse(b));
    let n = pa.len().max(pb.len());
    pa.resize(n, 0);
    pb.resize(n, 0);
    pa <= pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_and_versions() {
        assert_eq!(
            session_cookie_value("vmware_soap_session=\"52ab\"; Path=/; HttpOnly").as_deref(),
            Some("\"52ab\"")
        );
        assert_eq!(session_cookie_value("other=1; Path=/"), None);
        assert!(version_le("6.7.3", "8.0.3.0"));
        assert!(version_le("8.0.3.0", "8.0.3"));
        assert!(!version_le("9.0.0.0", "8.0.3.0"));
        assert!(!version_le("8.0.10", "8.0.3.0"));
    }

    #[test]
    fn version_is_capped() {
        let c = SoapClient::new(
            TransportOptions::new("http://127.0.0.1:1/sdk", TlsPolicy::Insecure, Duration::from_secs(1)),
            None,
        )
        .unwrap();
        assert_eq!(c.version(), BASELINE_VERSION);
        c.negotiate_version("9.1.0.0");
        assert_eq!(c.version(), NEWEST_KNOWN_VERSION);
        c.negotiate_version("6.5");
        assert_eq!(c.version(), "6.5");
    }

    #[test]
    fn tls_failures_are_typed_and_dated() {
        use rustls::pki_types::UnixTime;
        use rustls::{AlertDescription, CertificateError, Error as E, InvalidMessage};
        let expired = E::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_764_064_800)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
        });
        let f = TlsFailure::from_rustls(&expired);
        assert_eq!(
            f,
            TlsFailure::Expired {
                not_after: "2023-11-14 22:13:20 UTC".into(),
                now: "2025-11-25 10:00:00 UTC".into()
            }
        );
        assert!(f.to_string().contains("expired on 2023-11-14"), "{f}");
        assert_eq!(
            TlsFailure::from_rustls(&E::InvalidMessage(InvalidMessage::InvalidContentType)),
            TlsFailure::PlainHttp
        );
        assert_eq!(
            TlsFailure::from_rustls(&E::AlertReceived(AlertDescription::ProtocolVersion)),
            TlsFailure::LegacyProtocol
        );
        assert_eq!(
            TlsFailure::from_rustls(&E::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsFailure::Untrusted
        );
    }

    #[test]
    fn versions_file_picks_the_newest_common_version() {
        let doc = |v: &str, prior: &str| {
            format!(
                "<namespaces version=\"1.0\"><namespace><name>urn:vim25</name><version>{v}</version><priorVersions>{prior}</priorVersions></namespace></namespaces>"
            )
        };
        let prior = "<version>6.0</version><version>6.5</version><version>8.0.3.0</version>";
        assert_eq!(
            newest_common_version(&doc("9.1.0.0", prior), 64).as_deref(),
            Some(NEWEST_KNOWN_VERSION)
        );
        assert_eq!(
            newest_common_version(&doc("7.0.3.0", "<version>6.7</version>"), 64).as_deref(),
            Some("7.0.3.0")
        );
        assert_eq!(newest_common_version("<html/>", 64), None);
        assert_eq!(newest_common_version("not xml", 64), None);
    }

    #[test]
    fn learned_secrets_are_scrubbed_in_both_forms() {
        let c = SoapClient::new(
            TransportOptions::new("http://127.0.0.1:1/sdk", TlsPolicy::Insecure, Duration::from_secs(1)),
            None,
        )
        .unwrap();
        c.learn_secrets("<userName>u</userName><password>p&amp;w-123</password>");
        assert_eq!(c.scrub("bad p&w-123 and p&amp;w-123"), "bad (redacted) and (redacted)");
        assert_eq!(c.scrub("nothing here"), "nothing here");
    }

    #[test]
    fn envelope_fault_on_200_and_500() {
        let doc = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>gone</faultstring><detail><ManagedObjectNotFoundFault xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-9</obj></ManagedObjectNotFoundFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        for status in [200, 500] {
            let root = xml::parse(doc, 64).unwrap();
            let err = decode_envelope("PowerOnVM_Task", status, root).unwrap_err();
            assert_eq!(err.fault().unwrap().type_name, "ManagedObjectNotFound");
        }
    }
}
