//! Settings: flags and `VMHA_*` variables first, then the `--config` TOML file, then defaults.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::cli::{GlobalArgs, VmArgs};
use crate::client::VmSelector;
use crate::client::inventory::validate_vmx;
use crate::soap::tls::{TlsPolicy, parse_thumbprint};

pub const DEFAULT_REQUEST_TIMEOUT: u64 = 120;
pub const DEFAULT_START_WAIT: u64 = 30;
pub const DEFAULT_STOP_WAIT: u64 = 240;
pub const DEFAULT_MIGRATION_WAIT: u64 = 15;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: String },
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The `--config` file. Keys are the long option names. There is deliberately no password key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSettings {
    pub url: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub thumbprint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub request_timeout: Option<u64>,
    pub vmx: Option<String>,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub datacenter: Option<String>,
    pub host: Option<String>,
    pub start_wait: Option<u64>,
    pub stop_wait: Option<u64>,
    pub migration_wait: Option<u64>,
    pub json: Option<bool>,
    pub watch: Option<bool>,
    pub require_heartbeat: Option<bool>,
    pub keep_registered: Option<bool>,
    pub unregister: Option<bool>,
    pub answer: Option<Vec<String>>,
    pub session_dir: Option<PathBuf>,
    pub no_session_cache: Option<bool>,
}

impl FileSettings {
    pub fn load(path: &Path) -> Result<FileSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.into(),
            cause: e.to_string(),
        })?;
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("password") && !l.trim_start().starts_with("password-file"))
        {
            return Err(invalid(format!(
                "{}: a password does not belong in the config file; put it in its own file and name that with password-file",
                path.display()
            )));
        }
        toml::from_str(&text).map_err(|e| invalid(format!("{}: {}", path.display(), e.message())))
    }
}

/// How to reach and log in to the server.
#[derive(Debug)]
pub struct ConnectionSettings {
    pub url: String,
    pub user: String,
    pub password: SecretString,
    pub tls: TlsPolicy,
    pub request_timeout: Duration,
    pub record: Option<PathBuf>,
    pub record_label: String,
    /// The session cache's directory; `None` with `--no-session-cache`.
    pub session_dir: Option<PathBuf>,
    /// Warnings to print once settings are known (insecure TLS, readable password file).
    pub warnings: Vec<String>,
}

/// The virtual machine resource's settings, as CLUSTERPRO names them.
#[derive(Debug, Clone)]
pub struct ResourceSettings {
    pub vm: VmSelector,
    pub datacenter: Option<String>,
    pub host: Option<String>,
    pub start_wait: Duration,
    pub stop_wait: Duration,
    pub migration_wait: Duration,
}

/// Normalises `--url`: a bare host gets https and /sdk. Plain http is accepted only on loopback.
pub fn normalize_url(raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("--url is empty: give https://HOST/sdk or a host name"));
    }
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("https".to_string(), raw),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(invalid(format!(
            "--url '{raw}' has no usable host: give https://HOST[:PORT]/sdk"
        )));
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(']') || p.parse::<u16>().is_ok())
        .map(|(h, _)| h)
        .unwrap_or(authority);
    let host = if authority.starts_with('[') {
        authority.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host
    };
    match scheme.as_str() {
        "https" => {}
        "http" if matches!(host, "127.0.0.1" | "localhost" | "::1") => {}
        "http" => {
            return Err(invalid(format!(
                "--url '{raw}' uses plain http, which would send the password in clear: use https"
            )));
        }
        other => {
            return Err(invalid(format!("--url '{raw}': unknown scheme '{other}', use https")));
        }
    }
    let port = if authority.starts_with('[') {
        authority.rsplit_once("]:").map(|(_, p)| p)
    } else {
        authority.rsplit_once(':').map(|(_, p)| p)
    };
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(1..))
    {
        return Err(invalid(format!(
            "--url '{raw}': port '{p}' is not a TCP port (1 to 65535)"
        )));
    }
    let path = if path.is_empty() || path == "/" { "/sdk" } else { path };
    let url = format!("{scheme}://{authority}{path}");
    // Whatever the checks above let through, the HTTP client must accept too: say so now, not at connect time.
    url::Url::parse(&url).map_err(|e| invalid(format!("--url '{raw}' is not a usable URL: {e}")))?;
    Ok(url)
}

fn read_secret_line(mut r: impl BufRead, what: &str) -> Result<SecretString, ConfigError> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| invalid(format!("cannot read the password from {what}: {e}")))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(invalid(format!("the password from {what} is empty")));
    }
    Ok(SecretString::from(pw))
}

