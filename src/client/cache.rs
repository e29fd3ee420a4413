//! The session cache: one file per (server URL, user) in a private directory, so the one-shot commands an
//! HA cluster runs every few seconds share one vCenter session instead of logging in and out each time.
//!
//! The file holds the session cookie, the SHA-256 of the certificate the server presented when the cookie
//! was issued (a cookie is only ever sent back to that certificate), a salted SHA-256 of the password it
//! was opened with (so a wrong or changed password is refused as without the cache, not masked by it),
//! the server's ServiceContent and the vim25 version negotiated with it (as govc's persisted session keeps
//! its client), so that a warm call sends no RetrieveServiceContent and reads no vimServiceVersions.xml,
//! and the VMs found by name (name → managed object id, checked on every use). Never the password. The directory is 0700, the file 0600,
//! both owned by the user running vmha; anything else is refused, and vmha then works without the cache.
//!
//! Readers take no lock: the file is replaced atomically (write a temporary file, rename it). Whoever logs
//! in holds an exclusive `flock` on a lock file beside it, and looks again once it has the lock, so many
//! processes finding no session at once make one Login between them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vim::ServiceContent;

/// The directory when none is configured: `$XDG_RUNTIME_DIR/vmha`, else `/run/vmha`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("vmha"),
        _ => PathBuf::from("/run/vmha"),
    }
}

/// Why the cache cannot be used (vmha then logs in and out as without it).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("session directory {dir}: {cause}")]
    Dir { dir: String, cause: String },
    #[error("session file {file}: {cause}")]
    File { file: String, cause: String },
    #[error("another vmha held the session lock {file} for {secs} s")]
    LockTimeout { file: String, secs: u64 },
}

/// What the file holds.
#[derive(Default, Serialize, Deserialize)]
struct Entry {
    url: String,
    user: String,
    /// Hex SHA-256 of the server certificate the cookie was issued over; `None` on plain HTTP (loopback).
    server_sha256: Option<String>,
    cookie: Option<String>,
    /// Salted SHA-256 of the password the session was opened with (never the password): a call with
    /// another password (changed, or wrong) logs in itself instead of riding on this session.
    #[serde(default)]
    password_check: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    /// VM name → managed object id, checked against the VM's name and .vmx on every use.
    #[serde(default)]
    names: BTreeMap<String, String>,
    /// What the process that logged in read from the server: valid as long as the session.
    #[serde(default)]
    service: Option<ServiceInfo>,
    /// What vCenter said about the VMs and hosts, for when it is down (outlives the session).
    #[serde(default)]
    memo: Memo,
}

/// Facts learnt from vCenter while it was up, for acting through the hosts when it is down: which files a
/// VM is and where it ran, and how each host is trusted and whether it is in lockdown mode.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Memo {
    /// VM selector key → what the VM was seen as.
    #[serde(default)]
    pub vms: BTreeMap<String, VmMemo>,
    /// Host name (as vCenter shows it) → what vCenter reported of it.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostMemo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmMemo {
    /// `[datastore] dir/x.vmx`: what a takeover through a host registers.
    pub vmx: Option<String>,
    /// BIOS UUID.
    pub uuid: Option<String>,
    /// The host it ran on last time vCenter was asked.
    pub host: Option<String>,
    /// vCenter showed other entries of the same files: look for them again until they are gone.
    #[serde(default)]
    pub twins: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostMemo {
    /// Hex SHA-256 of the certificate vCenter reports for the host (`config.certificate`).
    pub cert_sha256: Option<String>,
    /// `config.lockdownMode` (vSphere 6.0+): anything but lockdownDisabled refuses direct logins.
    pub lockdown: Option<String>,
    /// When this was read (seconds since 1970): re-read once a day.
    pub read_at: u64,
}

/// The server's ServiceContent and the vim25 version negotiated with it. A server is not upgraded under
/// a live session (an upgrade restarts it and ends every session), so they live as long as the cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub version: String,
    pub content: ServiceContent,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("cookie", &self.cookie.as_ref().map(|_| "(redacted)"))
            .finish()
    }
}

