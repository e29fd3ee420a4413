//! The inventory: datacenters, hosts, pools and datastores in one read, and finding a VM.

use std::collections::HashMap;

use crate::vim::methods::{self, ObjectSpec, PropertyFilterSpec, PropertySpec, TraversalSpec};
use crate::vim::{HostConnectionState, MoRef, ObjectContent};

use super::{Session, Task, VimError};

#[derive(Clone, Debug)]
pub struct DatacenterInfo {
    pub moref: MoRef,
    pub name: String,
    pub vm_folder: MoRef,
}

impl DatacenterInfo {
    /// RegisterVM_Task in this datacenter's VM folder, on `host` and its root `pool`.
    pub async fn register_vm<'s>(
        &self,
        session: &'s Session,
        vmx: &str,
        pool: &MoRef,
        host: &MoRef,
    ) -> Result<Task<'s>, VimError> {
        let folder = &self.vm_folder;
        let t = session
            .call(async |c| methods::register_vm_task(c, folder, vmx, pool, Some(host)).await)
            .await?;
        Ok(Task::new(session, t, "RegisterVM_Task"))
    }
}

#[derive(Clone, Debug)]
pub struct HostInfo {
    pub moref: MoRef,
    pub name: String,
    pub connection_state: HostConnectionState,
    /// The ComputeResource (or cluster) the host belongs to.
    pub parent: Option<MoRef>,
}

#[derive(Clone, Debug)]
pub struct DatastoreInfo {
    pub moref: MoRef,
    pub name: String,
    pub url: String,
}

/// A snapshot of the inventory above the VMs.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub datacenters: Vec<DatacenterInfo>,
    pub hosts: Vec<HostInfo>,
    pub datastores: Vec<DatastoreInfo>,
    pools: HashMap<MoRef, MoRef>,
    parents: HashMap<MoRef, MoRef>,
}

fn traversals(with_vms: bool) -> Vec<TraversalSpec> {
    let t = |name: &str, kind: &str, path: &str, select: &[&str]| TraversalSpec {
        name: name.into(),
        kind: kind.into(),
        path: path.into(),
        select: select.iter().map(|s| s.to_string()).collect(),
    };
    // With VMs, a folder's vApps are walked into too (VMs can live inside a vApp).
    let folder_select: &[&str] = if with_vms {
        &["folder", "dcHost", "dcVm", "dcDs", "crHost", "vappVm"]
    } else {
        &["folder", "dcHost", "dcVm", "dcDs", "crHost"]
    };
    let mut v = vec![
        t("folder", "Folder", "childEntity", folder_select),
        t("dcHost", "Datacenter", "hostFolder", &["folder"]),
        t("dcDs", "Datacenter", "datastore", &[]),
        t("crHost", "ComputeResource", "host", &[]),
    ];
    if with_vms {
        v.push(t("dcVm", "Datacenter", "vmFolder", &["folder", "vappVm"]));
        v.push(t("vappVm", "VirtualApp", "vm", &[]));
    } else {
        v.push(t("dcVm", "Datacenter", "vmFolder", &[]));
    }
    v
}

fn from_root(root: &MoRef, props: Vec<PropertySpec>, with_vms: bool) -> PropertyFilterSpec {
    PropertyFilterSpec {
        props,
        objects: vec![ObjectSpec {
            obj: root.clone(),
            skip: false,
            traversals: traversals(with_vms),
        }],
    }
}

