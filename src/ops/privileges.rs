//! The vSphere privileges vmha's user needs: `vmha role` prints them as commands that create the role, and
//! `vmha check --privileges` asks the server which of them the logged-in user lacks. [`PRIVILEGES`] is the one
//! list; a test holds the README's table ("The vSphere user's privileges") to it.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Ctx, OpError};
use crate::client::authz;
use crate::vim::{EntityPrivilege, MoRef};

/// Which kind of server the role is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// vCenter: a vCenter (SSO) user with a role on the vCenter root, propagated.
    Vcenter,
    /// ESXi: a local user of each host, for ESX-direct and for the host fallback when vCenter is down.
    Esx,
}

/// Where a privilege must be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every object vmha reads: the VM, its host, this node's host, their datacenter, VM folder and pool.
    Inventory,
    /// The VM itself (while it is not registered: the VM folder it is registered into, which it inherits from).
    Vm,
    /// The datacenter's VM folder, where a VM is registered.
    VmFolder,
    /// The root resource pool of this node's host, where a VM is registered, relocated or migrated to.
    ResourcePool,
}

impl Scope {
    /// The README's words for it.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Inventory => "every object vmha reads",
            Scope::Vm => "the VM",
            Scope::VmFolder => "the VM folder",
            Scope::ResourcePool => "the host's resource pool",
        }
    }
}

/// One privilege vmha's user needs.
#[derive(Debug, Serialize)]
pub struct Privilege {
    pub id: &'static str,
    pub on: Scope,
    pub vcenter: bool,
    pub esx: bool,
    /// Which commands (and vim25 methods) need it.
    pub needed_by: &'static str,
    /// What fails without it.
    pub without: &'static str,
}

impl Privilege {
    pub fn in_mode(&self, mode: Mode) -> bool {
        match mode {
            Mode::Vcenter => self.vcenter,
            Mode::Esx => self.esx,
        }
    }
}

/// The privileges vmha's commands need: the vSphere API's required privileges of the methods they call.
pub const PRIVILEGES: &[Privilege] = &[
    Privilege {
        id: "System.View",
        on: Scope::Inventory,
        vcenter: true,
        esx: true,
        needed_by: "every command (RetrievePropertiesEx, FindByUuid, FindByDatastorePath, WaitForUpdatesEx)",
        without: "the object is invisible: the VM or host is reported as not found",
    },
    Privilege {
        id: "System.Read",
        on: Scope::Inventory,
        vcenter: true,
        esx: true,
        needed_by: "every command (RetrievePropertiesEx, WaitForUpdatesEx)",
        without: "its state cannot be read: every command fails with NoPermission",
    },
    Privilege {
        id: "VirtualMachine.Interact.PowerOn",
        on: Scope::Vm,
        vcenter: true,
        esx: true,
        needed_by: "start (PowerOnVM_Task)",
        without: "start cannot power the VM on, so failover fails",
    },
    Privilege {
        id: "VirtualMachine.Interact.AnswerQuestion",
        on: Scope::Vm,
        vcenter: true,
        esx: true,
        needed_by: "start, stop (AnswerVM)",
        without: "the \"moved or copied\" question after a takeover stays unanswered, and the power-on never ends",
    },
    Privilege {
        id: "VirtualMachine.Interact.PowerOff",
        on: Scope::Vm,
        vcenter: true,
        esx: true,
        needed_by: "stop (ShutdownGuest, PowerOffVM_Task)",
        without: "stop can neither shut the guest down nor power it off: the stop fails and the cluster fences the node",
    },
    Privilege {
        id: "VirtualMachine.Inventory.Register",
        on: Scope::VmFolder,
        vcenter: true,
        esx: true,
        needed_by: "start of an unregistered VM, takeover from a dead host (RegisterVM_Task)",
        without: "an unregistered VM cannot be started, and a VM on a dead host cannot be taken over",
    },
    Privilege {
        id: "VirtualMachine.Inventory.Unregister",
        on: Scope::Vm,
        vcenter: true,
        esx: true,
        needed_by: "stop on ESX-direct or with --unregister, takeover from a dead host (UnregisterVM)",
        without: "an ESX-direct stop fails after the power-off, and a VM on a dead host cannot be taken over",
    },
    Privilege {
        id: "Resource.AssignVMToPool",
        on: Scope::ResourcePool,
        vcenter: true,
        esx: true,
        needed_by: "start that registers or relocates, migrate (RegisterVM_Task, RelocateVM_Task)",
        without: "no VM can be registered on, relocated or migrated to this node's host",
    },
    Privilege {
        id: "Resource.ColdMigrate",
        on: Scope::Vm,
        vcenter: true,
        esx: false,
        needed_by: "start of a VM powered off on another host, migrate (RelocateVM_Task)",
        without: "start cannot move a powered-off VM to this node's host",
    },
    Privilege {
        id: "Resource.HotMigrate",
        on: Scope::Vm,
        vcenter: true,
        esx: false,
        needed_by: "migrate, OCF migrate_to of a running VM (RelocateVM_Task)",
        without: "live migration (vmha migrate, Pacemaker's allow-migrate) fails",
    },
];