/// A refused login: when, and a salted hash of the password refused.
#[derive(Serialize, Deserialize)]
struct Refusal {
    salt: String,
    check: String,
    at: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache file of one (server URL, user).
#[derive(Debug)]
pub struct SessionCache {
    file: PathBuf,
    lock_file: PathBuf,
    url: String,
    user: String,
}

/// Holds the exclusive lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// A cached session, valid for the certificate it was issued over.
pub struct CachedSession {
    pub cookie: SecretString,
    /// `None` in a file written before vmha kept it.
    pub service: Option<ServiceInfo>,
}

fn hex_of(d: Option<[u8; 32]>) -> Option<String> {
    d.map(hex::encode)
}

fn password_check(salt: &str, password: &SecretString) -> String {
    let mut h = Sha256::new();
    h.update(b"vmha session cache\0");
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(password.expose_secret().as_bytes());
    hex::encode(h.finalize())
}

/// 16 random bytes from the kernel, as hex.
fn new_salt() -> Result<String, String> {
    let mut buf = [0u8; 16];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that many bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(format!("no random salt: {}", std::io::Error::last_os_error()));
    }
    Ok(hex::encode(buf))
}

impl SessionCache {
    /// Opens (creating if needed) the private directory and names the file for `url` and `user`.
    pub fn open(dir: &Path, url: &str, user: &str) -> Result<SessionCache, CacheError> {
        let dir_err = |cause: String| CacheError::Dir {
            dir: dir.display().to_string(),
            cause,
        };
        if let Err(e) = fs::DirBuilder::new().mode(0o700).create(dir)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(dir_err(format!("cannot create it: {e}")));
        }
        // Not followed if it is a link: someone else could point it anywhere.
        let meta = fs::symlink_metadata(dir).map_err(|e| dir_err(e.to_string()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            return Err(dir_err("is not a directory (a symbolic link is refused)".into()));
        }
        if meta.uid() != me {
            return Err(dir_err(format!(
                "belongs to uid {}, not to this user ({me}); use --session-dir",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(dir_err(format!(
                "is mode {:o}, readable by others: chmod 700 it",
                meta.mode() & 0o777
            )));
        }
        let key = hex::encode(Sha256::digest(format!("{url}\n{user}").as_bytes()));
        Ok(SessionCache {
            file: dir.join(format!("{}.session", &key[..32])),
            lock_file: dir.join(format!("{}.lock", &key[..32])),
            url: url.to_string(),
            user: user.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    fn read_entry(&self) -> Option<Entry> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.file)
            .ok()?;
        let meta = f.metadata().ok()?;
        // SAFETY: as above.
        if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o077 != 0 || meta.len() > 1 << 20 {
            tracing::warn!(
                "ignoring session file {}: not private to this user",
                self.file.display()
            );
            return None;
        }
        let e: Entry = serde_json::from_reader(std::io::BufReader::new(f)).ok()?;
        (e.url == self.url && e.user == self.user).then_some(e)
    }

    fn write_entry(&self, e: &Entry) -> Result<(), CacheError> {
        let err = |cause: String| CacheError::File {
            file: self.file.display().to_string(),
            cause,
        };
        let tmp = self.file.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| err(e.to_string()))?;
        let body = serde_json::to_vec(e).map_err(|e| err(e.to_string()))?;
        let written = f
            .write_all(&body)
            .and_then(|_| f.set_permissions(fs::Permissions::from_mode(0o600)))
            .and_then(|_| fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(err(e.to_string()));
        }
        Ok(())
    }

    /// The cached session, if there is one issued over the certificate the server presents now and
    /// opened with this password.
    pub fn session(&self, server_sha256: Option<[u8; 32]>, password: &SecretString) -> Option<CachedSession> {
        let e = self.read_entry()?;
        if e.server_sha256 != hex_of(server_sha256) {
            tracing::info!("the cached session was issued by another server certificate: not using it");
            return None;
        }
        match (&e.salt, &e.password_check) {
            (Some(salt), Some(check)) if &password_check(salt, password) == check => {}
            _ => {
                tracing::info!("the cached session was opened with another password: not using it");
                return None;
            }
        }
        let service = e.service;
        e.cookie.map(|c| CachedSession {
            cookie: SecretString::from(c),
            service,
        })
    }

    /// Keeps a freshly issued session. The names found under an earlier certificate are dropped with it.
    pub fn store(
        &self,
        cookie: &SecretString,
        server_sha256: Option<[u8; 32]>,
        password: &SecretString,
        service: &ServiceInfo,
    ) -> Result<(), CacheError> {
        let fingerprint = hex_of(server_sha256);
        let salt = new_salt().map_err(|cause| CacheError::File {
            file: self.file.display().to_string(),
            cause,
        })?;
        let old = self.read_entry();
        let memo = old.as_ref().map(|e| e.memo.clone()).unwrap_or_default();
        let names = match old {
            Some(e) if e.server_sha256 == fingerprint => e.names,
            _ => BTreeMap::new(),
        };
        self.write_entry(&Entry {
            url: self.url.clone(),
            user: self.user.clone(),
            server_sha256: fingerprint,
            cookie: Some(cookie.expose_secret().to_string()),
            password_check: Some(password_check(&salt, password)),
            salt: Some(salt),
            names,
            service: Some(service.clone()),
            memo,
        })
    }

    /// What vCenter said of VMs and hosts, whether or not a session is cached (read when vCenter is down).
    pub fn memo(&self) -> Memo {
        self.read_entry().map(|e| e.memo).unwrap_or_default()
    }

    /// Changes the memo under the lock; written only if `change` changed it.
    pub async fn update_memo(&self, change: impl FnOnce(&mut Memo), wait: Duration) -> Result<(), CacheError> {
        let _lock = self.lock(wait).await?;
        let Some(mut e) = self.read_entry() else {
            return Ok(());
        };
        let before = e.memo.clone();
        change(&mut e.memo);
        if e.memo == before { Ok(()) } else { self.write_entry(&e) }
    }

    /// Adds the service content to a file that holds a session without it (one an older vmha wrote).
    pub async fn add_service(&self, service: &ServiceInfo, wait: Duration) -> Result<(), CacheError> {
        if self.read_entry().is_none_or(|e| e.service.is_some()) {
            return Ok(());
        }
        let _lock = self.lock(wait).await?;
        match self.read_entry() {
            Some(mut e) if e.service.is_none() => {
                e.service = Some(service.clone());
                self.write_entry(&e)
            }
            _ => Ok(()),
        }
    }

    /// The managed object id last found for `name` (to be checked before it is trusted).
    pub fn name(&self, name: &str) -> Option<String> {
        self.read_entry()?.names.get(name).cloned()
    }

    /// Remembers (`Some`) or forgets (`None`) where `name` was found. Takes the lock itself.
    pub async fn set_name(&self, name: &str, moref: Option<&str>, wait: Duration) -> Result<(), CacheError> {
        let _lock = self.lock(wait).await?;
        let mut e = match self.read_entry() {
            Some(e) => e,
            None => return Ok(()),
        };
        let changed = match moref {
            Some(m) => e.names.insert(name.to_string(), m.to_string()).as_deref() != Some(m),
            None => e.names.remove(name).is_some(),
        };
        if changed { self.write_entry(&e) } else { Ok(()) }
    }

    /// How many seconds ago this server refused a login with this password, if it did within `window`.
    /// ESXi locks a local account after a few refused logins (`Security.AccountLockFailures`): a node that
    /// was refused does not try again with the same password until the window has passed.
    pub fn refused_within(&self, password: &SecretString, window: Duration) -> Option<u64> {
        let text = fs::read_to_string(self.file.with_extension("refused")).ok()?;
        let r: Refusal = serde_json::from_str(&text).ok()?;
        let age = now_secs().saturating_sub(r.at);
        (password_check(&r.salt, password) == r.check && age < window.as_secs()).then_some(age)
    }

    /// Remembers that this server refused a login with this password (never the password itself).
    pub fn record_refusal(&self, password: &SecretString) {
        let Ok(salt) = new_salt() else {
            return;
        };
        let r = Refusal {
            check: password_check(&salt, password),
            salt,
            at: now_secs(),
        };
        let path = self.file.with_extension("refused");
        let written = serde_json::to_vec(&r).map_err(std::io::Error::other).and_then(|body| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            f.write_all(&body)
        });
        if let Err(e) = written {
            tracing::debug!("cannot record the refused login in {}: {e}", path.display());
        }
    }

    /// Remembers that this server could not be reached, and why: calls in the next moments go to their host
    /// at once instead of each waiting out a frozen server.
    pub fn mark_unreachable(&self, why: &str) {
        let body = serde_json::json!({"at": now_secs(), "why": why}).to_string();
        let path = self.file.with_extension("unreachable");
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| f.write_all(body.as_bytes()));
        if let Err(e) = written {
            tracing::debug!("cannot record the unreachable server in {}: {e}", path.display());
        }
    }

    /// Seconds since this server was last found unreachable, and why, if within `window`.
    pub fn unreachable_within(&self, window: Duration) -> Option<(u64, String)> {
        let text = fs::read_to_string(self.file.with_extension("unreachable")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let age = now_secs().saturating_sub(v["at"].as_u64()?);
        (age < window.as_secs()).then(|| (age, v["why"].as_str().unwrap_or("").to_string()))
    }

    /// The server answered again.
    pub fn clear_unreachable(&self) {
        let _ = fs::remove_file(self.file.with_extension("unreachable"));
    }

    /// Forgets a refusal (after a successful login).
    pub fn clear_refusal(&self) {
        let _ = fs::remove_file(self.file.with_extension("refused"));
    }

    /// Deletes the file (after Logout).
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.file);
    }

