//! Sessions: connect, log in on the SessionManager the server names, log in again once when the server
//! expired the session (a decorator around every call, as govmomi's keep-alive wraps its round tripper),
//! and log out within a bounded cleanup budget.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::soap::record::Recorder;
use crate::soap::tls::TlsPolicy;
use crate::soap::{FaultKind, SoapClient, SoapError, TransportOptions};
use crate::vim::methods::{self, PropertyFilterSpec};
use crate::vim::{MoRef, ObjectContent, ServiceContent};

use super::VimError;
use super::cache::{ServiceInfo, SessionCache};

/// After a timeout or a broken connection the server is probably gone: cleanup calls (destroying a
/// collector, Logout) then get this long, so a command still ends within its documented bound.
const DEGRADED_CLEANUP: Duration = Duration::from_millis(750);
/// Cleanup on a healthy connection: generous, but never a whole request timeout.
const HEALTHY_CLEANUP: Duration = Duration::from_secs(10);

pub struct Credentials {
    pub user: String,
    pub password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"(redacted)")
            .finish()
    }
}

#[derive(Debug)]
pub struct ConnectOptions {
    pub transport: TransportOptions,
    pub credentials: Credentials,
    pub record: Option<(PathBuf, String)>,
    /// Reuse and keep the session in this cache instead of logging in and out (one-shot commands).
    pub cache: Option<SessionCache>,
}

impl ConnectOptions {
    pub fn new(
        url: &str,
        tls: TlsPolicy,
        request_timeout: Duration,
        credentials: Credentials,
        record: Option<(PathBuf, String)>,
    ) -> ConnectOptions {
        ConnectOptions {
            transport: TransportOptions::new(url, tls, request_timeout),
            credentials,
            record,
            cache: None,
        }
    }
}

#[derive(Debug)]
pub struct Session {
    client: SoapClient,
    content: ServiceContent,
    credentials: Credentials,
    logged_in: AtomicBool,
    /// Set once a call timed out or lost its connection: cleanup then gets only [`DEGRADED_CLEANUP`].
    degraded: AtomicBool,
    /// Counts logins, so a watch can tell its collector died with an earlier session.
    generation: AtomicU64,
    cache: Option<SessionCache>,
    /// The session is the cache's: it outlives this process, so it is not logged out at the end.
    kept: AtomicBool,
    /// Collectors, and filters on the default collector, of this login not yet destroyed: a kept session
    /// must not collect them.
    collectors: std::sync::Mutex<Vec<MoRef>>,
    /// The login (generation) whose default PropertyCollector this process may still wait on, or 0. Only
    /// the process that logged in may: no other process on the session knows of it, so its filters and
    /// update versions are this process's alone and no CreatePropertyCollector is needed. Processes that
    /// adopt a cached session create private collectors.
    default_collector_free: AtomicU64,
}

impl Session {
    /// RetrieveServiceContent, then Login on the SessionManager it names.
    pub async fn connect(opts: ConnectOptions) -> Result<Session, VimError> {
        let recorder = match &opts.record {
            Some((dir, label)) => Some(Recorder::new(dir, label).map_err(|source| SoapError::Record {
                dir: dir.display().to_string(),
                source,
            })?),
            None => None,
        };
        let client = SoapClient::new(opts.transport, recorder)?;
        if let Some(cache) = &opts.cache {
            // The certificate decides whether the cached cookie may be sent: open the connection first
            // (the calls that follow use it either way).
            client.open().await?;
            if let Some(cached) = cache.session(client.peer_sha256(), &opts.credentials.password)
                && let Some(service) = cached.service
            {
                tracing::debug!(file = %cache.path().display(), "reusing the cached session and service content");
                client.adopt_version(&service.version);
                client.set_session_cookie(cached.cookie);
                return Ok(Session::adopted(client, service.content, opts.credentials, opts.cache));
            }
        }
        let content = methods::retrieve_service_content(&client).await?;
        client.negotiate_version(&content.about.api_version);
        let session = Session {
            client,
            content,
            credentials: opts.credentials,
            logged_in: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            cache: opts.cache,
            kept: AtomicBool::new(false),
            collectors: std::sync::Mutex::new(Vec::new()),
            default_collector_free: AtomicU64::new(0),
        };
        if session.cache.is_some() {
            session.login_shared(None).await?;
        } else {
            session.login().await?;
        }
        Ok(session)
    }

    /// Connects and adopts the cached session without logging in; `None` when the cache holds none for
    /// this server's certificate. For `vmha logout`.
    pub async fn resume(opts: ConnectOptions) -> Result<Option<Session>, VimError> {
        let Some(cache) = opts.cache.as_ref() else {
            return Ok(None);
        };
        let client = SoapClient::new(opts.transport.clone(), None)?;
        let content = methods::retrieve_service_content(&client).await?;
        client.negotiate_version(&content.about.api_version);
        let Some(cached) = cache.session(client.peer_sha256(), &opts.credentials.password) else {
            return Ok(None);
        };
        client.set_session_cookie(cached.cookie);
        Ok(Some(Session::adopted(client, content, opts.credentials, opts.cache)))
    }

