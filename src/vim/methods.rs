//! One function per vim25 method vmha calls: builds the request body, sends it, decodes the answer.
//! Element order follows the WSDL: real servers reject out-of-order parameters.

use secrecy::{ExposeSecret, SecretString};

use super::types::*;
use crate::soap::xml::escape;
use crate::soap::{Element, SoapClient, SoapError};

/// Builds a method's inner XML.
#[derive(Default)]
pub struct Body(String);

impl Body {
    pub fn this(m: &MoRef) -> Body {
        let mut b = Body::default();
        b.moref("_this", m);
        b
    }
    pub fn moref(&mut self, name: &str, m: &MoRef) -> &mut Self {
        self.0.push_str(&format!(
            "<{name} type=\"{}\">{}</{name}>",
            escape(&m.kind),
            escape(&m.value)
        ));
        self
    }
    pub fn opt_moref(&mut self, name: &str, m: Option<&MoRef>) -> &mut Self {
        if let Some(m) = m {
            self.moref(name, m);
        }
        self
    }
    pub fn text(&mut self, name: &str, v: &str) -> &mut Self {
        self.0.push_str(&format!("<{name}>{}</{name}>", escape(v)));
        self
    }
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.0.push_str(xml);
        self
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn decode<T>(method: &str, r: Result<T, DecodeError>) -> Result<T, SoapError> {
    r.map_err(|e| SoapError::Parse {
        method: method.into(),
        cause: e.to_string(),
    })
}

fn returnval<'a>(method: &str, resp: &'a Element) -> Result<&'a Element, SoapError> {
    resp.child("returnval").ok_or_else(|| SoapError::Parse {
        method: method.into(),
        cause: "missing <returnval>".into(),
    })
}

fn moref_result(method: &str, resp: &Element) -> Result<MoRef, SoapError> {
    decode(method, MoRef::from_xml(returnval(method, resp)?))
}

fn opt_moref_result(method: &str, resp: &Element) -> Result<Option<MoRef>, SoapError> {
    resp.child("returnval")
        .map(|r| decode(method, MoRef::from_xml(r)))
        .transpose()
}

pub async fn retrieve_service_content(c: &SoapClient) -> Result<ServiceContent, SoapError> {
    let m = "RetrieveServiceContent";
    let resp = c
        .call(
            m,
            Body::this(&MoRef::new("ServiceInstance", "ServiceInstance")).as_str(),
        )
        .await?;
    decode(m, ServiceContent::from_xml(returnval(m, &resp)?))
}

pub async fn login(c: &SoapClient, sm: &MoRef, user: &str, password: &SecretString) -> Result<UserSession, SoapError> {
    let m = "Login";
    let mut b = Body::this(sm);
    b.text("userName", user).text("password", password.expose_secret());
    let resp = c.call(m, b.as_str()).await?;
    decode(m, UserSession::from_xml(returnval(m, &resp)?))
}

pub async fn logout(c: &SoapClient, sm: &MoRef) -> Result<(), SoapError> {
    c.call("Logout", Body::this(sm).as_str()).await.map(|_| ())
}

/// PropertySpec: which properties of which type.
#[derive(Clone, Debug)]
pub struct PropertySpec {
    pub kind: String,
    pub paths: Vec<String>,
}

