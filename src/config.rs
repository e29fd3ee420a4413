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
/// How long vCenter may take to answer before a node asks its own host: well inside an OCF monitor's
/// usual 20-30 s timeout, and far above a healthy vCenter's answer (milliseconds).
pub const DEFAULT_FALLBACK_AFTER: u64 = 10;

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
    pub host_address: Option<Vec<String>>,
    pub host_user: Option<String>,
    pub host_password_file: Option<PathBuf>,
    pub host_thumbprint: Option<Vec<String>>,
    pub fallback_after: Option<u64>,
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
    /// Direct access to the ESX hosts (vCenter's stand-in when it is down, and ESX-only clusters).
    pub hosts: HostAccess,
    /// No vCenter at all: `url` is this node's host's own endpoint, found from `--host` and
    /// `--host-address` (an ESX-only cluster, one resource definition for every node). Its name.
    pub direct_host: Option<String>,
}

/// How to reach ESX hosts directly, as VMware HA's own agent does: every host is its own SDK endpoint.
#[derive(Clone, Debug)]
pub struct HostAccess {
    /// Host name (as vCenter shows it) and the URL of its own endpoint, from `--host-address`.
    addresses: Vec<(String, String)>,
    /// Host name and the SHA-256 its certificate must have, from `--host-thumbprint`.
    thumbprints: Vec<(String, [u8; 32])>,
    /// How hosts are trusted when no thumbprint names them: the `--ca-file` roots (VMCA signs host
    /// certificates), or `--insecure`. A `--thumbprint` pins vCenter's certificate, never a host's.
    base_tls: TlsPolicy,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Longest wait for vCenter's first answer before this node's host is asked instead.
    pub fallback_after: Duration,
}

impl HostAccess {
    /// Whether direct host logins are configured (a host user and its password).
    pub fn enabled(&self) -> bool {
        self.user.is_some() && self.password.is_some()
    }

    /// The URL of `host`'s own endpoint: its `--host-address`, else its name as a host name.
    pub fn url_of(&self, host: &str) -> Result<String, ConfigError> {
        match self.addresses.iter().find(|(n, _)| n.eq_ignore_ascii_case(host)) {
            Some((_, url)) => Ok(url.clone()),
            None => normalize_url(host).map_err(|e| {
                invalid(format!(
                    "host '{host}' cannot be reached by its name ({e}); give its address with --host-address {host}=ADDRESS"
                ))
            }),
        }
    }

    /// The hosts named in `--host-address`, in the order given.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.addresses.iter().map(|(n, _)| n.as_str())
    }

    /// How to trust `host`: its `--host-thumbprint`, else the certificate vCenter reported for it
    /// (`remembered`), else the `--ca-file` roots or the system store (or `--insecure`, which warned).
    pub fn tls_for(&self, host: &str, remembered: Option<[u8; 32]>) -> TlsPolicy {
        if let Some((_, sha256)) = self.thumbprints.iter().find(|(n, _)| n.eq_ignore_ascii_case(host)) {
            return TlsPolicy::Pinned { sha256: *sha256 };
        }
        match (&self.base_tls, remembered) {
            (TlsPolicy::Insecure, _) => TlsPolicy::Insecure,
            (_, Some(sha256)) => TlsPolicy::Pinned { sha256 },
            (base, None) => base.clone(),
        }
    }

    /// Whether `host` is pinned by a `--host-thumbprint`.
    pub fn has_thumbprint(&self, host: &str) -> bool {
        self.thumbprints.iter().any(|(n, _)| n.eq_ignore_ascii_case(host))
    }
}

/// Splits `NAME=VALUE` (not `:`, which an address's port uses), naming the option in the error.
fn name_value<'a>(item: &'a str, option: &str, what: &str) -> Result<(&'a str, &'a str), ConfigError> {
    item.split_once('=')
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "{option} '{item}': write NAME={what}, NAME being the host as vCenter shows it"
            ))
        })
}