    /// A session another process logged in and the cache keeps.
    fn adopted(
        client: SoapClient,
        content: ServiceContent,
        credentials: Credentials,
        cache: Option<SessionCache>,
    ) -> Session {
        Session {
            client,
            content,
            credentials,
            logged_in: AtomicBool::new(true),
            degraded: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            cache,
            kept: AtomicBool::new(true),
            collectors: std::sync::Mutex::new(Vec::new()),
            default_collector_free: AtomicU64::new(0),
        }
    }

    /// How long to wait for another process's login: its own calls are bounded by the request timeout.
    fn lock_wait(&self) -> Duration {
        self.client.request_timeout() + Duration::from_secs(5)
    }

    /// Adopts the cached session, or logs in and stores the new one. `stale` is a cookie the server just
    /// refused: a cached cookie equal to it is not adopted again. Once the cached session is checked
    /// under the lock, a process that waited for another one's Login adopts that one: one Login for all.
    async fn login_shared(&self, stale: Option<&str>) -> Result<(), VimError> {
        let Some(cache) = &self.cache else {
            return self.login().await;
        };
        let adopt = |this: &Session| {
            let cached = cache.session(this.client.peer_sha256(), &this.credentials.password)?;
            if stale.is_some_and(|s| s == cached.cookie.expose_secret()) {
                return None;
            }
            this.client.set_session_cookie(cached.cookie);
            this.logged_in.store(true, Ordering::SeqCst);
            this.kept.store(true, Ordering::SeqCst);
            this.generation.fetch_add(1, Ordering::SeqCst);
            Some(())
        };
        if adopt(self).is_some() {
            tracing::debug!(file = %cache.path().display(), "reusing the cached session");
            // A file an older vmha wrote has no service content: add it, so the next call is warm.
            if let Err(e) = cache.add_service(&self.service_info(), self.lock_wait()).await {
                tracing::debug!("session cache: {e}");
            }
            return Ok(());
        }
        let lock = match cache.lock(self.lock_wait()).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("session cache: {e}; logging in without it");
                None
            }
        };
        if lock.is_some() && adopt(self).is_some() {
            tracing::debug!("another vmha logged in meanwhile: reusing its session");
            return Ok(());
        }
        self.kept.store(false, Ordering::SeqCst);
        self.login().await?;
        if lock.is_some()
            && let Some(cookie) = self.client.session_cookie()
        {
            match cache.store(
                &cookie,
                self.client.peer_sha256(),
                &self.credentials.password,
                &self.service_info(),
            ) {
                Ok(()) => self.kept.store(true, Ordering::SeqCst),
                Err(e) => tracing::warn!("session cache: {e}; this session is logged out at the end"),
            }
        }
        Ok(())
    }

    /// What the session cache keeps beside the cookie: this server's ServiceContent and the version spoken.
    fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            version: self.client.version(),
            content: self.content.clone(),
        }
    }

    async fn login(&self) -> Result<(), VimError> {
        let sm = self.session_manager()?;
        match methods::login(&self.client, &sm, &self.credentials.user, &self.credentials.password).await {
            Ok(_) => {
                self.logged_in.store(true, Ordering::SeqCst);
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                self.default_collector_free.store(generation, Ordering::SeqCst);
                Ok(())
            }
            Err(SoapError::Fault { fault, .. }) if fault.kind == FaultKind::InvalidLogin => {
                Err(VimError::LoginRefused {
                    user: self.credentials.user.clone(),
                    fault,
                })
            }
            Err(e) => {
                self.note(&e);
                // The answer was lost after the server set the cookie: that session exists, end it.
                if self.client.has_session_cookie() {
                    self.logged_in.store(true, Ordering::SeqCst);
                    self.logout().await;
                }
                Err(e.into())
            }
        }
    }

    fn session_manager(&self) -> Result<MoRef, VimError> {
        self.content
            .session_manager
            .clone()
            .ok_or(VimError::MissingManager("sessionManager"))
    }

    /// Logs in again on a fresh cookie, after the server expired the session.
    pub async fn relogin(&self) -> Result<(), VimError> {
        tracing::info!("the server ended the session; logging in again");
        // Its collectors died with it.
        if let Ok(mut c) = self.collectors.lock() {
            c.clear();
        }
        let stale = self.client.session_cookie();
        self.client.clear_session();
        self.logged_in.store(false, Ordering::SeqCst);
        if self.cache.is_some() {
            return self.login_shared(stale.as_ref().map(|c| c.expose_secret())).await;
        }
        self.login().await
    }

    /// Ends the command's use of the session: a cached session is kept for the next process, any other
    /// is logged out. Returns false when a Logout was not confirmed.
    pub async fn finish(&self) -> bool {
        if self.is_kept() {
            // Collectors left by an interrupted wait would live as long as the shared session.
            let left = self
                .collectors
                .lock()
                .map(|mut c| std::mem::take(&mut *c))
                .unwrap_or_default();
            for obj in left {
                self.destroy_watch_object(&obj).await;
            }
            return true;
        }
        self.logout().await
    }

    /// The session's default PropertyCollector, once per login and only to the process that logged in
    /// (see `default_collector_free`); `None` means: create a private one.
    pub(crate) fn claim_default_collector(&self) -> Option<MoRef> {
        let generation = self.generation();
        self.default_collector_free
            .compare_exchange(generation, 0, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .filter(|&g| g != 0)
            .map(|_| self.content.property_collector.clone())
    }

    /// Notes a private collector, or a filter on the default collector, this login created (see
    /// [`Session::finish`]).
    pub(crate) fn track_collector(&self, pc: &MoRef) {
        if let Ok(mut c) = self.collectors.lock() {
            c.push(pc.clone());
        }
    }

    /// Destroys, within the cleanup budget, what a watch made: a private collector (its filter goes with
    /// it) or a filter on the default collector.
    pub(crate) async fn destroy_watch_object(&self, obj: &MoRef) {
        if obj.kind == "PropertyFilter" {
            self.cleanup("DestroyPropertyFilter", async |c| {
                methods::destroy_property_filter(c, obj).await
            })
            .await;
        } else {
            self.cleanup("DestroyPropertyCollector", async |c| {
                methods::destroy_property_collector(c, obj).await
            })
            .await;
        }
    }

    /// The collector (or filter) was destroyed, or died with its login.
    pub(crate) fn untrack_collector(&self, pc: &MoRef) {
        if let Ok(mut c) = self.collectors.lock() {
            c.retain(|x| x != pc);
        }
    }

    /// True when this session is logged out at the end of the command, taking its collectors with it.
    pub(crate) fn ends_with_command(&self) -> bool {
        !self.is_kept()
    }

    /// True when the session belongs to the session cache (and outlives this process).
    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::SeqCst) && self.logged_in.load(Ordering::SeqCst)
    }

    /// Where a VM selector (`key`) led last time, from the session cache: a managed object id, and for a
    /// path the `[datastore] path` it resolved to. For the caller to check before it trusts it.
    pub fn remembered_vm(&self, key: &str) -> Option<(MoRef, Option<String>)> {
        let cache = self.cache.as_ref().filter(|_| self.is_kept())?;
        let v = cache.name(key)?;
        let (id, path) = match v.split_once('\n') {
            Some((id, p)) => (id.to_string(), Some(p.to_string())),
            None => (v, None),
        };
        Some((MoRef::new("VirtualMachine", &id), path))
    }

    /// Remembers where `key` led (or forgets it). Failures only cost the next call a search.
    pub async fn remember_vm(&self, key: &str, found: Option<(&MoRef, Option<&str>)>) {
        let Some(cache) = self.cache.as_ref().filter(|_| self.is_kept()) else {
            return;
        };
        let value = found.map(|(m, p)| match p {
            Some(p) => format!("{}\n{p}", m.value),
            None => m.value.clone(),
        });
        if let Err(e) = cache.set_name(key, value.as_deref(), self.lock_wait()).await {
            tracing::debug!("session cache: {e}");
        }
    }

    /// What vCenter said earlier of VMs and hosts (the session cache's memo); empty without the cache.
    pub fn memo(&self) -> super::cache::Memo {
        self.cache.as_ref().map(|c| c.memo()).unwrap_or_default()
    }

    /// Changes the memo beside the cached session. Failures cost only a later fallback its facts.
    pub async fn update_memo(&self, change: impl FnOnce(&mut super::cache::Memo)) {
        let Some(cache) = self.cache.as_ref().filter(|_| self.is_kept()) else {
            return;
        };
        if let Err(e) = cache.update_memo(change, self.lock_wait()).await {
            tracing::debug!("session cache: {e}");
        }
    }

    /// `vmha logout`: Logout of the cached session, and the file removed. True when the server confirmed.
    pub async fn end_cached(&self) -> bool {
        let ok = self.logout().await;
        if let Some(cache) = &self.cache {
            cache.remove();
        }
        ok
    }

    /// Which login this is (1 for the first): objects created under an earlier one are gone.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remembers that the server stopped answering, so cleanup stays short.
    fn note(&self, e: &SoapError) {
        if e.is_connection_loss() {
            self.degraded.store(true, Ordering::SeqCst);
        }
    }

    /// One call, as it is: no re-login. For calls whose objects die with the session (a watch's).
    pub(crate) async fn call_once<T>(
        &self,
        f: impl AsyncFnOnce(&SoapClient) -> Result<T, SoapError>,
    ) -> Result<T, VimError> {
        let r = f(&self.client).await;
        if let Err(e) = &r {
            self.note(e);
        }
        Ok(r?)
    }

    /// One call; if the server expired the session, logs in again and repeats it once. A call refused
    /// with NotAuthenticated did nothing, so repeating it is safe even when it changes the VM.
    pub(crate) async fn call<T>(&self, f: impl AsyncFn(&SoapClient) -> Result<T, SoapError>) -> Result<T, VimError> {
        match self.call_once(&f).await {
            Err(e) if e.is_not_authenticated() => {
                self.relogin().await?;
                self.call_once(&f).await
            }
            r => r,
        }
    }

    /// True once the server stopped answering in time (see [`DEGRADED_CLEANUP`]).
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::SeqCst)
    }

    /// How long a cleanup call may take now.
    pub(crate) fn cleanup_budget(&self) -> Duration {
        if self.is_degraded() {
            DEGRADED_CLEANUP
        } else {
            self.client.request_timeout().min(HEALTHY_CLEANUP)
        }
    }

    /// Runs a cleanup call within [`Session::cleanup_budget`]. Failures are for the debug log only:
    /// the caller has nothing left to do about them.
    pub(crate) async fn cleanup(&self, what: &str, f: impl AsyncFnOnce(&SoapClient) -> Result<(), SoapError>) -> bool {
        let limit = self.cleanup_budget();
        match tokio::time::timeout(limit, f(&self.client)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!("{what} failed: {e}");
                false
            }
            Err(_) => {
                tracing::debug!("{what} got no answer within {} ms", limit.as_millis());
                false
            }
        }
    }

    /// Logs out within the cleanup budget. Safe to call twice. Returns false when the Logout was not
    /// confirmed (the server then ends the session when it times out).
    pub async fn logout(&self) -> bool {
        if !self.logged_in.swap(false, Ordering::SeqCst) {
            return true;
        }
        let Ok(sm) = self.session_manager() else {
            return false;
        };
        let ok = self.cleanup("Logout", async |c| methods::logout(c, &sm).await).await;
        self.client.clear_session();
        ok
    }

    pub fn content(&self) -> &ServiceContent {
        &self.content
    }

    pub fn is_vcenter(&self) -> bool {
        self.content.about.is_vcenter()
    }

    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// The vim25 version this session speaks (the server's, capped at the newest vmha knows).
    pub fn api_version(&self) -> String {
        self.client.version()
    }

    pub fn request_timeout(&self) -> Duration {
        self.client.request_timeout()
    }

    pub(crate) fn search_index(&self) -> Result<MoRef, VimError> {
        self.content
            .search_index
            .clone()
            .ok_or(VimError::MissingManager("searchIndex"))
    }

    /// RetrievePropertiesEx with its continuation pages.
    pub(crate) async fn retrieve(&self, spec: &PropertyFilterSpec) -> Result<Vec<ObjectContent>, VimError> {
        let mut out = Vec::new();
        self.retrieve_pages(spec, None, |mut page| out.append(&mut page))
            .await?;
        Ok(out)
    }

    /// RetrievePropertiesEx page by page, each handed to `each` and then dropped: memory stays that of
    /// one page of at most `max_objects` objects, whatever the inventory's size.
    pub(crate) async fn retrieve_pages(
        &self,
        spec: &PropertyFilterSpec,
        max_objects: Option<u32>,
        mut each: impl FnMut(Vec<ObjectContent>),
    ) -> Result<(), VimError> {
        let pc = &self.content.property_collector;
        let mut page = self
            .call(async |c| methods::retrieve_properties_ex(c, pc, spec, max_objects).await)
            .await?;
        loop {
            each(std::mem::take(&mut page.objects));
            let Some(token) = page.token.take() else {
                return Ok(());
            };
            page = self
                .call(async |c| methods::continue_retrieve_properties_ex(c, pc, &token).await)
                .await?;
        }
    }

    /// Some properties of one object. `Gone` when the server no longer knows it.
    pub(crate) async fn properties(&self, obj: &MoRef, paths: &[&str]) -> Result<ObjectContent, VimError> {
        let spec = PropertyFilterSpec::of_objects(std::slice::from_ref(obj), paths);
        match self.retrieve(&spec).await {
            Ok(found) => found.into_iter().next().ok_or_else(|| VimError::Gone(obj.clone())),
            Err(e) if e.is_object_gone() => Err(VimError::Gone(obj.clone())),
            Err(e) => Err(e),
        }
    }
}
