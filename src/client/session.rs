//! Sessions: connect, log in on the SessionManager the server names, log in again after expiry, log out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::SecretString;

use crate::soap::record::Recorder;
use crate::soap::{FaultKind, SoapClient, SoapError, TransportOptions};
use crate::vim::methods::{self, PropertyFilterSpec};
use crate::vim::{ObjectContent, ServiceContent};

use super::VimError;

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
}

#[derive(Debug)]
pub struct Session {
    client: SoapClient,
    content: ServiceContent,
    credentials: Credentials,
    logged_in: AtomicBool,
}

impl Session {
    /// RetrieveServiceContent, then Login on the SessionManager it names.
    pub async fn connect(opts: ConnectOptions) -> Result<Session, VimError> {
        let recorder = match &opts.record {
            Some((dir, label)) => {
                Some(Recorder::new(dir, label).map_err(|e| SoapError::Record(format!("{}: {e}", dir.display())))?)
            }
            None => None,
        };
        let client = SoapClient::new(opts.transport, recorder)?;
        let content = methods::retrieve_service_content(&client).await?;
        client.negotiate_version(&content.about.api_version);
        let session = Session {
            client,
            content,
            credentials: opts.credentials,
            logged_in: AtomicBool::new(false),
        };
        session.login().await?;
        Ok(session)
    }

    async fn login(&self) -> Result<(), VimError> {
        let sm = self.session_manager()?;
        match methods::login(&self.client, &sm, &self.credentials.user, &self.credentials.password).await {
            Ok(_) => {
                self.logged_in.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(SoapError::Fault { fault, .. }) if fault.kind == FaultKind::InvalidLogin => {
                Err(VimError::LoginRefused {
                    user: self.credentials.user.clone(),
                    message: fault.message,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn session_manager(&self) -> Result<crate::vim::MoRef, VimError> {
        self.content
            .session_manager
            .clone()
            .ok_or_else(|| VimError::Unexpected("the server's ServiceContent names no sessionManager".into()))
    }

    /// Logs in again on a fresh cookie, after the server expired the session.
    pub async fn relogin(&self) -> Result<(), VimError> {
        self.client.clear_session();
        self.logged_in.store(false, Ordering::SeqCst);
        self.login().await
    }

    /// Logs out. Safe to call twice; errors are reported, not raised, since there is nothing left to do.
    pub async fn logout(&self) {
        if !self.logged_in.swap(false, Ordering::SeqCst) {
            return;
        }
        let Ok(sm) = self.session_manager() else {
            return;
        };
        // Bounded: a dead server must not hold the exit up for a whole request timeout.
        let limit = self.client.request_timeout().min(Duration::from_secs(10));
        match tokio::time::timeout(limit, methods::logout(&self.client, &sm)).await {
            Ok(Ok(())) => tracing::debug!("logged out"),
            Ok(Err(e)) => tracing::warn!("logout failed: {e}"),
            Err(_) => tracing::warn!("logout got no answer within {} s", limit.as_secs()),
        }
        self.client.clear_session();
    }

    pub fn client(&self) -> &SoapClient {
        &self.client
    }

    pub fn content(&self) -> &ServiceContent {
        &self.content
    }

    pub fn is_vcenter(&self) -> bool {
        self.content.about.is_vcenter()
    }

    /// RetrievePropertiesEx with its continuation pages.
    pub async fn retrieve(&self, spec: &PropertyFilterSpec) -> Result<Vec<ObjectContent>, VimError> {
        let pc = &self.content.property_collector;
        let mut page = methods::retrieve_properties_ex(&self.client, pc, spec).await?;
        let mut out = std::mem::take(&mut page.objects);
        while let Some(token) = page.token.take() {
            page = methods::continue_retrieve_properties_ex(&self.client, pc, &token).await?;
            out.append(&mut page.objects);
        }
        Ok(out)
    }

    /// Some properties of one object.
    pub async fn properties(&self, obj: &crate::vim::MoRef, paths: &[&str]) -> Result<ObjectContent, VimError> {
        let spec = PropertyFilterSpec::of_objects(std::slice::from_ref(obj), paths);
        self.retrieve(&spec)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| VimError::Gone(obj.clone()))
    }
}