fn password(g: &GlobalArgs, file: &FileSettings, warnings: &mut Vec<String>) -> Result<SecretString, ConfigError> {
    let env = g.password_variable.clone();
    let path = g.password_file.clone().or_else(|| file.password_file.clone());
    let sources = [env.is_some(), path.is_some(), g.password_stdin, g.password.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if sources > 1 {
        return Err(invalid(
            "more than one password source: use only one of VMHA_PASSWORD, --password-file, --password-stdin",
        ));
    }
    if let Some(pw) = env {
        return Ok(pw);
    }
    if let Some(pw) = &g.password {
        return Ok(pw.clone());
    }
    if let Some(path) = path {
        let f = std::fs::File::open(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            cause: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = f.metadata()
                && meta.permissions().mode() & 0o077 != 0
            {
                warnings.push(format!(
                    "password file {} can be read by others (mode {:o}); run: chmod 600 {}",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                ));
            }
        }
        return read_secret_line(std::io::BufReader::new(f), &path.display().to_string());
    }
    if g.password_stdin {
        return read_secret_line(std::io::stdin().lock(), "standard input");
    }
    Err(invalid(
        "no password: set VMHA_PASSWORD, or use --password-file PATH or --password-stdin",
    ))
}

pub fn load_file(g: &GlobalArgs) -> Result<FileSettings, ConfigError> {
    match &g.config {
        Some(p) => FileSettings::load(p),
        None => Ok(FileSettings::default()),
    }
}

/// The server's URL from `--url` or the file, normalised.
pub fn server_url(g: &GlobalArgs, file: &FileSettings) -> Result<String, ConfigError> {
    let url = g
        .url
        .clone()
        .or_else(|| file.url.clone())
        .ok_or_else(|| invalid("no server: give --url https://HOST/sdk (or VMHA_URL)"))?;
    normalize_url(&url)
}

/// The request timeout from `--request-timeout`, the file, or the default: 1 to 3600 s.
pub fn request_timeout(g: &GlobalArgs, file: &FileSettings) -> Result<Duration, ConfigError> {
    let secs = g
        .request_timeout
        .or(file.request_timeout)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    if secs == 0 || secs > 3600 {
        return Err(invalid(format!("--request-timeout {secs}: give 1 to 3600 seconds")));
    }
    Ok(Duration::from_secs(secs))
}

pub fn connection(g: &GlobalArgs, file: &FileSettings) -> Result<ConnectionSettings, ConfigError> {
    let mut warnings = Vec::new();
    let url = server_url(g, file)?;
    let user = g
        .user
        .clone()
        .or_else(|| file.user.clone())
        .ok_or_else(|| invalid("no user: give --user NAME (or VMHA_USER)"))?;
    let insecure = g.insecure || file.insecure.unwrap_or(false);
    let thumbprint = g.thumbprint.clone().or_else(|| file.thumbprint.clone());
    let ca_file = g.ca_file.clone().or_else(|| file.ca_file.clone());
    let tls = match (insecure, thumbprint, ca_file) {
        (true, Some(_), _) | (true, _, Some(_)) => {
            return Err(invalid(
                "--insecure cannot be combined with --thumbprint or --ca-file: pick one way to trust the server",
            ));
        }
        (true, None, None) => {
            warnings.push("TLS verification is OFF (--insecure): anyone on the path can read the password; pin the certificate with --thumbprint instead".into());
            TlsPolicy::Insecure
        }
        (false, Some(t), _) => TlsPolicy::Pinned {
            sha256: parse_thumbprint(&t).map_err(|e| invalid(format!("--thumbprint: {e}")))?,
        },
        (false, None, ca) => {
            let mut extra = Vec::new();
            if let Some(p) = ca {
                let pem = std::fs::read(&p).map_err(|e| ConfigError::Read {
                    path: p.clone(),
                    cause: e.to_string(),
                })?;
                check_ca_file(&p, &pem)?;
                extra.push(pem);
            }
            TlsPolicy::Verify { extra_roots_pem: extra }
        }
    };
    let request_timeout = request_timeout(g, file)?;
    let password = password(g, file, &mut warnings)?;
    Ok(ConnectionSettings {
        url,
        user,
        password,
        tls,
        request_timeout,
        record: g.record.clone(),
        record_label: g.record_label.clone(),
        session_dir: if g.no_session_cache || file.no_session_cache.unwrap_or(false) {
            None
        } else {
            Some(
                g.session_dir
                    .clone()
                    .or_else(|| file.session_dir.clone())
                    .unwrap_or_else(crate::client::cache::default_dir),
            )
        },
        warnings,
    })
}

/// A `--ca-file` must hold at least one readable PEM certificate; found before any connection.
fn check_ca_file(path: &Path, pem: &[u8]) -> Result<(), ConfigError> {
    let mut found = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        cert.map_err(|e| invalid(format!("--ca-file {}: unreadable PEM: {e}", path.display())))?;
        found += 1;
    }
    if found == 0 {
        return Err(invalid(format!(
            "--ca-file {} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block); give the CA's (or the server's own) certificate in PEM",
            path.display()
        )));
    }
    Ok(())
}