/// TraversalSpec: how to walk from one object to others.
#[derive(Clone, Debug)]
pub struct TraversalSpec {
    pub name: String,
    pub kind: String,
    pub path: String,
    pub select: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ObjectSpec {
    pub obj: MoRef,
    pub skip: bool,
    pub traversals: Vec<TraversalSpec>,
}

#[derive(Clone, Debug)]
pub struct PropertyFilterSpec {
    pub props: Vec<PropertySpec>,
    pub objects: Vec<ObjectSpec>,
}

impl PropertyFilterSpec {
    /// Some properties of some objects, no traversal.
    pub fn of_objects(objs: &[MoRef], paths: &[&str]) -> PropertyFilterSpec {
        let mut kinds: Vec<&str> = objs.iter().map(|o| o.kind.as_str()).collect();
        kinds.sort();
        kinds.dedup();
        PropertyFilterSpec {
            props: kinds
                .into_iter()
                .map(|k| PropertySpec {
                    kind: k.to_string(),
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
            objects: objs
                .iter()
                .map(|o| ObjectSpec {
                    obj: o.clone(),
                    skip: false,
                    traversals: vec![],
                })
                .collect(),
        }
    }

    pub fn to_xml(&self, elem: &str) -> String {
        let mut s = format!("<{elem}>");
        for p in &self.props {
            s.push_str(&format!("<propSet><type>{}</type>", escape(&p.kind)));
            if p.paths.is_empty() {
                s.push_str("<all>false</all>");
            }
            for path in &p.paths {
                s.push_str(&format!("<pathSet>{}</pathSet>", escape(path)));
            }
            s.push_str("</propSet>");
        }
        for o in &self.objects {
            s.push_str(&format!(
                "<objectSet><obj type=\"{}\">{}</obj><skip>{}</skip>",
                escape(&o.obj.kind),
                escape(&o.obj.value),
                o.skip
            ));
            for t in &o.traversals {
                s.push_str(&format!(
                    "<selectSet xsi:type=\"TraversalSpec\"><name>{}</name><type>{}</type><path>{}</path><skip>false</skip>",
                    escape(&t.name),
                    escape(&t.kind),
                    escape(&t.path)
                ));
                for sel in &t.select {
                    s.push_str(&format!("<selectSet><name>{}</name></selectSet>", escape(sel)));
                }
                s.push_str("</selectSet>");
            }
            s.push_str("</objectSet>");
        }
        s.push_str(&format!("</{elem}>"));
        s
    }
}

/// `max_objects`: at most this many objects per answer, the rest behind a token (the server may send
/// fewer); `None` leaves the page size to the server.
pub async fn retrieve_properties_ex(
    c: &SoapClient,
    pc: &MoRef,
    spec: &PropertyFilterSpec,
    max_objects: Option<u32>,
) -> Result<RetrieveResult, SoapError> {
    let m = "RetrievePropertiesEx";
    let mut b = Body::this(pc);
    b.raw(&spec.to_xml("specSet"));
    match max_objects {
        Some(n) => b.raw(&format!("<options><maxObjects>{n}</maxObjects></options>")),
        None => b.raw("<options></options>"),
    };
    let resp = c.call(m, b.as_str()).await?;
    // No returnval at all means "no objects".
    match resp.child("returnval") {
        Some(r) => decode(m, RetrieveResult::from_xml(r)),
        None => Ok(RetrieveResult::default()),
    }
}

pub async fn continue_retrieve_properties_ex(
    c: &SoapClient,
    pc: &MoRef,
    token: &str,
) -> Result<RetrieveResult, SoapError> {
    let m = "ContinueRetrievePropertiesEx";
    let mut b = Body::this(pc);
    b.text("token", token);
    let resp = c.call(m, b.as_str()).await?;
    decode(m, RetrieveResult::from_xml(returnval(m, &resp)?))
}

pub async fn create_property_collector(c: &SoapClient, pc: &MoRef) -> Result<MoRef, SoapError> {
    let resp = c.call("CreatePropertyCollector", Body::this(pc).as_str()).await?;
    moref_result("CreatePropertyCollector", &resp)
}

pub async fn destroy_property_collector(c: &SoapClient, pc: &MoRef) -> Result<(), SoapError> {
    c.call("DestroyPropertyCollector", Body::this(pc).as_str())
        .await
        .map(|_| ())
}

pub async fn create_filter(c: &SoapClient, pc: &MoRef, spec: &PropertyFilterSpec) -> Result<MoRef, SoapError> {
    let mut b = Body::this(pc);
    b.raw(&spec.to_xml("spec")).text("partialUpdates", "false");
    let resp = c.call("CreateFilter", b.as_str()).await?;
    moref_result("CreateFilter", &resp)
}

pub async fn destroy_property_filter(c: &SoapClient, filter: &MoRef) -> Result<(), SoapError> {
    c.call("DestroyPropertyFilter", Body::this(filter).as_str())
        .await
        .map(|_| ())
}

/// Returns `None` when `max_wait_secs` passed with no change.
pub async fn wait_for_updates_ex(
    c: &SoapClient,
    pc: &MoRef,
    version: &str,
    max_wait_secs: u64,
) -> Result<Option<UpdateSet>, SoapError> {
    let m = "WaitForUpdatesEx";
    let mut b = Body::this(pc);
    b.text("version", version).raw(&format!(
        "<options><maxWaitSeconds>{max_wait_secs}</maxWaitSeconds></options>"
    ));
    let resp = c.call(m, b.as_str()).await?;
    resp.child("returnval")
        .map(|r| decode(m, UpdateSet::from_xml(r)))
        .transpose()
}

pub async fn find_by_datastore_path(
    c: &SoapClient,
    si: &MoRef,
    dc: &MoRef,
    path: &str,
) -> Result<Option<MoRef>, SoapError> {
    let mut b = Body::this(si);
    b.moref("datacenter", dc).text("path", path);
    let resp = c.call("FindByDatastorePath", b.as_str()).await?;
    opt_moref_result("FindByDatastorePath", &resp)
}

pub async fn find_by_uuid(
    c: &SoapClient,
    si: &MoRef,
    dc: Option<&MoRef>,
    uuid: &str,
    instance_uuid: bool,
) -> Result<Option<MoRef>, SoapError> {
    let mut b = Body::this(si);
    b.opt_moref("datacenter", dc)
        .text("uuid", uuid)
        .text("vmSearch", "true");
    if instance_uuid {
        b.text("instanceUuid", "true");
    }
    let resp = c.call("FindByUuid", b.as_str()).await?;
    opt_moref_result("FindByUuid", &resp)
}

pub async fn register_vm_task(
    c: &SoapClient,
    folder: &MoRef,
    path: &str,
    pool: &MoRef,
    host: Option<&MoRef>,
) -> Result<MoRef, SoapError> {
    let mut b = Body::this(folder);
    b.text("path", path)
        .text("asTemplate", "false")
        .moref("pool", pool)
        .opt_moref("host", host);
    let resp = c.call("RegisterVM_Task", b.as_str()).await?;
    moref_result("RegisterVM_Task", &resp)
}

pub async fn unregister_vm(c: &SoapClient, vm: &MoRef) -> Result<(), SoapError> {
    c.call("UnregisterVM", Body::this(vm).as_str()).await.map(|_| ())
}

pub async fn power_on_vm_task(c: &SoapClient, vm: &MoRef, host: Option<&MoRef>) -> Result<MoRef, SoapError> {
    let mut b = Body::this(vm);
    b.opt_moref("host", host);
    let resp = c.call("PowerOnVM_Task", b.as_str()).await?;
    moref_result("PowerOnVM_Task", &resp)
}

pub async fn power_off_vm_task(c: &SoapClient, vm: &MoRef) -> Result<MoRef, SoapError> {
    let resp = c.call("PowerOffVM_Task", Body::this(vm).as_str()).await?;
    moref_result("PowerOffVM_Task", &resp)
}

pub async fn shutdown_guest(c: &SoapClient, vm: &MoRef) -> Result<(), SoapError> {
    c.call("ShutdownGuest", Body::this(vm).as_str()).await.map(|_| ())
}

pub async fn answer_vm(c: &SoapClient, vm: &MoRef, question_id: &str, choice: &str) -> Result<(), SoapError> {
    let mut b = Body::this(vm);
    b.text("questionId", question_id).text("answerChoice", choice);
    c.call("AnswerVM", b.as_str()).await.map(|_| ())
}

pub async fn relocate_vm_task(c: &SoapClient, vm: &MoRef, pool: &MoRef, host: &MoRef) -> Result<MoRef, SoapError> {
    let mut b = Body::this(vm);
    b.raw("<spec>")
        .moref("pool", pool)
        .moref("host", host)
        .raw("</spec>")
        .text("priority", "defaultPriority");
    let resp = c.call("RelocateVM_Task", b.as_str()).await?;
    moref_result("RelocateVM_Task", &resp)
}

/// ShutdownHost_Task(_this, force), in WSDL order. `force`: shut down even when the host is not in
/// maintenance mode (its VMs die with it).
pub async fn shutdown_host_task(c: &SoapClient, host: &MoRef, force: bool) -> Result<MoRef, SoapError> {
    let mut b = Body::this(host);
    b.text("force", if force { "true" } else { "false" });
    let resp = c.call("ShutdownHost_Task", b.as_str()).await?;
    moref_result("ShutdownHost_Task", &resp)
}

/// RebootHost_Task(_this, force), in WSDL order; `force` as for shutdown.
pub async fn reboot_host_task(c: &SoapClient, host: &MoRef, force: bool) -> Result<MoRef, SoapError> {
    let mut b = Body::this(host);
    b.text("force", if force { "true" } else { "false" });
    let resp = c.call("RebootHost_Task", b.as_str()).await?;
    moref_result("RebootHost_Task", &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_spec_order_follows_wsdl() {
        let spec = PropertyFilterSpec {
            props: vec![PropertySpec {
                kind: "VirtualMachine".into(),
                paths: vec!["name".into()],
            }],
            objects: vec![ObjectSpec {
                obj: MoRef::new("Folder", "group-d1"),
                skip: true,
                traversals: vec![TraversalSpec {
                    name: "f".into(),
                    kind: "Folder".into(),
                    path: "childEntity".into(),
                    select: vec!["f".into()],
                }],
            }],
        };
        let xml = spec.to_xml("specSet");
        let p = xml.find("<propSet>").unwrap();
        let o = xml.find("<objectSet>").unwrap();
        assert!(p < o, "propSet must precede objectSet: {xml}");
        assert!(xml.contains("<skip>true</skip>"));
        assert!(xml.contains("xsi:type=\"TraversalSpec\""));
        assert!(xml.contains("<selectSet><name>f</name></selectSet>"));
    }

    #[test]
    fn host_power_body_follows_wsdl() {
        let mut b = Body::this(&MoRef::new("HostSystem", "host-21"));
        b.text("force", "true");
        assert_eq!(
            b.as_str(),
            "<_this type=\"HostSystem\">host-21</_this><force>true</force>"
        );
    }

    #[test]
    fn body_escapes_values() {
        let mut b = Body::this(&MoRef::new("SearchIndex", "SearchIndex"));
        b.text("path", "[ds & co] a<b>.vmx");
        assert!(b.as_str().contains("[ds &amp; co] a&lt;b&gt;.vmx"));
    }
}
