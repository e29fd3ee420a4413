//! One VM, several inventory entries. After vCenter was away while a host registered the VM's files
//! anew, vCenter shows an entry per registration: the running one, and the old one on the lost host
//! (`disconnected` while that host is down, `orphaned` or powered off once it is back). [`choose`] picks
//! the entry that is the VM and the ones that are provably safe to remove. Pure.

use crate::client::VmState;
use crate::vim::{HostConnectionState, PowerState, VmConnectionState};

/// The entry to act on, and the stale entries that may be unregistered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub primary: usize,
    pub removable: Vec<usize>,
}

fn host_connected(e: &VmState) -> bool {
    e.host_connection_state
        .as_ref()
        .is_none_or(|c| *c == HostConnectionState::Connected)
}

/// The entry vCenter can see and act on, on a connected host.
fn sound(e: &VmState) -> bool {
    e.connection_state == VmConnectionState::Connected && host_connected(e)
}

/// Picks the entry that is the VM: one that runs on a connected host first (only one can hold the files'
/// lock), then one on this node's host (`here`), then any sound one, then the first. A stale entry is
/// removable only when nothing can be lost by unregistering it: it is `orphaned` (its host no longer has
/// it), or it is powered off on a connected host while the chosen entry runs (files are never deleted by
/// an unregistration; the running copy holds them). An entry on a host that is down is left alone: the
/// host may come back with it, and vCenter reconciles it then.
pub fn choose(entries: &[VmState], here: Option<&str>) -> Choice {
    let rank = |e: &VmState| {
        (
            sound(e) && e.power_state == PowerState::PoweredOn,
            here.is_some_and(|h| e.host_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(h))) && sound(e),
            sound(e),
        )
    };
    let primary = (0..entries.len()).rev().max_by_key(|&i| rank(&entries[i])).unwrap_or(0);
    let running = entries
        .get(primary)
        .is_some_and(|p| sound(p) && p.power_state == PowerState::PoweredOn);
    let removable = (0..entries.len())
        .filter(|&i| i != primary)
        .filter(|&i| {
            let e = &entries[i];
            e.connection_state == VmConnectionState::Orphaned
                || (running && sound(e) && e.power_state == PowerState::PoweredOff)
        })
        .collect();
    Choice { primary, removable }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fixtures::{host, vm_on};

    fn h0() -> crate::client::HostInfo {
        host("esx0", "host-0", HostConnectionState::Connected)
    }

    fn h1() -> crate::client::HostInfo {
        host("esx1", "host-1", HostConnectionState::Connected)
    }

    fn entry(
        host: &crate::client::HostInfo,
        power: PowerState,
        conn: VmConnectionState,
        hconn: HostConnectionState,
    ) -> VmState {
        let mut s = vm_on(host, power);
        s.connection_state = conn;
        s.host_connection_state = Some(hconn);
        s
    }

    #[test]
    fn running_entry_wins_over_the_disconnected_one_on_the_lost_host() {
        let old = entry(
            &h0(),
            PowerState::PoweredOn,
            VmConnectionState::Disconnected,
            HostConnectionState::NotResponding,
        );
        let new = entry(
            &h1(),
            PowerState::PoweredOn,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        let c = choose(&[old, new], Some("esx0"));
        assert_eq!(
            c,
            Choice {
                primary: 1,
                removable: vec![]
            },
            "a lost host's entry is never removed"
        );
    }

    #[test]
    fn orphaned_entry_is_removable() {
        let old = entry(
            &h0(),
            PowerState::PoweredOff,
            VmConnectionState::Orphaned,
            HostConnectionState::Connected,
        );
        let new = entry(
            &h1(),
            PowerState::PoweredOn,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        assert_eq!(
            choose(&[old, new], None),
            Choice {
                primary: 1,
                removable: vec![0]
            }
        );
    }

    #[test]
    fn powered_off_twin_on_a_connected_host_is_removable_while_the_other_runs() {
        let back = entry(
            &h0(),
            PowerState::PoweredOff,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        let new = entry(
            &h1(),
            PowerState::PoweredOn,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        assert_eq!(
            choose(&[back, new], Some("esx0")),
            Choice {
                primary: 1,
                removable: vec![0]
            }
        );
    }

    #[test]
    fn two_powered_off_entries_prefer_this_nodes_host_and_remove_nothing() {
        let a = entry(
            &h0(),
            PowerState::PoweredOff,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        let b = entry(
            &h1(),
            PowerState::PoweredOff,
            VmConnectionState::Connected,
            HostConnectionState::Connected,
        );
        assert_eq!(
            choose(&[a.clone(), b.clone()], Some("esx1")),
            Choice {
                primary: 1,
                removable: vec![]
            }
        );
        assert_eq!(
            choose(&[a, b], Some("esx0")),
            Choice {
                primary: 0,
                removable: vec![]
            }
        );
    }
}