/// Normalises a VM UUID to the dashed lowercase form vSphere shows (`4210abcd-ef01-2345-6789-abcdef012345`).
/// Accepts exactly 32 hex digits: with dashes at the standard places, without dashes, or as a .vmx
/// `uuid.bios` writes it (`42 10 ab cd ef 01 23 45-67 89 ab cd ef 01 23 45`).
pub fn normalize_uuid(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let bad = |why: &str| {
        format!(
            "--uuid '{raw}' is not a UUID: {why}; give 32 hex digits, as 4210abcd-ef01-2345-6789-abcdef012345, 4210abcdef0123456789abcdef012345 or the .vmx form '42 10 ab cd ef 01 23 45-67 89 ab cd ef 01 23 45'"
        )
    };
    if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit() && *c != '-' && *c != ' ') {
        return Err(bad(&format!("'{c}' is not a hex digit")));
    }
    let digits: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    if digits.len() != 32 {
        return Err(bad(&format!("it has {} hex digits, not 32", digits.len())));
    }
    let dashes: Vec<usize> = s.char_indices().filter(|(_, c)| *c == '-').map(|(i, _)| i).collect();
    let well_placed = if s.contains(' ') {
        // .vmx: 16 two-digit bytes separated by spaces, a dash instead of the 9th separator.
        let vmx_form = s.split(['-', ' ']).map(str::len).collect::<Vec<_>>() == vec![2; 16];
        vmx_form && (dashes.is_empty() || dashes == [23])
    } else {
        dashes.is_empty() || dashes == [8, 13, 18, 23]
    };
    if !well_placed {
        return Err(bad("its dashes or spaces are not where a UUID has them"));
    }
    let d = digits.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &d[..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..]
    ))
}

/// Which VM: exactly one of vmx, name, uuid.
pub fn vm_selector(vm: &VmArgs, file: &FileSettings) -> Result<VmSelector, ConfigError> {
    let given: Vec<VmSelector> = [
        vm.vmx.clone().map(VmSelector::Vmx),
        vm.name.clone().map(VmSelector::Name),
        vm.uuid.clone().map(VmSelector::Uuid),
    ]
    .into_iter()
    .flatten()
    .collect();
    let chosen = match given.len() {
        1 => given.into_iter().next(),
        0 => [
            file.vmx.clone().map(VmSelector::Vmx),
            file.name.clone().map(VmSelector::Name),
            file.uuid.clone().map(VmSelector::Uuid),
        ]
        .into_iter()
        .flatten()
        .next(),
        _ => return Err(invalid("name the VM one way only: --vmx, --name or --uuid")),
    };
    let sel = chosen.ok_or_else(|| invalid("which VM? give --vmx PATH, --name NAME or --uuid UUID"))?;
    match sel {
        VmSelector::Vmx(p) => {
            validate_vmx(&p).map_err(invalid)?;
            Ok(VmSelector::Vmx(p))
        }
        VmSelector::Name(n) if n.trim().is_empty() => Err(invalid("--name is empty")),
        VmSelector::Uuid(u) => Ok(VmSelector::Uuid(normalize_uuid(&u).map_err(invalid)?)),
        other => Ok(other),
    }
}

fn secs(flag: Option<u64>, file: Option<u64>, default: u64, name: &str) -> Result<Duration, ConfigError> {
    let v = flag.or(file).unwrap_or(default);
    if v > 86_400 {
        return Err(invalid(format!("--{name} {v}: at most 86400 seconds")));
    }
    Ok(Duration::from_secs(v))
}

pub struct Waits {
    pub start_wait: Option<u64>,
    pub stop_wait: Option<u64>,
    pub migration_wait: Option<u64>,
}

