//! A fault-injecting HTTP/1.1 proxy for the simulator.
//!
//! vmha speaks plain HTTP to the proxy on 127.0.0.1 (vmha allows `http://` only on loopback); the proxy
//! forwards each request to the simulator's HTTPS endpoint, trusting the simulator's CA. TLS is not
//! terminated in the proxy on vmha's side, so every fault reaches vmha's HTTP and XML layers exactly as
//! written here, with no TLS record framing in the way.
//!
//! Each request is parsed enough to know its SOAP method (the first element inside the SOAP Body), calls
//! are counted per method, and a [`Rule`] "for the Nth call of METHOD do FAULT" replaces or damages the
//! answer. Everything else passes through. Two families of faults:
//!
//! * the server never sees the call (`Refuse`, the synthetic answers: HTML, entity bombs, SOAP faults, ...);
//! * the server does the work and the answer is damaged on its way back (`Close`, `Reset`, `HeadersOnly`,
//!   `Truncate`, `Drip`, `Stall`): what a broken network does, so session cookies still arrive first.
//!
//! A rule may also run a hook before forwarding (kill, freeze or replace the simulator).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with one call.
#[derive(Clone)]
pub enum Fault {
    /// Forward and answer as the server did.
    Pass,
    /// Close the connection before the server sees the request (no byte answered).
    Refuse,
    /// Forward (the server acts), then close without answering.
    Close,
    /// Forward, send the headers and half the body, then reset the connection (RST, SO_LINGER 0).
    Reset,
    /// Forward, then never answer.
    Stall,
    /// Forward, send the server's headers only, then never send the body.
    HeadersOnly,
    /// 503 with an HTML page (a load balancer or a starting vCenter).
    Html503,
    /// 200 with an HTML page (a wrong URL path behind a web server).
    Html200,
    /// Forward, send the server's headers (with its Content-Length) and half the body, then close.
    Truncate,
    /// A DTD declaring a billion-laughs entity bomb.
    EntityBomb,
    /// A DTD with an external entity (XXE) pointing at a local file.
    Xxe,
    /// A 200 declaring a Content-Length past vmha's 64 MiB cap (and streaming that much).
    OversizeDeclared,
    /// A chunked 200 streaming past vmha's 64 MiB cap without announcing a length.
    OversizeChunked,
    /// A SOAP envelope nested 400 levels deep inside the Body.
    DeepNesting,
    /// A SOAP envelope with bytes that are not UTF-8 in a text node.
    InvalidUtf8,
    /// Forward, then send the server's answer one byte per second.
    Drip,
    /// 302 to another location.
    Redirect,
    /// HTTP 500 with a SOAP fault of this vim25 type (e.g. `NotAuthenticated`), with this faultstring.
    Soap { kind: String, text: String },
    /// HTTP 500 with a SOAP fault whose faultstring quotes the whole request back (a careless server).
    Echo,
    /// 200 with a well-formed SOAP envelope whose Body holds an unexpected element.
    WrongResponse,
    /// Run this hook (in a blocking thread) and then forward as `Pass`.
    Hook(Arc<dyn Fn() + Send + Sync>),
}

impl Fault {
    pub fn soap(kind: &str) -> Fault {
        Fault::Soap {
            kind: kind.to_string(),
            text: format!("injected {kind}"),
        }
    }

    pub fn hook(f: impl Fn() + Send + Sync + 'static) -> Fault {
        Fault::Hook(Arc::new(f))
    }

    pub fn name(&self) -> String {
        match self {
            Fault::Pass => "pass".into(),
            Fault::Refuse => "refuse".into(),
            Fault::Close => "close".into(),
            Fault::Reset => "reset".into(),
            Fault::Stall => "stall".into(),
            Fault::HeadersOnly => "headers-only".into(),
            Fault::Html503 => "html-503".into(),
            Fault::Html200 => "html-200".into(),
            Fault::Truncate => "truncate".into(),
            Fault::EntityBomb => "entity-bomb".into(),
            Fault::Xxe => "xxe".into(),
            Fault::OversizeDeclared => "oversize-declared".into(),
            Fault::OversizeChunked => "oversize-chunked".into(),
            Fault::DeepNesting => "deep-nesting".into(),
            Fault::InvalidUtf8 => "invalid-utf8".into(),
            Fault::Drip => "drip".into(),
            Fault::Redirect => "redirect".into(),
            Fault::Soap { kind, .. } => format!("soap-fault {kind}"),
            Fault::Echo => "echo-fault".into(),
            Fault::WrongResponse => "wrong-response".into(),
            Fault::Hook(_) => "hook".into(),
        }
    }
}

