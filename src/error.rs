//! The top-level error and, in one place, the exit code of every outcome.

use crate::client::VimError;
use crate::config::ConfigError;
use crate::soap::client::TlsFailure;
use crate::soap::{FaultKind, SoapError};

/// Documented exit codes (see `vmha --help` and the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    LoginRefused = 3,
    CannotConnect = 4,
    RunningElsewhere = 5,
    NotRegistered = 10,
    NotPoweredOn = 11,
    HeartbeatRed = 12,
    QuestionPending = 13,
    Migrated = 14,
    HostNotConnected = 15,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Failures of the commands themselves (above the client layer).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(
        "{vm} is running on {host}; start on {wanted} refused, nothing changed. To move it, use: vmha migrate --to-host {wanted}"
    )]
    RunningElsewhere { vm: String, host: String, wanted: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error(
        "question pending on {vm}: \"{text}\" (id {id}; choices: {choices}). Answer it with --answer {message}=CHOICE, or in the vSphere client"
    )]
    Question {
        vm: String,
        id: String,
        message: String,
        text: String,
        choices: String,
    },
    #[error("interrupted by {0}; the session was logged out")]
    Interrupted(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Vim(#[from] VimError),
    #[error(transparent)]
    Op(#[from] OpError),
}

impl From<SoapError> for Error {
    fn from(e: SoapError) -> Self {
        Error::Vim(VimError::Soap(e))
    }
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Usage,
            Error::Op(OpError::Usage(_)) => ExitCode::Usage,
            Error::Op(OpError::RunningElsewhere { .. }) => ExitCode::RunningElsewhere,
            Error::Op(_) => ExitCode::Failure,
            Error::Vim(v) => match v {
                VimError::LoginRefused { .. } => ExitCode::LoginRefused,
                VimError::Soap(
                    SoapError::Connect { .. }
                    | SoapError::ConnectTimeout { .. }
                    | SoapError::ConnectionLost { .. }
                    | SoapError::Tls { .. }
                    | SoapError::PinMismatch { .. }
                    | SoapError::Timeout { .. }
                    | SoapError::Redirect { .. }
                    | SoapError::NotSdk { .. },
                ) => ExitCode::CannotConnect,
                // A bad --ca-file is a configuration error, found before any connection.
                VimError::Soap(SoapError::TlsSetup(_)) => ExitCode::Usage,
                VimError::Soap(SoapError::Fault { fault, .. }) if fault.kind == FaultKind::InvalidLogin => {
                    ExitCode::LoginRefused
                }
                VimError::Inventory(_) => ExitCode::Usage,
                _ => ExitCode::Failure,
            },
        }
    }

    /// What to do about it, printed under the message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Vim(VimError::LoginRefused { .. }) => {
                Some("check --user and the password (VMHA_PASSWORD, --password-file or --password-stdin)")
            }
            Error::Vim(VimError::Soap(SoapError::Tls { reason, .. })) => Some(match reason {
                TlsFailure::Untrusted | TlsFailure::Other(_) => {
                    "the server's certificate is not trusted: add its CA (or the server's own certificate) with --ca-file, or pin it with --thumbprint SHA256 (shown by: openssl s_client -connect HOST:443 | openssl x509 -noout -fingerprint -sha256)"
                }
                TlsFailure::Expired { .. } | TlsFailure::NotYetValid { .. } => {
                    "renew the server's certificate (or fix the clock that is wrong), or pin it with --thumbprint SHA256"
                }
                TlsFailure::WrongName { .. } => {
                    "use a host name in --url that the certificate names, or pin the certificate with --thumbprint SHA256"
                }
                TlsFailure::WeakKey { .. } => {
                    "pin this certificate with --thumbprint and the SHA-256 shown, after checking it against the host's console or the vSphere client; or give the host a 2048-bit certificate"
                }
                TlsFailure::LegacyProtocol => {
                    "enable TLS 1.2 on the server (ESXi 5.5 U3 / 6.0 U1 or later support it), or manage it with a tool that still speaks TLS 1.0"
                }
                TlsFailure::PlainHttp => "give the server's HTTPS port in --url (usually 443)",
            }),
            Error::Vim(VimError::Soap(SoapError::PinMismatch { .. })) => Some(
                "the server presents another certificate than --thumbprint names: if it was renewed on purpose, pin the new SHA-256 shown; otherwise something sits between vmha and the server",
            ),
            Error::Vim(VimError::Soap(SoapError::Connect { .. } | SoapError::ConnectTimeout { .. })) => {
                Some("check --url, the network path and that the server is up")
            }
            Error::Vim(VimError::Soap(SoapError::ConnectionLost { .. })) => {
                Some("the server (or something on the path) closed the connection mid-answer: check it is up")
            }
            Error::Vim(VimError::Soap(SoapError::Timeout { .. })) => {
                Some("the server did not answer in time: check it is up, or raise --request-timeout")
            }
            Error::Vim(VimError::Soap(SoapError::TlsSetup(_))) => {
                Some("give --ca-file a PEM file with at least one -----BEGIN CERTIFICATE----- block")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Fault;

    #[test]
    fn codes() {
        let login = Error::Vim(VimError::LoginRefused {
            user: "u".into(),
            message: "m".into(),
        });
        assert_eq!(login.exit_code(), ExitCode::LoginRefused);
        let tls = Error::from(SoapError::Tls {
            url: "u".into(),
            reason: TlsFailure::Untrusted,
            source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        });
        assert_eq!(tls.exit_code().code(), 4);
        let fault = Error::from(SoapError::Fault {
            method: "PowerOnVM_Task".into(),
            fault: Fault {
                kind: FaultKind::InvalidPowerState,
                type_name: "InvalidPowerState".into(),
                message: String::new(),
                detail_text: None,
            },
        });
        assert_eq!(fault.exit_code().code(), 1);
        assert_eq!(Error::Config(ConfigError::Invalid("x".into())).exit_code().code(), 2);
        let busy = Error::Op(OpError::RunningElsewhere {
            vm: "a".into(),
            host: "b".into(),
            wanted: "c".into(),
        });
        assert_eq!(busy.exit_code().code(), 5);
    }
}