    /// The exclusive lock around login-and-store, waited for at most `wait` (a holder is bounded by its
    /// own request timeout, so this only ends a wait on a hung holder).
    pub async fn lock(&self, wait: Duration) -> Result<LockGuard, CacheError> {
        let err = |cause: String| CacheError::File {
            file: self.lock_file.display().to_string(),
            cause,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.lock_file)
            .map_err(|e| err(e.to_string()))?;
        // Uncontended (the usual case): taken at once, no thread needed.
        match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(LockGuard { _file: f }),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
            Err(e) => return Err(err(format!("cannot lock it: {e}"))),
        }
        // Held by another vmha: a thread of its own blocks in flock until the holder lets go, and this call
        // waits for it at most `wait`. A thread given up on is left blocked (it is not the runtime's, so it
        // never holds up the process's exit); if it gets the lock later, nobody receives it and it is dropped.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("vmha-cache-lock".into())
            .spawn(move || {
                let got = flock(&f, libc::LOCK_EX).map(|()| LockGuard { _file: f });
                let _ = tx.send(got);
            })
            .map_err(|e| err(format!("cannot wait for the lock: {e}")))?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(guard))) => Ok(guard),
            Ok(Ok(Err(e))) => Err(err(format!("cannot lock it: {e}"))),
            Ok(Err(_)) => Err(err("the lock's waiting thread ended without an answer".into())),
            Err(_) => Err(CacheError::LockTimeout {
                file: self.lock_file.display().to_string(),
                secs: wait.as_secs(),
            }),
        }
    }
}

