//! Watching properties through a private PropertyCollector and WaitForUpdatesEx: no sleep-and-poll.

use std::collections::HashMap;
use std::time::Duration;

use crate::soap::Element;
use crate::vim::methods::{self, PropertyFilterSpec};
use crate::vim::{MoRef, ObjectUpdate};

use super::{Session, VimError};

/// A private collector with one filter; keeps the latest value of every watched property.
pub struct Watch<'a> {
    session: &'a Session,
    collector: MoRef,
    spec: PropertyFilterSpec,
    version: String,
    values: HashMap<(MoRef, String), Element>,
    gone: Vec<MoRef>,
}

impl<'a> Watch<'a> {
    pub async fn new(session: &'a Session, spec: PropertyFilterSpec) -> Result<Watch<'a>, VimError> {
        let collector =
            methods::create_property_collector(session.client(), &session.content().property_collector).await?;
        let w = Watch {
            session,
            collector,
            spec,
            version: String::new(),
            values: HashMap::new(),
            gone: vec![],
        };
        if let Err(e) = methods::create_filter(session.client(), &w.collector, &w.spec).await {
            w.close().await;
            return Err(e.into());
        }
        Ok(w)
    }

    /// Objects on a simple property list.
    pub async fn objects(session: &'a Session, objs: &[MoRef], paths: &[&str]) -> Result<Watch<'a>, VimError> {
        Watch::new(session, PropertyFilterSpec::of_objects(objs, paths)).await
    }

    /// Waits up to `max_wait` for changes and applies them. Returns the updates (empty when none came).
    /// The first call returns the current values of everything watched.
    pub async fn next(&mut self, max_wait: Duration) -> Result<Vec<ObjectUpdate>, VimError> {
        // The HTTP request must outlive the server-side wait.
        let cap = self
            .session
            .client()
            .request_timeout()
            .saturating_sub(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        // Round up: a wait of 0.4 s must not become maxWaitSeconds=0, which returns at once and would spin.
        let secs = max_wait.min(cap).as_millis().div_ceil(1000) as u64;
        let set = methods::wait_for_updates_ex(self.session.client(), &self.collector, &self.version, secs).await?;
        let Some(set) = set else { return Ok(vec![]) };
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
        Ok(set.objects)
    }

    pub fn get(&self, obj: &MoRef, path: &str) -> Option<&Element> {
        self.values.get(&(obj.clone(), path.to_string()))
    }

    pub fn text(&self, obj: &MoRef, path: &str) -> Option<&str> {
        self.get(obj, path).map(|e| e.text.as_str())
    }

    /// True once the object left the filter (deleted or unregistered).
    pub fn is_gone(&self, obj: &MoRef) -> bool {
        self.gone.contains(obj)
    }

    /// Starts over on a new collector (after a re-login, the old one is gone with the old session).
    pub async fn rebuild(&mut self) -> Result<(), VimError> {
        let c = self.session.client();
        self.collector = methods::create_property_collector(c, &self.session.content().property_collector).await?;
        methods::create_filter(c, &self.collector, &self.spec).await?;
        self.version.clear();
        Ok(())
    }

    /// Destroys the collector and with it the filter. Failures only matter to the log: logout cleans up too.
    pub async fn close(self) {
        if let Err(e) = methods::destroy_property_collector(self.session.client(), &self.collector).await {
            tracing::debug!("DestroyPropertyCollector: {e}");
        }
    }
}