fn spec(kind: &str, paths: &[&str]) -> PropertySpec {
    PropertySpec {
        kind: kind.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

fn moref_prop(o: &ObjectContent, name: &str) -> Option<MoRef> {
    o.prop(name).and_then(|e| MoRef::from_xml(e).ok())
}

impl Inventory {
    pub async fn load(session: &Session) -> Result<Inventory, VimError> {
        let props = vec![
            spec("Folder", &["parent"]),
            spec("Datacenter", &["name", "vmFolder", "parent"]),
            spec("HostSystem", &["name", "runtime.connectionState", "parent"]),
            spec("ComputeResource", &["resourcePool", "parent"]),
            spec("Datastore", &["summary.name", "summary.url"]),
        ];
        let root = &session.content().root_folder;
        let objects = session.retrieve(&from_root(root, props, false)).await?;
        let mut inv = Inventory::default();
        for o in &objects {
            if let Some(p) = moref_prop(o, "parent") {
                inv.parents.insert(o.obj.clone(), p);
            }
            match o.obj.kind.as_str() {
                "Datacenter" => {
                    if let (Some(name), Some(vm_folder)) = (o.text("name"), moref_prop(o, "vmFolder")) {
                        inv.datacenters.push(DatacenterInfo {
                            moref: o.obj.clone(),
                            name: name.to_string(),
                            vm_folder,
                        });
                    }
                }
                "HostSystem" => inv.hosts.push(HostInfo {
                    moref: o.obj.clone(),
                    name: o.text("name").unwrap_or_default().to_string(),
                    connection_state: HostConnectionState::parse(
                        o.text("runtime.connectionState").unwrap_or("connected"),
                    ),
                    parent: moref_prop(o, "parent"),
                }),
                "ComputeResource" | "ClusterComputeResource" => {
                    if let Some(pool) = moref_prop(o, "resourcePool") {
                        inv.pools.insert(o.obj.clone(), pool);
                    }
                }
                "Datastore" => inv.datastores.push(DatastoreInfo {
                    moref: o.obj.clone(),
                    name: o.text("summary.name").unwrap_or_default().to_string(),
                    url: o.text("summary.url").unwrap_or_default().to_string(),
                }),
                _ => {}
            }
        }
        Ok(inv)
    }

    /// A host by its inventory name (case-insensitive, as DNS names are).
    pub fn host_by_name(&self, name: &str) -> Option<&HostInfo> {
        self.hosts.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }

    pub fn host(&self, moref: &MoRef) -> Option<&HostInfo> {
        self.hosts.iter().find(|h| &h.moref == moref)
    }

    /// The root resource pool of the host's compute resource (cluster or standalone).
    pub fn pool_for_host(&self, host: &MoRef) -> Option<&MoRef> {
        self.host(host)
            .and_then(|h| h.parent.as_ref())
            .and_then(|cr| self.pools.get(cr))
    }

    /// The datacenter an entity lives in, by its parent chain.
    pub fn datacenter_of(&self, entity: &MoRef) -> Option<&DatacenterInfo> {
        let mut cur = entity.clone();
        for _ in 0..64 {
            if let Some(dc) = self.datacenters.iter().find(|d| d.moref == cur) {
                return Some(dc);
            }
            cur = self.parents.get(&cur)?.clone();
        }
        None
    }

    pub fn datacenter_by_name(&self, name: &str) -> Option<&DatacenterInfo> {
        self.datacenters.iter().find(|d| d.name == name)
    }

    /// `/vmfs/volumes/<uuid-or-name>/dir/x.vmx` to `[name] dir/x.vmx`, through the datastores' url and name.
    pub fn datastore_path(&self, vmfs_path: &str) -> Option<String> {
        let rest = vmfs_path.strip_prefix("/vmfs/volumes/")?;
        let (volume, file) = rest.split_once('/')?;
        let ds = self
            .datastores
            .iter()
            .find(|d| d.name == volume || d.url.trim_end_matches('/').rsplit('/').next() == Some(volume))?;
        Some(format!("[{}] {}", ds.name, file))
    }
}

/// How the VM was named in the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmSelector {
    /// `[datastore] dir/x.vmx` or `/vmfs/volumes/<uuid-or-name>/dir/x.vmx`.
    Vmx(String),
    Name(String),
    Uuid(String),
}

impl std::fmt::Display for VmSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmSelector::Vmx(p) => write!(f, "vmx {p}"),
            VmSelector::Name(n) => write!(f, "name {n}"),
            VmSelector::Uuid(u) => write!(f, "uuid {u}"),
        }
    }
}

/// Checks the path's form before any network traffic.
pub fn validate_vmx(path: &str) -> Result<(), String> {
    let p = path.trim();
    let ok_bracket = p.starts_with('[') && p.find("] ").is_some_and(|i| i > 1 && p.len() > i + 2);
    let ok_vmfs = p
        .strip_prefix("/vmfs/volumes/")
        .is_some_and(|r| r.split_once('/').is_some_and(|(v, f)| !v.is_empty() && !f.is_empty()));
    if !(ok_bracket || ok_vmfs) {
        return Err(format!(
            "'{path}' is not a .vmx path vmha understands: give '[datastore] dir/name.vmx' or '/vmfs/volumes/<datastore uuid or name>/dir/name.vmx'"
        ));
    }
    if !p.to_ascii_lowercase().ends_with(".vmx") {
        return Err(format!(
            "'{path}' does not end in .vmx: name the VM's configuration file"
        ));
    }
    Ok(())
}