/// Part of every role vSphere creates (AddAuthorizationRole adds them): not named to role.create.
pub const IN_EVERY_ROLE: &[&str] = &["System.Anonymous", "System.View", "System.Read"];

/// The privileges to name when creating the role for `mode`.
pub fn role_privileges(mode: Mode) -> Vec<&'static str> {
    PRIVILEGES
        .iter()
        .filter(|p| p.in_mode(mode) && !IN_EVERY_ROLE.contains(&p.id))
        .map(|p| p.id)
        .collect()
}

/// Single-quoted for a POSIX shell and for PowerShell alike (both take '' literally; a ' inside is doubled
/// for PowerShell, closed and escaped for sh).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The commands that create the role and grant it, with govc and with PowerCLI.
pub fn role_commands(mode: Mode, role: &str, principal: &str) -> (Vec<String>, Vec<String>) {
    let privs = role_privileges(mode);
    let govc = vec![
        format!("govc role.create {} {}", sh_quote(role), privs.join(" ")),
        format!(
            "govc permissions.set -principal {} -role {} -propagate=true /",
            sh_quote(principal),
            sh_quote(role)
        ),
    ];
    let ids = privs.iter().map(|p| ps_quote(p)).collect::<Vec<_>>().join(",");
    let powercli = vec![
        format!(
            "New-VIRole -Name {} -Privilege (Get-VIPrivilege -Id {ids})",
            ps_quote(role)
        ),
        format!(
            "New-VIPermission -Entity (Get-Folder -NoRecursion) -Principal {} -Role {} -Propagate:$true",
            ps_quote(principal),
            ps_quote(role)
        ),
    ];
    (govc, powercli)
}

