//! A PropertyCollector with one filter, fed by WaitForUpdatesEx: no sleep-and-poll. The collector is the
//! session's default one when this process logged the session in and nothing else waited on it yet
//! (saves CreatePropertyCollector), else a private one.
//! Private to the client layer: commands wait through [`super::wait::until`] and watch a VM through
//! [`super::stream::vm_states`], which own a `Watch` and close it on every exit path.

use std::collections::HashMap;
use std::time::Duration;

use crate::soap::Element;
use crate::vim::MoRef;
use crate::vim::methods::{self, PropertyFilterSpec};

use super::{Session, VimError};

pub(crate) struct Watch<'a> {
    session: &'a Session,
    /// `None` once destroyed (or never created after a failed rebuild).
    collector: Option<MoRef>,
    /// What this watch destroys when done: its private collector (the filter goes with it), or its
    /// filter on the session's default collector (the collector stays).
    owned: Option<MoRef>,
    /// Never the session's default collector (see [`Watch::open_private`]).
    private_only: bool,
    /// The login the collector belongs to; it dies with that session.
    generation: u64,
    spec: PropertyFilterSpec,
    version: String,
    values: HashMap<(MoRef, String), Element>,
    gone: Vec<MoRef>,
}

impl<'a> Watch<'a> {
    pub(crate) async fn open(session: &'a Session, spec: PropertyFilterSpec) -> Result<Watch<'a>, VimError> {
        Watch::opened(session, spec, false).await
    }

    /// A watch on a collector of its own, whatever the session: for a watch that lives for days
    /// (`monitor --watch`). Nothing else in the process can disturb it, and a simulator that keys
    /// change listeners by moref (govmomi's vcsim gives every session's default collector the same
    /// one) cannot hand its updates to another session's wait.
    pub(crate) async fn open_private(session: &'a Session, spec: PropertyFilterSpec) -> Result<Watch<'a>, VimError> {
        Watch::opened(session, spec, true).await
    }

    async fn opened(session: &'a Session, spec: PropertyFilterSpec, private_only: bool) -> Result<Watch<'a>, VimError> {
        let mut w = Watch {
            session,
            collector: None,
            owned: None,
            private_only,
            generation: session.generation(),
            spec,
            version: String::new(),
            values: HashMap::new(),
            gone: vec![],
        };
        w.create().await?;
        Ok(w)
    }

    /// A collector with the filter; returns the collector.
    async fn create(&mut self) -> Result<MoRef, VimError> {
        let s = self.session;
        let claimed = if self.private_only {
            None
        } else {
            s.claim_default_collector()
        };
        let (collector, owned) = match claimed {
            Some(pc) => (pc, None),
            None => {
                let root = &s.content().property_collector;
                let pc = s
                    .call(async |c| methods::create_property_collector(c, root).await)
                    .await?;
                s.track_collector(&pc);
                (pc.clone(), Some(pc))
            }
        };
        self.generation = s.generation();
        self.collector = Some(collector.clone());
        self.owned = owned;
        let spec = &self.spec;
        match s
            .call_once(async |c| methods::create_filter(c, &collector, spec).await)
            .await
        {
            // On the default collector, the filter is what is ours to destroy.
            Ok(filter) if self.owned.is_none() => {
                s.track_collector(&filter);
                self.owned = Some(filter);
            }
            Ok(_) => {}
            Err(e) => {
                self.close_collector().await;
                return Err(e);
            }
        }
        self.version.clear();
        Ok(collector)
    }

    /// Starts over on a new collector; the first wait then returns every watched value again.
    async fn rebuild(&mut self) -> Result<MoRef, VimError> {
        self.close_collector().await;
        self.create().await
    }

    /// The collector to wait on: this one, or a new one when it died with an earlier session.
    async fn current(&mut self) -> Result<MoRef, VimError> {
        match &self.collector {
            Some(c) if self.generation == self.session.generation() => Ok(c.clone()),
            _ => self.rebuild().await,
        }
    }

    /// Waits up to `max_wait` for changes and applies them. Returns whether anything changed; the first
    /// call returns the current values of everything watched. A session the server expired is logged in
    /// again and the collector rebuilt (it died with the old session), which reads every value afresh.
    pub(crate) async fn next(&mut self, max_wait: Duration) -> Result<bool, VimError> {
        let collector = self.current().await?;
        match self.wait(&collector, max_wait).await {
            Err(e) if e.is_not_authenticated() => {
                self.session.relogin().await?;
                let collector = self.rebuild().await?;
                self.wait(&collector, Duration::ZERO).await
            }
            other => other,
        }
    }

    async fn wait(&mut self, collector: &MoRef, max_wait: Duration) -> Result<bool, VimError> {
        // The HTTP request must outlive the server-side wait.
        let cap = self
            .session
            .request_timeout()
            .saturating_sub(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        // Round up: a wait of 0.4 s must not become maxWaitSeconds=0, which returns at once and would spin.
        let secs = max_wait.min(cap).as_millis().div_ceil(1000) as u64;
        let version = self.version.clone();
        let set = self
            .session
            .call_once(async |c| methods::wait_for_updates_ex(c, collector, &version, secs).await)
            .await?;
        let Some(set) = set else { return Ok(false) };
        self.version = set.version.clone();
        for obj in &set.objects {
            if obj.kind == "leave" {
                self.gone.push(obj.obj.clone());
                self.values.retain(|(o, _), _| o != &obj.obj);
                continue;
            }
            for ch in &obj.changes {
                let key = (obj.obj.clone(), ch.name.clone());
                match (&ch.op[..], &ch.val) {
                    ("remove" | "indirectRemove", _) | (_, None) => {
                        self.values.remove(&key);
                    }
                    (_, Some(v)) => {
                        self.values.insert(key, v.clone());
                    }
                }
            }
        }
        Ok(!set.objects.is_empty())
    }

    pub(crate) fn get(&self, obj: &MoRef, path: &str) -> Option<&Element> {
        self.values.get(&(obj.clone(), path.to_string()))
    }

    pub(crate) fn text(&self, obj: &MoRef, path: &str) -> Option<&str> {
        self.get(obj, path).map(|e| e.text.as_str())
    }

    /// True once the object left the filter (deleted or unregistered).
    pub(crate) fn is_gone(&self, obj: &MoRef) -> bool {
        self.gone.contains(obj)
    }

    async fn close_collector(&mut self) {
        self.collector = None;
        let Some(obj) = self.owned.take() else { return };
        self.session.untrack_collector(&obj);
        // A collector of an earlier session died with it. After a lost connection only Logout is tried:
        // it ends the session and its collectors, and one short cleanup call keeps the exit bounded.
        if self.generation == self.session.generation() && !self.session.is_degraded() {
            self.session.destroy_watch_object(&obj).await;
        }
    }

    /// Destroys the collector, and with it the filter (on the default collector: the filter), within the
    /// session's cleanup budget. A session logged out when the command ends takes its collectors and
    /// filters with it: then the call is saved.
    pub(crate) async fn close(mut self) {
        if self.session.ends_with_command() && self.generation == self.session.generation() {
            if let Some(pc) = self.collector.take() {
                tracing::debug!("collector {pc} left for Logout to end with the session");
            }
            return;
        }
        self.close_collector().await;
    }
}

/// Drop cannot await. A watch dropped unclosed (its command was interrupted by a signal) leaves its
/// collector to the server: Logout, which always follows, ends the session and every collector in it.
impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(pc) = &self.collector {
            tracing::debug!("collector {pc} left for Logout to end with the session");
        }
    }
}
