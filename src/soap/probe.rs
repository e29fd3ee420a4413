//! Reads a server's TLS certificate without trusting it, for `vmha thumbprint`: the SHA-256 digest that
//! `--thumbprint` takes. Nothing is sent over the connection; the printed value must be checked out of
//! band, since no one vouched for it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

use super::client::{ConnectStage, SoapError};
use super::tls::{TlsPolicy, client_config};

/// `https://host[:port]/path` to `(host, port)`.
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 443,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), 443)),
    }
}

/// The SHA-256 digest of the certificate the server at `url` presents.
pub async fn server_certificate_sha256(url: &str, timeout: Duration) -> Result<[u8; 32], SoapError> {
    let url = url.to_string();
    let task_url = url.clone();
    tokio::task::spawn_blocking(move || handshake(&task_url, timeout))
        .await
        .map_err(|e| SoapError::Connect {
            url: url.clone(),
            source: std::io::Error::other(e),
        })?
}

fn handshake(url: &str, timeout: Duration) -> Result<[u8; 32], SoapError> {
    let fail = |cause: String| SoapError::Connect {
        url: url.to_string(),
        source: std::io::Error::other(cause),
    };
    let io_fail = |stage: ConnectStage| {
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => SoapError::ConnectTimeout {
                url: url.to_string(),
                secs: timeout.as_secs(),
                stage,
            },
            _ => SoapError::Connect {
                url: url.to_string(),
                source: e,
            },
        }
    };
    let (host, port) = host_port(url).ok_or_else(|| fail("thumbprint needs an https:// URL".into()))?;
    // The insecure policy: nothing is verified, and nothing but the handshake is sent.
    let config = client_config(&TlsPolicy::Insecure).map_err(|e| fail(e.to_string()))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| fail(e.to_string()))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| fail(e.to_string()))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(io_fail(ConnectStage::Tcp))?
        .next()
        .ok_or_else(|| fail(format!("{host} has no address")))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(io_fail(ConnectStage::Tcp))?;
    let handshaking = io_fail(ConnectStage::TlsHandshake);
    sock.set_read_timeout(Some(timeout)).map_err(handshaking)?;
    sock.set_write_timeout(Some(timeout)).map_err(handshaking)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(handshaking)?;
    }
    // Close politely; the certificate is all this connection was for.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    let _ = sock.read(&mut [0u8; 1]);
    let der = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| fail("the server sent no certificate".into()))?;
    Ok(Sha256::digest(&der).into())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_and_port_from_the_url() {
        assert_eq!(host_port("https://vc1/sdk"), Some(("vc1".into(), 443)));
        assert_eq!(host_port("https://vc1:8443/sdk"), Some(("vc1".into(), 8443)));
        assert_eq!(host_port("https://[::1]:9/sdk"), Some(("::1".into(), 9)));
        assert_eq!(host_port("http://vc1/sdk"), None);
    }
}
