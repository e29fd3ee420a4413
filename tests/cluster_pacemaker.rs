//! A real one-node Pacemaker (corosync + pacemakerd) runs the OCF agent on a simulator VM, in vCenter mode and
//! in ESX-direct mode. Every state is read from the simulator itself, not through vmha. Needs root (mount
//! namespaces, /usr/lib/ocf); skips visibly otherwise.

#[path = "pacemaker/common.rs"]
pub mod common;
#[path = "pacemaker/one_node.rs"]
pub mod one_node;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;
#[path = "pacemaker/stack.rs"]
pub mod stack;

use sim::Mode;
use stack::{AgentInstall, PROVIDER};

#[test]
fn one_node_pacemaker_runs_and_recovers_the_vm() {
    if !common::is_root() {
        println!("SKIPPED one_node_pacemaker_runs_and_recovers_the_vm: needs root (mount namespaces, /usr/lib/ocf)");
        return;
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
        "crm_mon",
        "nsenter",
        "unshare",
    ] {
        common::require_tool(tool);
    }
    let _agent = AgentInstall::install();
    // One after the other: both stacks would use corosync's port on 127.0.0.1.
    one_node::cycle(Mode::VCenter, PROVIDER);
    one_node::cycle(Mode::Esx, PROVIDER);
}