/// flock(2) on `f`, repeated when a signal interrupts it.
fn flock(f: &fs::File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the whole call; flock only reads it.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw() -> SecretString {
        SecretString::from("s3cret-pw")
    }

    fn svc() -> ServiceInfo {
        let xml = r#"<returnval><rootFolder type="Folder">group-d1</rootFolder>
            <propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>
            <about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 8.0.2</fullName>
            <version>8.0.2</version><apiType>VirtualCenter</apiType><apiVersion>8.0.2.0</apiVersion></about>
            <sessionManager type="SessionManager">SessionManager</sessionManager></returnval>"#;
        let el = crate::soap::xml::parse(xml, 16).unwrap();
        ServiceInfo {
            version: "8.0.2.0".into(),
            content: ServiceContent::from_xml(&el).unwrap(),
        }
    }

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn file_is_private_and_bound_to_the_certificate() {
        let d = private_dir();
        let dir = d.path().join("vmha");
        let c = SessionCache::open(&dir, "https://vc/sdk", "admin").unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let cert = Some([7u8; 32]);
        c.store(&SecretString::from("cookie-1"), cert, &pw(), &svc()).unwrap();
        assert_eq!(fs::metadata(c.path()).unwrap().mode() & 0o777, 0o600);
        let text = fs::read_to_string(c.path()).unwrap();
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert_eq!(c.session(cert, &pw()).unwrap().cookie.expose_secret(), "cookie-1");
        let kept = c.session(cert, &pw()).unwrap().service.unwrap();
        assert_eq!((kept.version.as_str(), kept.content), ("8.0.2.0", svc().content));
        assert!(
            c.session(Some([8u8; 32]), &pw()).is_none(),
            "another certificate must not get the cookie"
        );
        assert!(c.session(None, &pw()).is_none());
        assert!(
            c.session(cert, &SecretString::from("other")).is_none(),
            "another password logs in itself"
        );
        // Another user or server: another file.
        let other = SessionCache::open(&dir, "https://vc/sdk", "root").unwrap();
        assert_ne!(other.path(), c.path());
        assert!(other.session(cert, &pw()).is_none());
        c.remove();
        assert!(c.session(cert, &pw()).is_none());
    }

    #[test]
    fn open_directories_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let e = SessionCache::open(&dir, "https://vc/sdk", "admin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 700"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        let e = SessionCache::open(&link, "https://vc/sdk", "admin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let d = private_dir();
        let c = SessionCache::open(d.path(), "https://vc/sdk", "admin").unwrap();
        c.store(&SecretString::from("c"), None, &pw(), &svc()).unwrap();
        assert!(c.session(None, &pw()).is_some());
        fs::set_permissions(c.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(c.session(None, &pw()).is_none());
    }

    #[tokio::test]
    async fn names_survive_a_new_cookie_but_not_a_new_certificate() {
        let d = private_dir();
        let c = SessionCache::open(d.path(), "https://vc/sdk", "admin").unwrap();
        c.store(&SecretString::from("c1"), None, &pw(), &svc()).unwrap();
        c.set_name("web", Some("vm-42"), Duration::from_secs(1)).await.unwrap();
        c.store(&SecretString::from("c2"), None, &pw(), &svc()).unwrap();
        assert_eq!(c.name("web").as_deref(), Some("vm-42"));
        c.set_name("web", None, Duration::from_secs(1)).await.unwrap();
        assert_eq!(c.name("web"), None);
        c.set_name("web", Some("vm-43"), Duration::from_secs(1)).await.unwrap();
        c.store(&SecretString::from("c3"), Some([1; 32]), &pw(), &svc())
            .unwrap();
        assert_eq!(c.name("web"), None);
    }

    #[tokio::test]
    async fn a_file_without_service_content_gets_it_once() {
        let d = private_dir();
        let c = SessionCache::open(d.path(), "https://vc/sdk", "admin").unwrap();
        c.store(&SecretString::from("c1"), None, &pw(), &svc()).unwrap();
        // As an older vmha wrote it: no service content.
        let text = fs::read_to_string(c.path()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("service");
        fs::write(c.path(), v.to_string()).unwrap();
        assert!(c.session(None, &pw()).unwrap().service.is_none());
        c.add_service(&svc(), Duration::from_secs(1)).await.unwrap();
        assert!(c.session(None, &pw()).unwrap().service.is_some());
        assert_eq!(c.session(None, &pw()).unwrap().cookie.expose_secret(), "c1");
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_and_its_wait_bounded() {
        let d = private_dir();
        let c = SessionCache::open(d.path(), "https://vc/sdk", "admin").unwrap();
        let held = c.lock(Duration::from_secs(1)).await.unwrap();
        let e = c.lock(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, CacheError::LockTimeout { .. }), "{e}");
        drop(held);
        c.lock(Duration::from_millis(50)).await.unwrap();
        // A waiter blocks until the holder lets go, then has it (no polling interval in between).
        let held = c.lock(Duration::from_secs(1)).await.unwrap();
        let c2 = SessionCache::open(d.path(), "https://vc/sdk", "admin").unwrap();
        let waiter = tokio::spawn(async move { c2.lock(Duration::from_secs(30)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the lock was taken while held");
        drop(held);
        waiter.await.unwrap().unwrap();
    }
}