/// `vmha role`: the text and the `--json` fields. `principal` is granted the vCenter role, and the ESXi one
/// only when `principal_for_esx` (a vCenter user is not a local ESXi user).
pub fn role(modes: &[Mode], role: &str, principal: Option<&str>, principal_for_esx: bool) -> (String, Value) {
    let mut text = String::new();
    let mut fields = serde_json::Map::new();
    for &mode in modes {
        let (title, who, default_principal) = match mode {
            Mode::Vcenter => (
                "vCenter: a role for vmha's vCenter user, granted on the vCenter root (propagated)",
                "connect govc (GOVC_URL) or PowerCLI (Connect-VIServer) to vCenter as an administrator",
                "vmha@vsphere.local",
            ),
            Mode::Esx => (
                "ESXi: the same role for a local user on every host (ESX-direct, and the host fallback while vCenter is down)",
                "create the local user first (Host Client: Manage > Security & users > Users > Add user), then connect govc or PowerCLI to each host as root",
                "vmha",
            ),
        };
        let given = match mode {
            Mode::Vcenter => principal,
            Mode::Esx => principal.filter(|_| principal_for_esx),
        };
        let principal = given.unwrap_or(default_principal);
        let (govc, powercli) = role_commands(mode, role, principal);
        text.push_str(&format!("# {title}\n# {who}\n"));
        for p in PRIVILEGES.iter().filter(|p| p.in_mode(mode)) {
            text.push_str(&format!("#   {:<40} on {}: {}\n", p.id, p.on.describe(), p.needed_by));
        }
        text.push_str(&format!("# ({} are part of every role.)\n", IN_EVERY_ROLE.join(", ")));
        text.push_str("# govc (a shell):\n");
        for line in &govc {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("# or PowerCLI (PowerShell):\n");
        for line in &powercli {
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        let key = match mode {
            Mode::Vcenter => "vcenter",
            Mode::Esx => "esx",
        };
        fields.insert(
            key.into(),
            json!({
                "role": role,
                "principal": principal,
                "privileges": PRIVILEGES.iter().filter(|p| p.in_mode(mode)).collect::<Vec<_>>(),
                "create": role_privileges(mode),
                "govc": govc,
                "powercli": powercli,
            }),
        );
    }
    text.push_str(
        "# Then check the user as vmha logs in: vmha check --privileges --name VM (with vCenter: --host ESXHOST)\n",
    );
    (text, Value::Object(fields))
}

/// An object whose privileges are checked, and what it is to vmha.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Which of the list's privileges are checked on it ([`Scope::Inventory`]: only those).
    pub scope: Scope,
    pub moref: MoRef,
    /// How the report names it: "VM app1", "host esx1 (this node's)".
    pub label: String,
}

/// One privilege checked on one object.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub privilege: &'static str,
    pub entity: String,
    pub moref: String,
    /// `None`: the server's answer did not mention it (counted as missing).
    pub granted: Option<bool>,
    pub needed_by: &'static str,
    pub without: &'static str,
}

impl Finding {
    pub fn missing(&self) -> bool {
        self.granted != Some(true)
    }
}

/// What `check --privileges` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub user: String,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn missing(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.missing())
    }

    pub fn all_granted(&self) -> bool {
        self.missing().next().is_none()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mark = match f.granted {
                Some(true) => "ok     ",
                Some(false) => "MISSING",
                None => "UNKNOWN",
            };
            out.push_str(&format!("{mark} {:<40} on {} ({})", f.privilege, f.entity, f.moref));
            if f.missing() {
                out.push_str(&format!(": {} needs it; without it {}", f.needed_by, f.without));
            }
            out.push('\n');
        }
        out
    }

    /// One line for the error and `--json`'s `reason`.
    pub fn summary(&self) -> String {
        let missing: Vec<String> = self
            .missing()
            .map(|f| format!("{} on {}", f.privilege, f.entity))
            .collect();
        if missing.is_empty() {
            format!(
                "user {} holds all {} privileges checked",
                self.user,
                self.findings.len()
            )
        } else {
            format!(
                "user {} lacks {} of {} privileges: {}; grant them (vmha role prints the role)",
                self.user,
                missing.len(),
                self.findings.len(),
                missing.join(", ")
            )
        }
    }
}

/// Which privileges are checked on which target, in the list's order per target.
pub fn checks(mode: Mode, targets: &[Target]) -> Vec<(&Target, &'static Privilege)> {
    let mut out = Vec::new();
    for t in targets {
        for p in PRIVILEGES.iter().filter(|p| p.in_mode(mode)) {
            if p.on == Scope::Inventory || p.on == t.scope {
                out.push((t, p));
            }
        }
    }
    out
}

/// The decision: for every check, whether the server's answer grants it.
pub fn assess(mode: Mode, user: &str, targets: &[Target], answer: &[EntityPrivilege]) -> Report {
    let granted: HashMap<(&str, &str), bool> = answer
        .iter()
        .flat_map(|e| {
            e.granted
                .iter()
                .map(move |(id, g)| ((e.entity.value.as_str(), id.as_str()), *g))
        })
        .collect();
    let findings = checks(mode, targets)
        .into_iter()
        .map(|(t, p)| Finding {
            privilege: p.id,
            entity: t.label.clone(),
            moref: t.moref.value.clone(),
            granted: granted.get(&(t.moref.value.as_str(), p.id)).copied(),
            needed_by: p.needed_by,
            without: p.without,
        })
        .collect();
    Report {
        mode,
        user: user.to_string(),
        findings,
    }
}