/// "For calls `nth ..= nth + times - 1` of `method`, do `fault`". `method` "*" matches every method
/// (counted over all calls).
#[derive(Clone)]
pub struct Rule {
    pub method: String,
    pub nth: u64,
    pub times: u64,
    pub fault: Fault,
}

impl Rule {
    pub fn new(method: &str, nth: u64, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            nth,
            times: 1,
            fault,
        }
    }

    /// The same fault for `times` consecutive calls.
    pub fn times(mut self, times: u64) -> Rule {
        self.times = times;
        self
    }
}

/// vmha refuses bodies larger than this.
pub const VMHA_BODY_CAP: u64 = 64 * 1024 * 1024;

const MAX_HEAD: usize = 64 * 1024;
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

struct Upstream {
    url: String,
    client: reqwest::Client,
}

#[derive(Default)]
struct Counters {
    by_method: HashMap<String, u64>,
    total: u64,
    /// TCP connections accepted.
    connections: u64,
    /// Every call in order: (method, nth of that method, fault applied).
    log: Vec<(String, u64, String)>,
    /// When the first rule fired.
    first_fault: Option<Instant>,
}

struct Shared {
    upstream: Mutex<Upstream>,
    rules: Mutex<Vec<Rule>>,
    counters: Mutex<Counters>,
}

