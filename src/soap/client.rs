//! The vim25 SOAP transport: envelopes, the session cookie, timeouts, size caps, faults, recording.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::fault::Fault;
use super::record::{Exchange, Recorder};
use super::tls::{TlsPolicy, TlsSetupError, client_config};
use super::xml::{self, Element, XmlError};

/// API version sent before the server has told us its own. RetrievePropertiesEx and WaitForUpdatesEx need
/// 4.1, which is also the oldest server vmha supports.
pub const BASELINE_VERSION: &str = "4.1";
/// The newest vim25 version whose behaviour vmha knows; newer servers are spoken to at this version.
pub const NEWEST_KNOWN_VERSION: &str = "8.0.3.0";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;
pub const SESSION_COOKIE: &str = "vmware_soap_session";

#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    #[error("cannot connect to {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("TLS handshake with {url} rejected: {cause}")]
    Tls { url: String, cause: String },
    #[error("{method} got no answer within {secs} s")]
    Timeout { method: String, secs: u64 },
    #[error("{method}: the server answered HTTP {status}: {snippet}")]
    Http {
        method: String,
        status: u16,
        snippet: String,
    },
    #[error("{method}: response larger than {limit} bytes")]
    TooLarge { method: String, limit: usize },
    #[error("{method}: unreadable response: {cause}")]
    Parse { method: String, cause: String },
    #[error("{method} failed: {fault}")]
    Fault { method: String, fault: Fault },
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error("cannot write recording: {0}")]
    Record(String),
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
        matches!(self, SoapError::Connect { .. } | SoapError::Timeout { .. })
    }
}

#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub url: String,
    pub tls: TlsPolicy,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
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
            max_body: DEFAULT_MAX_BODY,
            max_depth: xml::DEFAULT_MAX_DEPTH,
        }
    }
}

pub struct SoapClient {
    http: reqwest::Client,
    opts: TransportOptions,
    version: Mutex<String>,
    cookie: Mutex<Option<SecretString>>,
    recorder: Option<Recorder>,
    requests: std::sync::atomic::AtomicU64,
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

impl SoapClient {
    pub fn new(opts: TransportOptions, recorder: Option<Recorder>) -> Result<SoapClient, SoapError> {
        let tls = client_config(&opts.tls)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("vmha/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SoapError::Connect {
                url: opts.url.clone(),
                cause: e.to_string(),
            })?;
        Ok(SoapClient {
            http,
            opts,
            version: Mutex::new(BASELINE_VERSION.to_string()),
            cookie: Mutex::new(None),
            recorder,
            requests: std::sync::atomic::AtomicU64::new(0),
        })
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

    /// HTTP requests sent so far (for the figures in notes and benchmarks).
    pub fn request_count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
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

    /// True while a session cookie is held (also after a Login whose answer was lost).
    pub fn has_session(&self) -> bool {
        self.cookie.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    pub fn clear_session(&self) {
        if let Ok(mut c) = self.cookie.lock() {
            *c = None;
        }
    }

    /// Sends one method call. `body` is the method element's inner XML (starting with `_this`).
    /// Returns the response element (`<MethodResponse>`).
    pub async fn call(&self, method: &str, body: &str) -> Result<Element, SoapError> {
        let request = format!("{ENVELOPE_HEAD}<{method} xmlns=\"urn:vim25\">{body}</{method}>{ENVELOPE_TAIL}");
        let mut req = self
            .http
            .post(&self.opts.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"urn:vim25/{}\"", self.version()))
            .body(request.clone());
        if let Some(cookie) = self.cookie.lock().ok().and_then(|c| c.clone()) {
            req = req.header("Cookie", format!("{SESSION_COOKIE}={}", cookie.expose_secret()));
        }
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(method, "SOAP request");
        let resp = req.send().await.map_err(|e| self.classify(method, e))?;
        let status = resp.status().as_u16();
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some(session) = v.to_str().ok().and_then(session_cookie_value)
                && let Ok(mut c) = self.cookie.lock()
            {
                *c = Some(SecretString::from(session));
            }
        }
        let text = self.read_body(method, resp).await?;
        if let Some(rec) = &self.recorder {
            let ex = Exchange {
                method: method.to_string(),
                status,
                request,
                response: text.clone(),
            };
            rec.write(&ex).map_err(|e| SoapError::Record(e.to_string()))?;
        }
        self.decode(method, status, &text)
    }

    fn decode(&self, method: &str, status: u16, text: &str) -> Result<Element, SoapError> {
        let is_soap = |r: &Element| r.name == "Envelope" && r.child("Body").is_some();
        match xml::parse(text, self.opts.max_depth) {
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
            Err(e) => Err(parse_error(method, e)),
        }
    }

    async fn read_body(&self, method: &str, mut resp: reqwest::Response) -> Result<String, SoapError> {
        let limit = self.opts.max_body;
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(SoapError::TooLarge {
                method: method.into(),
                limit,
            });
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(method, e))? {
            if buf.len() + chunk.len() > limit {
                return Err(SoapError::TooLarge {
                    method: method.into(),
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        String::from_utf8(buf).map_err(|_| SoapError::Parse {
            method: method.into(),
            cause: "response is not UTF-8".into(),
        })
    }

    fn classify(&self, method: &str, e: reqwest::Error) -> SoapError {
        let url = self.opts.url.clone();
        let chain = error_chain(&e);
        if e.is_timeout() {
            SoapError::Timeout {
                method: method.into(),
                secs: self.opts.request_timeout.as_secs(),
            }
        } else if chain.contains("certificate")
            || chain.contains("thumbprint")
            || chain.contains("InvalidCertificate")
            || chain.contains("tls") && chain.contains("handshake")
        {
            SoapError::Tls { url, cause: chain }
        } else {
            SoapError::Connect { url, cause: chain }
        }
    }
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

fn parse_error(method: &str, e: XmlError) -> SoapError {
    SoapError::Parse {
        method: method.into(),
        cause: e.to_string(),
    }
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
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
    fn envelope_fault_on_200_and_500() {
        let doc = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>gone</faultstring><detail><ManagedObjectNotFoundFault xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-9</obj></ManagedObjectNotFoundFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        for status in [200, 500] {
            let root = xml::parse(doc, 64).unwrap();
            let err = decode_envelope("PowerOnVM_Task", status, root).unwrap_err();
            assert_eq!(err.fault().unwrap().type_name, "ManagedObjectNotFound");
        }
    }
}