/// `vmha check --privileges`: finds the VM, the hosts, the datacenter, its VM folder and this node's pool,
/// and asks the server in one call which privileges the logged-in user holds on them.
pub async fn run(ctx: &Ctx<'_>, user: &str) -> Result<Report, OpError> {
    let about = &ctx.session.content().about;
    if !authz::supported(&about.api_version) {
        return Err(OpError::PrivilegeCheckUnsupported {
            api_version: about.api_version.clone(),
        });
    }
    let mode = if ctx.vcenter() { Mode::Vcenter } else { Mode::Esx };
    ctx.require_host()?;
    let (_, seen) = ctx.observe_with_host().await?;
    let node = ctx.node_host(seen.as_ref().and_then(|(_, h)| h.as_ref())).await?;
    let dc = ctx.datacenter_of(&node).await?.clone();
    let pool = ctx.pool_of(&node).await?;
    let mut targets = Vec::new();
    match &seen {
        Some((vm, _)) => targets.push(Target {
            scope: Scope::Vm,
            moref: vm.moref.clone(),
            label: format!("VM {}", vm.name),
        }),
        // Not registered: it will inherit the folder's permissions once registered there.
        None => targets.push(Target {
            scope: Scope::Vm,
            moref: dc.vm_folder.clone(),
            label: format!(
                "VM folder of {} (the VM is not registered; it inherits from there)",
                dc.name
            ),
        }),
    }
    if let Some((_, Some(h))) = &seen
        && h.moref != node.moref
    {
        targets.push(Target {
            scope: Scope::Inventory,
            moref: h.moref.clone(),
            label: format!("host {} (the VM's)", h.name),
        });
    }
    targets.push(Target {
        scope: Scope::Inventory,
        moref: node.moref.clone(),
        label: format!("host {} (this node's)", node.name),
    });
    targets.push(Target {
        scope: Scope::Inventory,
        moref: dc.moref.clone(),
        label: format!("datacenter {}", dc.name),
    });
    targets.push(Target {
        scope: Scope::VmFolder,
        moref: dc.vm_folder.clone(),
        label: format!("VM folder of {}", dc.name),
    });
    targets.push(Target {
        scope: Scope::ResourcePool,
        moref: pool.clone(),
        label: format!("resource pool of {}", node.name),
    });
    let entities: Vec<MoRef> = targets
        .iter()
        .map(|t| t.moref.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<&str> = PRIVILEGES.iter().filter(|p| p.in_mode(mode)).map(|p| p.id).collect();
    let answer = authz::privileges_on(ctx.session, &entities, &ids).await?;
    Ok(assess(mode, user, &targets, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scope: Scope, value: &str, label: &str) -> Target {
        Target {
            scope,
            moref: MoRef::new("X", value),
            label: label.into(),
        }
    }

    fn all(entity: &str, mode: Mode, except: &[&str]) -> EntityPrivilege {
        EntityPrivilege {
            entity: MoRef::new("X", entity),
            granted: PRIVILEGES
                .iter()
                .filter(|p| p.in_mode(mode))
                .map(|p| (p.id.to_string(), !except.contains(&p.id)))
                .collect(),
        }
    }

    fn targets() -> Vec<Target> {
        vec![
            target(Scope::Vm, "vm-1", "VM a"),
            target(Scope::Inventory, "host-1", "host h1"),
            target(Scope::VmFolder, "folder-1", "VM folder"),
            target(Scope::ResourcePool, "pool-1", "pool"),
        ]
    }

    #[test]
    fn everything_granted_is_all_granted() {
        let t = targets();
        let answer: Vec<_> = ["vm-1", "host-1", "folder-1", "pool-1"]
            .iter()
            .map(|e| all(e, Mode::Vcenter, &[]))
            .collect();
        let r = assess(Mode::Vcenter, "u", &t, &answer);
        assert!(r.all_granted(), "{}", r.to_text());
        // VM: 2 inventory + 6 VM privileges; host: 2; folder: 2 + Register; pool: 2 + AssignVMToPool.
        assert_eq!(r.findings.len(), 8 + 2 + 3 + 3);
        assert!(r.summary().contains("holds all 16"));
    }

    #[test]
    fn a_missing_privilege_is_named_with_its_entity_and_consequence() {
        let t = targets();
        let answer = vec![
            all("vm-1", Mode::Vcenter, &["VirtualMachine.Interact.PowerOff"]),
            all("host-1", Mode::Vcenter, &[]),
            all("folder-1", Mode::Vcenter, &[]),
            all("pool-1", Mode::Vcenter, &["Resource.AssignVMToPool"]),
        ];
        let r = assess(Mode::Vcenter, "u", &t, &answer);
        let missing: Vec<_> = r.missing().map(|f| (f.privilege, f.entity.as_str())).collect();
        assert_eq!(
            missing,
            vec![
                ("VirtualMachine.Interact.PowerOff", "VM a"),
                ("Resource.AssignVMToPool", "pool")
            ]
        );
        let text = r.to_text();
        assert!(text.contains("MISSING VirtualMachine.Interact.PowerOff"), "{text}");
        assert!(text.contains("fences the node"), "{text}");
        assert!(r.summary().contains("lacks 2 of 16"), "{}", r.summary());
        // A privilege granted on another entity does not count for this one.
        let r = assess(Mode::Vcenter, "u", &t, &answer[..1]);
        assert!(r.missing().any(|f| f.entity == "pool" && f.granted.is_none()));
    }

    #[test]
    fn esx_needs_no_migration_privileges() {
        let t = targets();
        let answer: Vec<_> = ["vm-1", "host-1", "folder-1", "pool-1"]
            .iter()
            .map(|e| all(e, Mode::Esx, &[]))
            .collect();
        let r = assess(Mode::Esx, "u", &t, &answer);
        assert!(r.all_granted(), "{}", r.to_text());
        assert!(!r.findings.iter().any(|f| f.privilege.contains("Migrate")));
        assert!(role_privileges(Mode::Esx).contains(&"VirtualMachine.Inventory.Register"));
        assert!(!role_privileges(Mode::Vcenter).contains(&"System.Read"));
    }

    #[test]
    fn role_commands_name_every_privilege_once() {
        let (govc, ps) = role_commands(Mode::Vcenter, "vmha", "cluster@vsphere.local");
        assert_eq!(
            govc[0],
            "govc role.create 'vmha' VirtualMachine.Interact.PowerOn VirtualMachine.Interact.AnswerQuestion VirtualMachine.Interact.PowerOff VirtualMachine.Inventory.Register VirtualMachine.Inventory.Unregister Resource.AssignVMToPool Resource.ColdMigrate Resource.HotMigrate"
        );
        assert!(govc[1].contains("-principal 'cluster@vsphere.local' -role 'vmha'"));
        assert!(
            ps[0].starts_with(
                "New-VIRole -Name 'vmha' -Privilege (Get-VIPrivilege -Id 'VirtualMachine.Interact.PowerOn',"
            )
        );
        assert!(ps[1].contains("-Principal 'cluster@vsphere.local'"));
        let (_, ps) = role_commands(Mode::Esx, "it's", "o'brien");
        assert!(ps[0].contains("'it''s'") && ps[1].contains("'o''brien'"), "{ps:?}");
    }

    /// The README's table is this list, row for row.
    #[test]
    fn readme_table_matches_the_list() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme
            .split("### The vSphere user's privileges")
            .nth(1)
            .expect("README section \"The vSphere user's privileges\"");
        let section = section.split("\n### ").next().unwrap_or_default();
        let rows: Vec<String> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.trim().to_string())
            .collect();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let want: Vec<String> = PRIVILEGES
            .iter()
            .map(|p| {
                format!(
                    "| `{}` | {} | {} | {} | {} | {} |",
                    p.id,
                    p.on.describe(),
                    yes(p.vcenter),
                    yes(p.esx),
                    p.needed_by,
                    p.without
                )
            })
            .collect();
        assert_eq!(rows, want, "README rows, then the list's rows:\n{}", want.join("\n"));
    }
}