/// A running proxy. Dropping it stops it (stalled connections included).
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT/sdk`: give this to vmha.
    pub url: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn upstream_client(ca_file: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("read {}: {e}", ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        // Long enough for any frozen-simulator case; the proxy itself must never be what times out first.
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()
        .expect("upstream client")
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream_url` (the simulator's `https://.../sdk`), trusting `ca_file`.
    pub fn start(upstream_url: &str, ca_file: &Path, rules: Vec<Rule>) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let client = runtime.block_on(async { upstream_client(ca_file) });
        let shared = Arc::new(Shared {
            upstream: Mutex::new(Upstream {
                url: upstream_url.to_string(),
                client,
            }),
            rules: Mutex::new(rules),
            counters: Mutex::new(Counters::default()),
        });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accept_shared.counters.lock().unwrap().connections += 1;
                let s = accept_shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, s).await;
                });
            }
        });
        FaultProxy {
            url: format!("http://127.0.0.1:{port}/sdk"),
            shared,
            runtime: Some(runtime),
        }
    }

    /// Points the proxy at another simulator (after a restart).
    pub fn retarget(&self, upstream_url: &str, ca_file: &Path) {
        let client = self
            .runtime
            .as_ref()
            .expect("runtime")
            .block_on(async { upstream_client(ca_file) });
        let mut up = self.shared.upstream.lock().unwrap();
        up.url = upstream_url.to_string();
        up.client = client;
    }

    /// A handle for hooks that run inside the proxy (e.g. to retarget after a restart).
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: self.shared.clone(),
        }
    }

    pub fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Calls of `method` seen so far.
    pub fn calls(&self, method: &str) -> u64 {
        self.shared
            .counters
            .lock()
            .unwrap()
            .by_method
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections vmha opened to the proxy so far.
    pub fn connections(&self) -> u64 {
        self.shared.counters.lock().unwrap().connections
    }

    /// When the first rule fired (None: no rule fired).
    pub fn first_fault(&self) -> Option<Instant> {
        self.shared.counters.lock().unwrap().first_fault
    }

    /// Every call in order, `Method#n` with the fault applied when not pass-through.
    pub fn trace(&self) -> String {
        let c = self.shared.counters.lock().unwrap();
        c.log
            .iter()
            .map(|(m, n, f)| {
                if f == "pass" {
                    format!("{m}#{n}")
                } else {
                    format!("{m}#{n}[{f}]")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a hook may do to its proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Points the proxy at another simulator. Call from a hook (inside the proxy's runtime).
    pub fn retarget(&self, upstream_url: &str, ca_file: &Path) {
        let client = upstream_client(ca_file);
        let mut up = self.shared.upstream.lock().unwrap();
        up.url = upstream_url.to_string();
        up.client = client;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Local name of the first element inside the SOAP Body ("?" when there is none).
pub fn soap_method(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(body_at) = text.find(":Body>").or_else(|| text.find("<Body>")) else {
        return "?".into();
    };
    let rest = &text[body_at..];
    let rest = &rest[rest.find('>').map_or(0, |i| i + 1)..];
    let Some(open) = rest.find('<') else {
        return "?".into();
    };
    let name: String = rest[open + 1..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
        .collect();
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => name,
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one request; None at a clean end of the connection.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut req = Request { head, body: Vec::new() };
    let len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if len > MAX_REQUEST_BODY {
        return Err(std::io::Error::other("request body too large"));
    }
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("request cut"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = buf.drain(..len).collect();
    Ok(Some(req))
}

/// The server's answer, whole.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn head(&self, content_length: Option<usize>) -> Vec<u8> {
        let mut h = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = content_length {
            h.push_str(&format!("Content-Length: {n}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    fn full(&self) -> Vec<u8> {
        let mut out = self.head(Some(self.body.len()));
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn synthetic(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
    Answer {
        status,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.into(),
    }
}

async fn forward(shared: &Shared, req: &Request) -> Option<Answer> {
    let (url, client) = {
        let up = shared.upstream.lock().unwrap();
        (up.url.clone(), up.client.clone())
    };
    let mut rb = client.post(url).body(req.body.clone());
    for h in ["Content-Type", "SOAPAction", "Cookie"] {
        if let Some(v) = req.header(h) {
            rb = rb.header(h, v);
        }
    }
    let resp = rb.send().await.ok()?;
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    for (k, v) in resp.headers() {
        let k = k.as_str();
        if k.eq_ignore_ascii_case("content-type") || k.eq_ignore_ascii_case("set-cookie") {
            headers.push((k.to_string(), v.to_str().unwrap_or("").to_string()));
        }
    }
    let body = resp.bytes().await.ok()?.to_vec();
    Some(Answer { status, headers, body })
}

const ENV_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>";
const ENV_TAIL: &str = "</soapenv:Body></soapenv:Envelope>";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn soap_fault_body(kind: &str, text: &str) -> String {
    format!(
        "{ENV_HEAD}<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{}</faultstring><detail><{kind}Fault xmlns=\"urn:vim25\" xsi:type=\"{kind}\"></{kind}Fault></detail></soapenv:Fault>{ENV_TAIL}",
        xml_escape(text)
    )
}

fn html_page(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1><p>nginx</p></body></html>\n"
    )
}

fn entity_bomb(method: &str) -> String {
    let mut dtd = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    let mut prev = "lol".to_string();
    for i in 1..=9 {
        let name = format!("lol{i}");
        dtd.push_str(&format!("<!ENTITY {name} \"{}\">\n", format!("&{prev};").repeat(10)));
        prev = name;
    }
    dtd.push_str("]>\n");
    format!(
        "{dtd}<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><{method}Response xmlns=\"urn:vim25\"><returnval>&{prev};</returnval></{method}Response>{ENV_TAIL}"
    )
}

fn xxe(method: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><{method}Response xmlns=\"urn:vim25\"><returnval>&xxe;</returnval></{method}Response>{ENV_TAIL}"
    )
}

fn deep_nesting(method: &str) -> String {
    let depth = 400;
    format!(
        "{ENV_HEAD}<{method}Response xmlns=\"urn:vim25\">{}{}</{method}Response>{ENV_TAIL}",
        "<returnval>".repeat(depth),
        "</returnval>".repeat(depth)
    )
}

fn invalid_utf8(method: &str) -> Vec<u8> {
    let mut b = format!("{ENV_HEAD}<{method}Response xmlns=\"urn:vim25\"><returnval>bad ").into_bytes();
    b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0x80]);
    b.extend_from_slice(format!("</returnval></{method}Response>{ENV_TAIL}").as_bytes());
    b
}

fn wrong_response() -> String {
    format!("{ENV_HEAD}<UnexpectedThing xmlns=\"urn:vim25\"><returnval>?</returnval></UnexpectedThing>{ENV_TAIL}")
}

fn matching_fault(shared: &Shared, method: &str) -> (u64, Fault) {
    let mut c = shared.counters.lock().unwrap();
    let n = {
        let e = c.by_method.entry(method.to_string()).or_insert(0);
        *e += 1;
        *e
    };
    c.total += 1;
    let total = c.total;
    let rules = shared.rules.lock().unwrap();
    let fault = rules
        .iter()
        .find(|r| {
            let k = if r.method == "*" {
                total
            } else if r.method == method {
                n
            } else {
                return false;
            };
            k >= r.nth && k < r.nth + r.times
        })
        .map(|r| r.fault.clone())
        .unwrap_or(Fault::Pass);
    let name = fault.name();
    if !matches!(fault, Fault::Pass) && c.first_fault.is_none() {
        c.first_fault = Some(Instant::now());
    }
    c.log.push((method.to_string(), n, name));
    (n, fault)
}

/// Streams `total` bytes of filler text, either with a declared length or chunked.
async fn stream_oversize(stream: &mut TcpStream, method: &str, chunked: bool) -> std::io::Result<()> {
    let total = VMHA_BODY_CAP + 4 * 1024 * 1024;
    let open = format!("{ENV_HEAD}<{method}Response xmlns=\"urn:vim25\"><returnval>");
    let head = if chunked {
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {total}\r\n\r\n")
    };
    stream.write_all(head.as_bytes()).await?;
    let filler = vec![b'a'; 64 * 1024];
    let mut sent = 0u64;
    let mut first = true;
    while sent < total {
        let piece: &[u8] = if first { open.as_bytes() } else { &filler };
        first = false;
        let piece = &piece[..piece.len().min((total - sent) as usize)];
        if chunked {
            stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
            stream.write_all(piece).await?;
            stream.write_all(b"\r\n").await?;
        } else {
            stream.write_all(piece).await?;
        }
        sent += piece.len() as u64;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

async fn stall_forever() {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await? {
        let method = soap_method(&req.body);
        let (_, mut fault) = matching_fault(&shared, &method);
        if let Fault::Hook(h) = &fault {
            let h = h.clone();
            let _ = tokio::task::spawn_blocking(move || h()).await;
            fault = Fault::Pass;
        }
        // Faults the server never sees.
        let reply = match &fault {
            Fault::Refuse => return Ok(()),
            Fault::Html503 => Some(synthetic(
                503,
                "text/html",
                html_page("503 Service Temporarily Unavailable"),
            )),
            Fault::Html200 => Some(synthetic(200, "text/html", html_page("Welcome"))),
            Fault::EntityBomb => Some(synthetic(200, "text/xml; charset=utf-8", entity_bomb(&method))),
            Fault::Xxe => Some(synthetic(200, "text/xml; charset=utf-8", xxe(&method))),
            Fault::DeepNesting => Some(synthetic(200, "text/xml; charset=utf-8", deep_nesting(&method))),
            Fault::InvalidUtf8 => Some(synthetic(200, "text/xml; charset=utf-8", invalid_utf8(&method))),
            Fault::WrongResponse => Some(synthetic(200, "text/xml; charset=utf-8", wrong_response())),
            Fault::Soap { kind, text } => Some(synthetic(500, "text/xml; charset=utf-8", soap_fault_body(kind, text))),
            Fault::Echo => {
                let quoted = format!("Request rejected: {}", String::from_utf8_lossy(&req.body));
                Some(synthetic(
                    500,
                    "text/xml; charset=utf-8",
                    soap_fault_body("SystemError", &quoted),
                ))
            }
            Fault::Redirect => {
                let mut a = synthetic(302, "text/html", Vec::new());
                a.headers.push(("Location".into(), "https://127.0.0.1:9/ui/".into()));
                Some(a)
            }
            Fault::OversizeDeclared | Fault::OversizeChunked => {
                let chunked = matches!(fault, Fault::OversizeChunked);
                stream_oversize(&mut stream, &method, chunked).await?;
                continue;
            }
            _ => None,
        };
        if let Some(a) = reply {
            stream.write_all(&a.full()).await?;
            continue;
        }
        // The server sees the call; the network damages the answer.
        let Some(answer) = forward(&shared, &req).await else {
            // The simulator is gone: so is our answer.
            return Ok(());
        };
        match fault {
            Fault::Close => return Ok(()),
            Fault::Stall => {
                stall_forever().await;
            }
            Fault::HeadersOnly => {
                stream.write_all(&answer.head(Some(answer.body.len()))).await?;
                stall_forever().await;
            }
            Fault::Truncate => {
                stream.write_all(&answer.head(Some(answer.body.len()))).await?;
                stream.write_all(&answer.body[..answer.body.len() / 2]).await?;
                stream.flush().await?;
                return Ok(());
            }
            Fault::Reset => {
                stream.write_all(&answer.head(Some(answer.body.len()))).await?;
                stream.write_all(&answer.body[..answer.body.len() / 2]).await?;
                stream.flush().await?;
                // Give the bytes time to leave before the RST overtakes them.
                tokio::time::sleep(Duration::from_millis(50)).await;
                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                drop(stream);
                return Ok(());
            }
            Fault::Drip => {
                for b in answer.full() {
                    stream.write_all(&[b]).await?;
                    stream.flush().await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            _ => stream.write_all(&answer.full()).await?,
        }
    }
    Ok(())
}
