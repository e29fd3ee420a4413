//! The top-level error and, in one place, the exit code of every outcome: decided from error types and
//! the monitor's verdict, never from message text.

use crate::client::VimError;
use crate::config::ConfigError;
use crate::ops::OpError;
use crate::ops::monitor::MonitorFailure;
use crate::ops::privileges::Report;
use crate::soap::client::{ConnectStage, TlsFailure};
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

/// `check --privileges`: 0 when the user holds every privilege checked, 1 when any is missing.
impl From<&Report> for ExitCode {
    fn from(r: &Report) -> ExitCode {
        if r.all_granted() {
            ExitCode::Ok
        } else {
            ExitCode::Failure
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
    /// SIGINT or SIGTERM ended the command; `session` says what became of its session.
    #[error("interrupted by {signal}; {session}")]
    Interrupted { signal: &'static str, session: SessionEnd },
    /// Writing the command's output failed (the man page renderer).
    #[error("cannot write the output: {0}")]
    Output(String),
    /// vCenter could not be reached, and acting through this node's host failed too. The host's error
    /// decides the exit code: it is what was last tried.
    #[error("vCenter could not be reached ({vcenter}); through host {host}: {cause}")]
    Fallback {
        host: String,
        vcenter: String,
        #[source]
        cause: Box<Error>,
    },
    /// The host refused vmha's direct login: wrong host user or password, or lockdown mode.
    #[error("host {host} refused the login of '{user}'{}{}", lockdown_note(.lockdown), refused_note(.refused_ago))]
    HostLoginRefused {
        host: String,
        user: String,
        /// The host's lockdown mode as vCenter last reported it.
        lockdown: Option<String>,
        /// Not tried now: the host refused this password this many seconds ago.
        refused_ago: Option<u64>,
        #[source]
        cause: Option<VimError>,
    },
}

fn refused_note(ago: &Option<u64>) -> String {
    match ago {
        Some(s) => format!(
            " {s} s ago; not tried again with the same password for 15 minutes, so that ESXi does not lock the account (change the password file, or wait)"
        ),
        None => String::new(),
    }
}

fn lockdown_note(mode: &Option<String>) -> String {
    match mode.as_deref() {
        Some(m) if m != "lockdownDisabled" => format!(
            ": the host is in lockdown mode ({m}), which refuses direct logins of every user not on its Exception Users list"
        ),
        _ => String::new(),
    }
}

/// What became of the session when a signal ended the command: the message must say what really happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The signal came while connecting or logging in.
    NotOpen,
    /// Logged out, and the server confirmed it.
    LoggedOut,
    /// The Logout was sent but not confirmed: the server ends the session when it expires.
    LogoutUnconfirmed,
    /// The session cache's session: kept for the next command (`vmha logout` ends it).
    KeptForReuse,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionEnd::NotOpen => "no session was open yet",
            SessionEnd::LoggedOut => "the session was logged out",
            SessionEnd::LogoutUnconfirmed => {
                "the Logout was not confirmed; the server ends the session when it expires"
            }
            SessionEnd::KeptForReuse => "the cached session was kept for reuse (vmha logout ends it)",
        })
    }
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
        | OpError::PrivilegeCheckUnsupported { .. }
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
            Error::Interrupted { .. } | Error::Output(_) => ExitCode::Failure,
            Error::Fallback { cause, .. } => cause.exit_code(),
            Error::HostLoginRefused { .. } => ExitCode::LoginRefused,
        }
    }

    /// vCenter (or any server) could not be reached or did not answer: down, restarting, frozen, or
    /// answering 5xx. Not a refusal: a wrong password or certificate is no reason to go around vCenter.
    pub fn server_unreachable(&self) -> bool {
        match self.vim() {
            Some(VimError::Soap(s)) => {
                s.is_connection_loss() || matches!(s, SoapError::Http { status, .. } if *status >= 500)
            }
            Some(VimError::ServerLost { .. }) => true,
            _ => false,
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
        match self {
            Error::Fallback { cause, .. } => return cause.hint(),
            Error::HostLoginRefused { lockdown: Some(m), .. } if m != "lockdownDisabled" => {
                return Some(
                    "add the host user to the host's Exception Users list (vSphere Client: host > Configure > Security Profile > Lockdown Mode), or disable lockdown mode; vmha does not retry a refused login, so the ESXi account is not locked",
                );
            }
            Error::HostLoginRefused { .. } => {
                return Some(
                    "check --host-user and --host-password-file (a local ESXi user), and whether the host is in lockdown mode (then add the user to its Exception Users)",
                );
            }
            _ => {}
        }
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
            VimError::Soap(SoapError::ConnectTimeout {
                stage: ConnectStage::TlsHandshake | ConnectStage::Http,
                ..
            }) => Some(
                "something accepted the connection but did not answer: check that --url names the server's HTTPS port (443) and that the server is not overloaded or hung",
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