pub fn resource(
    vm: &VmArgs,
    host: Option<&str>,
    waits: Waits,
    file: &FileSettings,
) -> Result<ResourceSettings, ConfigError> {
    Ok(ResourceSettings {
        vm: vm_selector(vm, file)?,
        datacenter: vm.datacenter.clone().or_else(|| file.datacenter.clone()),
        host: host.map(str::to_string).or_else(|| file.host.clone()),
        start_wait: secs(waits.start_wait, file.start_wait, DEFAULT_START_WAIT, "start-wait")?,
        stop_wait: secs(waits.stop_wait, file.stop_wait, DEFAULT_STOP_WAIT, "stop-wait")?,
        migration_wait: secs(
            waits.migration_wait,
            file.migration_wait,
            DEFAULT_MIGRATION_WAIT,
            "migration-wait",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(normalize_url("vc1").unwrap(), "https://vc1/sdk");
        assert_eq!(normalize_url("vc1:8443").unwrap(), "https://vc1:8443/sdk");
        assert_eq!(normalize_url("https://vc1/").unwrap(), "https://vc1/sdk");
        assert_eq!(normalize_url("https://vc1/sdk").unwrap(), "https://vc1/sdk");
        assert_eq!(
            normalize_url("http://127.0.0.1:9000/sdk").unwrap(),
            "http://127.0.0.1:9000/sdk"
        );
        assert!(
            normalize_url("http://vc1/sdk")
                .unwrap_err()
                .to_string()
                .contains("clear")
        );
        assert!(normalize_url("ftp://vc1").is_err());
        assert!(normalize_url("https://user@vc1").is_err());
        assert!(normalize_url("").is_err());
        for bad in [
            "https://127.0.0.1:99999/sdk",
            "vc1:0",
            "https://vc1:http/sdk",
            "https://[::1]:70000/sdk",
        ] {
            let e = normalize_url(bad).unwrap_err().to_string();
            assert!(e.contains("not a TCP port"), "{bad}: {e}");
        }
        assert_eq!(
            normalize_url("https://[::1]:8443/sdk").unwrap(),
            "https://[::1]:8443/sdk"
        );
    }

    #[test]
    fn uuids() {
        let want = "4210abcd-ef01-2345-6789-abcdef012345";
        for ok in [
            "4210abcd-ef01-2345-6789-abcdef012345",
            "4210ABCD-EF01-2345-6789-ABCDEF012345",
            "4210abcdef0123456789abcdef012345",
            "42 10 ab cd ef 01 23 45-67 89 ab cd ef 01 23 45",
            "42 10 ab cd ef 01 23 45 67 89 ab cd ef 01 23 45",
            " 4210abcd-ef01-2345-6789-abcdef012345 ",
        ] {
            assert_eq!(normalize_uuid(ok).as_deref(), Ok(want), "{ok}");
        }
        for bad in [
            &"-".repeat(36),
            "4210abcd-ef01-2345-6789-abcdef01234",
            "4210abcd-ef01-2345-6789-abcdef0123456",
            "4210abcdef01-2345-6789-abcd-ef012345",
            "4210-abcdef0123456789abcdef012345",
            "4210abcd-ef01-2345-6789-abcdef01234g",
            "42 10 ab cd ef 01 23 4567 89 ab cd ef 01 23 45",
            "",
        ] {
            assert!(normalize_uuid(bad).is_err(), "{bad}");
        }
        assert!(normalize_uuid(&"-".repeat(36)).unwrap_err().contains("0 hex digits"));
    }

    #[test]
    fn ca_file_without_a_certificate_is_a_config_error() {
        let p = Path::new("/tmp/x.pem");
        assert!(
            check_ca_file(p, b"hello\n")
                .unwrap_err()
                .to_string()
                .contains("no PEM certificate")
        );
        assert!(check_ca_file(p, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn config_file_refuses_passwords_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "url = \"vc\"\npassword = \"x\"\n").unwrap();
        let e = FileSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("password-file") && !e.contains("\"x\""), "{e}");
        std::fs::write(&p, "url = \"vc\"\nstrat-wait = 3\n").unwrap();
        assert!(FileSettings::load(&p).unwrap_err().to_string().contains("strat-wait"));
        std::fs::write(&p, "url = \"vc\"\nstart-wait = 3\nvmx = \"[ds] a/a.vmx\"\n").unwrap();
        let f = FileSettings::load(&p).unwrap();
        let r = resource(
            &VmArgs::default(),
            None,
            Waits {
                start_wait: None,
                stop_wait: Some(9),
                migration_wait: None,
            },
            &f,
        )
        .unwrap();
        assert_eq!(r.start_wait, Duration::from_secs(3));
        assert_eq!(r.stop_wait, Duration::from_secs(9));
        assert_eq!(r.migration_wait, Duration::from_secs(DEFAULT_MIGRATION_WAIT));
        assert_eq!(r.vm, VmSelector::Vmx("[ds] a/a.vmx".into()));
    }

    #[test]
    fn selector_needs_exactly_one() {
        let f = FileSettings::default();
        assert!(vm_selector(&VmArgs::default(), &f).is_err());
        let two = VmArgs {
            name: Some("a".into()),
            uuid: Some("4210".into()),
            ..Default::default()
        };
        assert!(vm_selector(&two, &f).unwrap_err().to_string().contains("one way"));
        let bad = VmArgs {
            uuid: Some("xyz".into()),
            ..Default::default()
        };
        assert!(vm_selector(&bad, &f).is_err());
    }
}