/// Where a VM can be looked for: the selector resolved to a datastore path if it is one.
#[derive(Clone, Debug)]
pub struct FoundVm {
    pub vm: Option<MoRef>,
    /// The `[ds] path` form, when the selector was a path.
    pub vmx: Option<String>,
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// VM names per answer when searching by name: the search reads every VM's name, and pages keep its
/// memory flat in a large inventory (5,000 VMs: five answers, not one of several megabytes).
const NAME_PAGE: u32 = 1000;

/// Finds a VM named by name or uuid in every datacenter without reading the inventory first: `None`
/// for a .vmx path (FindByDatastorePath needs a datacenter, so the inventory).
pub async fn find_vm_anywhere(session: &Session, sel: &VmSelector) -> Option<Result<FoundVm, VimError>> {
    match sel {
        VmSelector::Vmx(_) => None,
        VmSelector::Uuid(uuid) => Some(
            async {
                let si = session.search_index()?;
                for instance in [false, true] {
                    let found = session
                        .call(async |c| methods::find_by_uuid(c, &si, None, uuid, instance).await)
                        .await?;
                    if found.is_some() {
                        return Ok(FoundVm { vm: found, vmx: None });
                    }
                }
                Ok(FoundVm { vm: None, vmx: None })
            }
            .await,
        ),
        VmSelector::Name(name) => {
            let t = |name: &str, kind: &str, path: &str, select: &[&str]| TraversalSpec {
                name: name.into(),
                kind: kind.into(),
                path: path.into(),
                select: select.iter().map(|s| s.to_string()).collect(),
            };
            // Only down to the VMs: folders, datacenters' VM folders, vApps.
            let spec = PropertyFilterSpec {
                props: vec![spec("VirtualMachine", &["name"])],
                objects: vec![ObjectSpec {
                    obj: session.content().root_folder.clone(),
                    skip: false,
                    traversals: vec![
                        t("folder", "Folder", "childEntity", &["folder", "dcVm", "vappVm"]),
                        t("dcVm", "Datacenter", "vmFolder", &["folder", "vappVm"]),
                        t("vappVm", "VirtualApp", "vm", &[]),
                    ],
                }],
            };
            let mut matches = Vec::new();
            let paged = session
                .retrieve_pages(&spec, Some(NAME_PAGE), |page| {
                    matches.extend(
                        page.into_iter()
                            .filter(|o| o.obj.kind == "VirtualMachine" && o.text("name") == Some(name.as_str()))
                            .map(|o| o.obj),
                    )
                })
                .await;
            Some(paged.and_then(|()| one_of(name, matches)))
        }
    }
}

/// One VM as a fence agent's `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVm {
    pub moref: MoRef,
    pub name: String,
    /// The BIOS UUID (`config.uuid`); `None` for a VM whose configuration cannot be read.
    pub uuid: Option<String>,
    pub power_state: crate::vim::PowerState,
}

/// Every VM of the server (all datacenters, folders and vApps) with its name, BIOS UUID and power
/// state, read in pages of [`NAME_PAGE`] so a large inventory never lands in one answer.
pub async fn list_vms(session: &Session) -> Result<Vec<ListedVm>, VimError> {
    let t = |name: &str, kind: &str, path: &str, select: &[&str]| TraversalSpec {
        name: name.into(),
        kind: kind.into(),
        path: path.into(),
        select: select.iter().map(|s| s.to_string()).collect(),
    };
    let spec = PropertyFilterSpec {
        props: vec![spec("VirtualMachine", &["name", "config.uuid", "runtime.powerState"])],
        objects: vec![ObjectSpec {
            obj: session.content().root_folder.clone(),
            skip: false,
            traversals: vec![
                t("folder", "Folder", "childEntity", &["folder", "dcVm", "vappVm"]),
                t("dcVm", "Datacenter", "vmFolder", &["folder", "vappVm"]),
                t("vappVm", "VirtualApp", "vm", &[]),
            ],
        }],
    };
    let mut out = Vec::new();
    session
        .retrieve_pages(&spec, Some(NAME_PAGE), |page| {
            out.extend(page.into_iter().filter(|o| o.obj.kind == "VirtualMachine").map(|o| {
                ListedVm {
                    name: o.text("name").unwrap_or_default().to_string(),
                    uuid: o
                        .text("config.uuid")
                        .map(|u| u.trim().to_string())
                        .filter(|u| !u.is_empty()),
                    power_state: crate::vim::PowerState::parse(o.text("runtime.powerState").unwrap_or_default()),
                    moref: o.obj,
                }
            }))
        })
        .await?;
    Ok(out)
}

