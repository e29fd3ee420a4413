//! The top-level error and, in one place, the exit code of every outcome: decided from error types and
//! the monitor's verdict, never from message text.

use crate::client::VimError;
use crate::config::ConfigError;
use crate::ops::OpError;
use crate::ops::monitor::MonitorFailure;
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

impl From<MonitorFailure> for ExitCode {
    fn from(f: MonitorFailure) -> ExitCode {
        match f {
            MonitorFailure::NotRegistered => ExitCode::NotRegistered,
            MonitorFailure::NotPoweredOn => ExitCode::NotPoweredOn,
            MonitorFailure::HeartbeatRed => ExitCode::HeartbeatRed,
            MonitorFailure::QuestionPending => ExitCode::QuestionPending,
            MonitorFailure::Migrated => ExitCode::Migrated,
            MonitorFailure::HostNotConnected => ExitCode::HostNotConnected,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings that are wrong before anything connects.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// Connecting or logging in failed.
    #[error(transparent)]
    Vim(#[from] VimError),
    /// A command failed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// SIGINT or SIGTERM ended the command; the session was logged out.
    #[error("interrupted by {0}; the session was logged out")]
    Interrupted(&'static str),
    /// Writing the command's output failed (the man page renderer).
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl From<SoapError> for Error {
    fn from(e: SoapError) -> Self {
        Error::Vim(VimError::Soap(e))
    }
}

fn vim_code(v: &VimError) -> ExitCode {
    match v {
        VimError::LoginRefused { .. } => ExitCode::LoginRefused,
        VimError::Soap(SoapError::Fault { fault, .. }) if fault.kind == FaultKind::InvalidLogin => {
            ExitCode::LoginRefused
        }
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
        VimError::ServerLost { .. } => ExitCode::CannotConnect,
        VimError::UnknownDatacenter { .. } | VimError::UnknownVolume { .. } | VimError::AmbiguousName { .. } => {
            ExitCode::Usage
        }
        VimError::Soap(_)
        | VimError::TaskFailed { .. }
        | VimError::Timeout { .. }
        | VimError::Gone(_)
        | VimError::Decode { .. }
        | VimError::MissingManager(_)
        | VimError::NoTaskResult(_) => ExitCode::Failure,
    }
}

fn op_code(o: &OpError) -> ExitCode {
    match o {
        OpError::Vim(v) => vim_code(v),
        OpError::RunningElsewhere { .. } => ExitCode::RunningElsewhere,
        OpError::UnknownHost { .. }
        | OpError::HostRequired
        | OpError::HostAmbiguous
        | OpError::NeedVmxToRegister { .. }
        | OpError::MigrateNeedsVcenter
        | OpError::BadAnswer(_) => ExitCode::Usage,
        OpError::HostUnavailable { .. }
        | OpError::RegisteredElsewhere { .. }
        | OpError::TakeoverNeedsVmx { .. }
        | OpError::HostPlacement { .. }
        | OpError::FilesLocked { .. }
        | OpError::PoweredOffAgain
        | OpError::CannotSeeVm { .. }
        | OpError::NotRegistered { .. }
        | OpError::Question { .. }
        | OpError::PlugNotFound { .. }
        | OpError::StateUnseen { .. }
        | OpError::PowerNotConfirmed { .. }
        | OpError::NotInMaintenance { .. } => ExitCode::Failure,
    }
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Usage,
            Error::Vim(v) => vim_code(v),
            Error::Op(o) => op_code(o),
            Error::Interrupted(_) | Error::Output(_) => ExitCode::Failure,
        }
    }

    fn vim(&self) -> Option<&VimError> {
        match self {
            Error::Vim(v) | Error::Op(OpError::Vim(v)) => Some(v),
            _ => None,
        }
    }

    /// What to do about it, printed under the message.
    pub fn hint(&self) -> Option<&'static str> {
        match self.vim()? {
            VimError::LoginRefused { .. } => {
                Some("check --user and the password (VMHA_PASSWORD, --password-file or --password-stdin)")
            }
            VimError::Soap(SoapError::Tls { reason, .. }) => Some(match reason {
                TlsFailure::Untrusted | TlsFailure::Other(_) => {
                    "the server's certificate is not trusted: add its CA (or the server's own certificate) with --ca-file, or pin it with --thumbprint SHA256 (vmha thumbprint shows it; check it out of band)"
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
            VimError::Soap(SoapError::PinMismatch { .. }) => Some(
                "the server presents another certificate than --thumbprint names: if it was renewed on purpose, pin the new SHA-256 shown; otherwise something sits between vmha and the server",
            ),
            VimError::Soap(SoapError::Connect { .. } | SoapError::ConnectTimeout { .. }) => {
                Some("check --url, the network path and that the server is up")
            }
            VimError::Soap(SoapError::ConnectionLost { .. }) => {
                Some("the server (or something on the path) closed the connection mid-answer: check it is up")
            }
            VimError::Soap(SoapError::Timeout { .. }) => {
                Some("the server did not answer in time: check it is up, or raise --request-timeout")
            }
            VimError::Soap(SoapError::TlsSetup(_)) => {
                Some("give --ca-file a PEM file with at least one -----BEGIN CERTIFICATE----- block")
            }
            VimError::ServerLost { .. } => {
                Some("the server stopped answering: check that it is up and reachable from this node")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Fault;
    use crate::vim::MoRef;

    fn fault(kind: FaultKind, name: &str) -> Fault {
        Fault {
            kind,
            type_name: name.into(),
            message: String::new(),
            detail_text: None,
        }
    }

    #[test]
    fn login_refused_is_3() {
        let e = Error::Vim(VimError::LoginRefused {
            user: "u".into(),
            fault: fault(FaultKind::InvalidLogin, "InvalidLogin"),
        });
        assert_eq!(e.exit_code(), ExitCode::LoginRefused);
    }

    #[test]
    fn tls_rejection_is_4() {
        let e = Error::from(SoapError::Tls {
            url: "u".into(),
            reason: TlsFailure::Untrusted,
            source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        });
        assert_eq!(e.exit_code(), ExitCode::CannotConnect);
    }

    #[test]
    fn server_lost_under_watch_is_4() {
        let lost = Error::Op(OpError::Vim(VimError::ServerLost {
            url: "u".into(),
            secs: 5,
            cause: Box::new(VimError::Gone(MoRef::new("VirtualMachine", "vm-1"))),
        }));
        assert_eq!(lost.exit_code(), ExitCode::CannotConnect);
    }

    #[test]
    fn a_method_fault_is_1() {
        let e = Error::Op(OpError::Vim(VimError::from(SoapError::Fault {
            method: "PowerOnVM_Task".into(),
            fault: fault(FaultKind::InvalidPowerState, "InvalidPowerState"),
        })));
        assert_eq!(e.exit_code(), ExitCode::Failure);
    }

    #[test]
    fn configuration_is_2() {
        assert_eq!(
            Error::Config(ConfigError::Invalid("x".into())).exit_code(),
            ExitCode::Usage
        );
        assert_eq!(Error::Op(OpError::HostRequired).exit_code(), ExitCode::Usage);
    }

    #[test]
    fn running_elsewhere_is_5() {
        let busy = Error::Op(OpError::RunningElsewhere {
            vm: "a".into(),
            host: "b".into(),
            wanted: "c".into(),
        });
        assert_eq!(busy.exit_code(), ExitCode::RunningElsewhere);
    }

    #[test]
    fn monitor_failures_are_10_to_15() {
        let codes: Vec<u8> = [
            MonitorFailure::NotRegistered,
            MonitorFailure::NotPoweredOn,
            MonitorFailure::HeartbeatRed,
            MonitorFailure::QuestionPending,
            MonitorFailure::Migrated,
            MonitorFailure::HostNotConnected,
        ]
        .into_iter()
        .map(|f| ExitCode::from(f).code())
        .collect();
        assert_eq!(codes, vec![10, 11, 12, 13, 14, 15]);
    }
}
