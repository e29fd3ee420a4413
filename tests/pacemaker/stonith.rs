//! Stonith for the two-node tests: the `fence_vmha` shim in /usr/sbin, a `stonith:fence_vmha` device whose plugs
//! are simulator VMs standing for the cluster nodes, and a CIB with stonith on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The simulator VMs that stand for the cluster nodes (pcmk_host_map), and a target that is no node.
pub const NODE1_VM: &str = "DC0_H0_VM0";
pub const NODE2_VM: &str = "DC0_H0_VM1";
pub const SPARE_VM: &str = "DC0_C0_RP0_VM1";

/// The seeded CIB with `stonith-enabled=true`; a fence powers the node's VM off and leaves it off
/// (`stonith-action=off`), as a guest cluster would want.
pub fn stonith_cib() -> String {
    super::stack::cib_xml(
        r#"<nvpair id="opt-stonith-action" name="stonith-action" value="off"/>
        <nvpair id="opt-stonith-timeout" name="stonith-timeout" value="60s"/>"#,
    )
    .replace(
        r#"name="stonith-enabled" value="false""#,
        r#"name="stonith-enabled" value="true""#,
    )
}

/// `/usr/sbin/fence_vmha` execing this build, removed on drop. Refuses to replace an installed one.
pub struct FenceShim(PathBuf);

impl FenceShim {
    pub fn install() -> FenceShim {
        let p = PathBuf::from("/usr/sbin/fence_vmha");
        assert!(!p.exists(), "{} exists: not replacing it", p.display());
        std::fs::write(
            &p,
            format!("#!/bin/sh\nexec '{}' fence \"$@\"\n", env!("CARGO_BIN_EXE_vmha")),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        FenceShim(p)
    }
}

impl Drop for FenceShim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The fence device: plugs by VM name, the password from a script reading a root-only file.
pub fn device_xml(ip: &str, port: &str, user: &str, thumbprint: &str, pw: &Path) -> String {
    format!(
        r#"<primitive id="fence-vmha" class="stonith" type="fence_vmha">
  <instance_attributes id="fence-vmha-ia">
    <nvpair id="fence-vmha-ip" name="ip" value="{ip}"/>
    <nvpair id="fence-vmha-ipport" name="ipport" value="{port}"/>
    <nvpair id="fence-vmha-username" name="username" value="{user}"/>
    <nvpair id="fence-vmha-password_script" name="password_script" value="cat {pw}"/>
    <nvpair id="fence-vmha-thumbprint" name="thumbprint" value="{thumbprint}"/>
    <nvpair id="fence-vmha-map" name="pcmk_host_map" value="node1:{NODE1_VM};node2:{NODE2_VM};spare:{SPARE_VM}"/>
  </instance_attributes>
  <operations>
    <op id="fence-vmha-monitor" name="monitor" interval="20s" timeout="20s"/>
  </operations>
</primitive>"#,
        pw = pw.display()
    )
}