fn one_of(name: &str, matches: Vec<MoRef>) -> Result<FoundVm, VimError> {
    match matches.as_slice() {
        [] => Ok(FoundVm { vm: None, vmx: None }),
        [one] => Ok(FoundVm {
            vm: Some(one.clone()),
            vmx: None,
        }),
        many => Err(VimError::AmbiguousName {
            name: name.to_string(),
            count: many.len(),
            morefs: names(many.iter().map(|m| m.value.as_str())),
        }),
    }
}

/// Finds the VM. `Ok(FoundVm { vm: None, .. })` means it is not registered.
pub async fn find_vm(
    session: &Session,
    inv: &Inventory,
    sel: &VmSelector,
    datacenter: Option<&str>,
) -> Result<FoundVm, VimError> {
    let si = session.search_index()?;
    let dcs: Vec<&DatacenterInfo> = match datacenter {
        Some(name) => vec![
            inv.datacenter_by_name(name)
                .ok_or_else(|| VimError::UnknownDatacenter {
                    name: name.to_string(),
                    known: names(inv.datacenters.iter().map(|d| d.name.as_str())),
                })?,
        ],
        None => inv.datacenters.iter().collect(),
    };
    match sel {
        VmSelector::Uuid(uuid) => {
            for instance in [false, true] {
                for dc in &dcs {
                    let dc = &dc.moref;
                    let found = session
                        .call(async |c| methods::find_by_uuid(c, &si, Some(dc), uuid, instance).await)
                        .await?;
                    if let Some(vm) = found {
                        return Ok(FoundVm {
                            vm: Some(vm),
                            vmx: None,
                        });
                    }
                }
            }
            Ok(FoundVm { vm: None, vmx: None })
        }
        VmSelector::Vmx(path) => {
            let path = path.trim();
            let ds_path = if path.starts_with("/vmfs/volumes/") {
                inv.datastore_path(path).ok_or_else(|| VimError::UnknownVolume {
                    path: path.to_string(),
                    known: names(inv.datastores.iter().map(|d| d.name.as_str())),
                })?
            } else {
                path.to_string()
            };
            for dc in &dcs {
                let dc = &dc.moref;
                let found = session
                    .call(async |c| methods::find_by_datastore_path(c, &si, dc, &ds_path).await)
                    .await?;
                if let Some(vm) = found {
                    return Ok(FoundVm {
                        vm: Some(vm),
                        vmx: Some(ds_path),
                    });
                }
            }
            Ok(FoundVm {
                vm: None,
                vmx: Some(ds_path),
            })
        }
        VmSelector::Name(name) => {
            // From each chosen datacenter's VM folder, so --datacenter restricts the search.
            let mut matches: Vec<MoRef> = vec![];
            for dc in &dcs {
                let props = vec![spec("VirtualMachine", &["name"])];
                let spec = from_root(&dc.vm_folder, props, true);
                let all = session.retrieve(&spec).await?;
                matches.extend(
                    all.iter()
                        .filter(|o| o.obj.kind == "VirtualMachine" && o.text("name") == Some(name.as_str()))
                        .map(|o| o.obj.clone()),
                );
            }
            one_of(name, matches)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmx_forms() {
        assert!(validate_vmx("[datastore1] vm1/vm1.vmx").is_ok());
        assert!(validate_vmx("/vmfs/volumes/4c7f1a2b-1234/vm1/vm1.vmx").is_ok());
        assert!(validate_vmx("vm1.vmx").is_err());
        assert!(validate_vmx("[ds] vm1/vm1.vmdk").unwrap_err().contains(".vmx"));
        assert!(validate_vmx("/vmfs/volumes//x.vmx").is_err());
    }

    #[test]
    fn vmfs_path_resolves_by_uuid_or_name() {
        let inv = Inventory {
            datastores: vec![DatastoreInfo {
                moref: MoRef::new("Datastore", "datastore-1"),
                name: "shared1".into(),
                url: "ds:///vmfs/volumes/4c7f1a2b-5d9e0a10/".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            inv.datastore_path("/vmfs/volumes/4c7f1a2b-5d9e0a10/vm1/vm1.vmx")
                .as_deref(),
            Some("[shared1] vm1/vm1.vmx")
        );
        assert_eq!(
            inv.datastore_path("/vmfs/volumes/shared1/vm1/vm1.vmx").as_deref(),
            Some("[shared1] vm1/vm1.vmx")
        );
        assert_eq!(inv.datastore_path("/vmfs/volumes/other/vm1/vm1.vmx"), None);
    }
}
