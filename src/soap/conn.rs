//! One HTTP/1.1 connection per process: TCP, then TLS (plain HTTP only on loopback, for tests), kept and reused
//! for every call.
//!
//! A pooling client (reqwest/hyper-util) opens a second connection whenever a request starts before the previous
//! connection is back in its pool, which happens between two sequential calls more often than not: a one-shot
//! `status` opened 1 to 3 connections. Here the idle connection is taken out of a one-slot holder for a call and
//! put back once its answer has been read in full, so sequential calls always share it. Calls that really run at
//! the same time get a connection of their own; a call dropped half-way drops its connection with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

pub type Sender = SendRequest<Full<Bytes>>;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectFailure {
    /// TCP connect, or the TLS handshake (whose rustls error rides inside the `io::Error`).
    Io(std::io::Error),
    /// Not connected within the connect timeout; `stage` is where it stalled.
    Timeout { stage: ConnectStage },
    /// The HTTP/1 layer refused to start on the stream.
    Http(hyper::Error),
}

/// How far a connect got before the connect timeout: a server that accepted the TCP connection and never
/// answered is not one that could not be reached, and the message must say which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectStage {
    /// No TCP connection (nothing answered the SYN, or the name did not resolve in time).
    Tcp,
    /// Connected; the server did not answer the TLS handshake.
    TlsHandshake,
    /// Connected (and TLS up); the HTTP layer did not start.
    Http,
}

/// Where to connect and how.
pub struct Endpoint {
    host: String,
    port: u16,
    /// `host[:port]` as the URL gives it, for the Host header.
    pub authority: String,
    /// The path the SDK lives at (`/sdk`).
    pub path: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Endpoint {
    pub fn new(url: &str, tls: ClientConfig) -> Result<Endpoint, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(format!("{url}: no host")),
        };
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("{url}: no port"))?;
        let authority = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or(&host)),
            None => parsed.host_str().unwrap_or(&host).to_string(),
        };
        let tls = match parsed.scheme() {
            "https" => {
                let name = ServerName::try_from(host.clone()).map_err(|e| format!("{url}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(tls)), name))
            }
            "http" => None,
            other => return Err(format!("{url}: unknown scheme {other}")),
        };
        Ok(Endpoint {
            host,
            port,
            authority,
            path: parsed.path().to_string(),
            tls,
        })
    }
}

/// Holds at most one idle connection, and counts the connections made.
pub struct Connections {
    endpoint: Endpoint,
    connect_timeout: Duration,
    idle: Mutex<Option<Sender>>,
    opened: AtomicU64,
    /// SHA-256 of the certificate the server presented on the latest TLS connection: a cached session
    /// cookie is only sent to the server it was issued by.
    peer_sha256: Mutex<Option<[u8; 32]>>,
}

impl Connections {
    pub fn new(endpoint: Endpoint, connect_timeout: Duration) -> Connections {
        Connections {
            endpoint,
            connect_timeout,
            idle: Mutex::new(None),
            opened: AtomicU64::new(0),
            peer_sha256: Mutex::new(None),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// TCP(+TLS) connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// SHA-256 of the latest TLS connection's server certificate (`None` before one, and on plain HTTP).
    pub fn peer_sha256(&self) -> Option<[u8; 32]> {
        self.peer_sha256.lock().ok().and_then(|p| *p)
    }

    /// The idle connection if there is one that is still open, else a new one.
    pub async fn take(&self) -> Result<Sender, ConnectFailure> {
        let idle = self.idle.lock().ok().and_then(|mut s| s.take());
        if let Some(mut sender) = idle {
            // Waits for the previous answer's end to reach the connection; fails if the server closed it.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        self.connect().await
    }

    /// Gives back a connection whose answer was read in full.
    pub fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut slot) = self.idle.lock()
            && slot.is_none()
        {
            *slot = Some(sender);
        }
    }

    /// Forgets the idle connection (after the server's session ended, say); it closes when dropped.
    pub fn close_idle(&self) {
        if let Ok(mut slot) = self.idle.lock() {
            slot.take();
        }
    }

    pub async fn connect(&self) -> Result<Sender, ConnectFailure> {
        let ep = &self.endpoint;
        let stage = std::sync::Mutex::new(ConnectStage::Tcp);
        let reached = |s: ConnectStage| {
            if let Ok(mut g) = stage.lock() {
                *g = s;
            }
        };
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
                .await
                .map_err(ConnectFailure::Io)?;
            reached(if ep.tls.is_some() {
                ConnectStage::TlsHandshake
            } else {
                ConnectStage::Http
            });
            // SOAP calls are small request/answer pairs: do not hold them back.
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = match &ep.tls {
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await.map_err(ConnectFailure::Io)?;
                    let digest = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| <[u8; 32]>::from(Sha256::digest(leaf.as_ref())));
                    if let Ok(mut p) = self.peer_sha256.lock() {
                        *p = digest;
                    }
                    reached(ConnectStage::Http);
                    Box::new(tls)
                }
                None => Box::new(tcp),
            };
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(ConnectFailure::Http)?;
            // Drives the connection; ends when every sender is gone or the server closes it.
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
            Ok(sender)
        };
        let sender = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r?,
            Err(_) => {
                let stage = stage.lock().map_or(ConnectStage::Tcp, |g| *g);
                return Err(ConnectFailure::Timeout { stage });
            }
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(host = %ep.host, port = ep.port, "connected");
        Ok(sender)
    }
}