/// `--host-address`, `--host-user`, `--host-password-file`, `--host-thumbprint`, `--fallback-after`.
fn host_access(
    g: &GlobalArgs,
    file: &FileSettings,
    base_tls: &TlsPolicy,
    warnings: &mut Vec<String>,
) -> Result<HostAccess, ConfigError> {
    let items = |flag: &[String], key: &Option<Vec<String>>| -> Vec<String> {
        let list = if flag.is_empty() {
            key.clone().unwrap_or_default()
        } else {
            flag.to_vec()
        };
        list.iter()
            .flat_map(|i| {
                i.split([';', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut addresses: Vec<(String, String)> = Vec::new();
    for item in items(&g.host_address, &file.host_address) {
        let (name, addr) = name_value(&item, "--host-address", "ADDRESS")?;
        let url = normalize_url(addr).map_err(|e| invalid(format!("--host-address {name}: {e}")))?;
        if addresses.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(invalid(format!("--host-address names host {name} twice")));
        }
        addresses.push((name.to_string(), url));
    }
    let mut thumbprints = Vec::new();
    for item in items(&g.host_thumbprint, &file.host_thumbprint) {
        let (name, t) = name_value(&item, "--host-thumbprint", "SHA256")?;
        let sha = parse_thumbprint(t).map_err(|e| invalid(format!("--host-thumbprint {name}: {e}")))?;
        thumbprints.push((name.to_string(), sha));
    }
    let user = g
        .host_user
        .clone()
        .or_else(|| file.host_user.clone())
        .filter(|u| !u.trim().is_empty());
    let path = g.host_password_file.clone().or_else(|| file.host_password_file.clone());
    let password = match (&g.host_password, &path) {
        (Some(_), Some(_)) => {
            return Err(invalid("two host password sources: keep only --host-password-file"));
        }
        (Some(pw), None) => Some(pw.clone()),
        (None, Some(p)) => Some(read_password_file(p, warnings)?),
        (None, None) => None,
    };
    match (&user, &password) {
        (Some(_), None) => {
            return Err(invalid(
                "--host-user is set but no host password: give --host-password-file PATH (a file whose first line is the ESXi user's password)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "--host-password-file is set but no --host-user: name the local ESXi user vmha logs in to hosts as",
            ));
        }
        _ => {}
    }
    let fallback = g
        .fallback_after
        .or(file.fallback_after)
        .unwrap_or(DEFAULT_FALLBACK_AFTER);
    if fallback == 0 || fallback > 3600 {
        return Err(invalid(format!("--fallback-after {fallback}: give 1 to 3600 seconds")));
    }
    let base_tls = match base_tls {
        TlsPolicy::Pinned { .. } => TlsPolicy::Verify {
            extra_roots_pem: Vec::new(),
        },
        other => other.clone(),
    };
    Ok(HostAccess {
        addresses,
        thumbprints,
        base_tls,
        user,
        password,
        fallback_after: Duration::from_secs(fallback),
    })
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

/// The first line of a password file; warns when others can read it.
fn read_password_file(path: &Path, warnings: &mut Vec<String>) -> Result<SecretString, ConfigError> {
    let f = std::fs::File::open(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
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
    read_secret_line(std::io::BufReader::new(f), &path.display().to_string())
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
        return read_password_file(&path, warnings);
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
        .ok_or_else(|| {
            invalid("no server: give --url https://HOST/sdk (or VMHA_URL); with no vCenter, --host NAME (and --host-address NAME=ADDRESS) names the endpoint")
        })?;
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

/// How to connect. `node_host` is the ESX host this node stands for (`--host`): without a `--url` it is
/// the endpoint itself (an ESX-only cluster: each node talks to its own host).
pub fn connection(
    g: &GlobalArgs,
    file: &FileSettings,
    node_host: Option<&str>,
) -> Result<ConnectionSettings, ConfigError> {
    let mut warnings = Vec::new();
    let configured_url = g.url.clone().or_else(|| file.url.clone());
    let direct_host = match (&configured_url, node_host) {
        (None, Some(h)) => Some(h.to_string()),
        _ => None,
    };
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
    let hosts = host_access(g, file, &tls, &mut warnings)?;
    let request_timeout = request_timeout(g, file)?;
    let main_user = g.user.clone().or_else(|| file.user.clone());
    let (url, user, password, tls) = match &direct_host {
        None => (
            server_url(g, file)?,
            main_user.ok_or_else(|| invalid("no user: give --user NAME (or VMHA_USER)"))?,
            password(g, file, &mut warnings)?,
            tls,
        ),
        // No vCenter: this node's own host, with the host user when one is set.
        Some(h) => {
            let url = hosts.url_of(h)?;
            let tls = hosts.tls_for(h, None);
            match (&hosts.user, &hosts.password) {
                (Some(u), Some(p)) => (url, u.clone(), p.clone(), tls),
                _ => (
                    url,
                    main_user
                        .ok_or_else(|| invalid("no user: give --host-user NAME (a local ESXi user) or --user NAME"))?,
                    password(g, file, &mut warnings)?,
                    tls,
                ),
            }
        }
    };
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
        hosts,
        direct_host,
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

    fn access(g: &GlobalArgs, tls: &TlsPolicy) -> Result<HostAccess, ConfigError> {
        host_access(g, &FileSettings::default(), tls, &mut Vec::new())
    }

    #[test]
    fn host_addresses_thumbprints_and_trust() {
        let sha = "AB".repeat(32);
        let g = GlobalArgs {
            host_address: vec!["esx1=10.0.0.11;esx2=https://10.0.0.12:8443/sdk".into()],
            host_thumbprint: vec![format!("esx2={sha}")],
            ..Default::default()
        };
        let ca = TlsPolicy::Verify {
            extra_roots_pem: vec![b"pem".to_vec()],
        };
        let a = access(&g, &ca).unwrap();
        assert!(!a.enabled(), "no host user: no fallback");
        assert_eq!(a.url_of("ESX1").unwrap(), "https://10.0.0.11/sdk");
        assert_eq!(a.url_of("esx2").unwrap(), "https://10.0.0.12:8443/sdk");
        assert_eq!(a.url_of("esx3.example.com").unwrap(), "https://esx3.example.com/sdk");
        assert_eq!(a.tls_for("esx2", None), TlsPolicy::Pinned { sha256: [0xAB; 32] });
        assert_eq!(
            a.tls_for("esx1", None),
            ca,
            "the CA file trusts hosts (VMCA signs them)"
        );
        assert_eq!(a.tls_for("esx1", Some([1; 32])), TlsPolicy::Pinned { sha256: [1; 32] });
        assert_eq!(a.fallback_after, Duration::from_secs(DEFAULT_FALLBACK_AFTER));
        // vCenter's own pin never applies to a host.
        let pinned = access(&g, &TlsPolicy::Pinned { sha256: [9; 32] }).unwrap();
        assert_eq!(
            pinned.tls_for("esx1", None),
            TlsPolicy::Verify {
                extra_roots_pem: vec![]
            }
        );
    }

    #[test]
    fn host_settings_errors_name_the_option() {
        let tls = TlsPolicy::Verify {
            extra_roots_pem: vec![],
        };
        let bad = |g: GlobalArgs| access(&g, &tls).unwrap_err().to_string();
        assert!(
            bad(GlobalArgs {
                host_address: vec!["esx1".into()],
                ..Default::default()
            })
            .contains("NAME=ADDRESS")
        );
        assert!(
            bad(GlobalArgs {
                host_address: vec!["a=x;a=y".into()],
                ..Default::default()
            })
            .contains("twice")
        );
        assert!(
            bad(GlobalArgs {
                host_thumbprint: vec!["a=zz".into()],
                ..Default::default()
            })
            .contains("--host-thumbprint a")
        );
        assert!(
            bad(GlobalArgs {
                host_user: Some("root".into()),
                ..Default::default()
            })
            .contains("--host-password-file")
        );
        assert!(
            bad(GlobalArgs {
                fallback_after: Some(0),
                ..Default::default()
            })
            .contains("--fallback-after")
        );
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
