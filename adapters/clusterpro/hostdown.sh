#!/bin/sh
# CLUSTERPRO: shut this server's ESX host down (the guide's "VMware HA linkage" layout): when something VMware
# HA cannot see has failed, the host goes down so that VMware HA restarts its VMs on the other hosts. Use it as
# a monitor resource's recovery script (or a group's final action script). The host is the settings file's
# `host` key, as for start.sh and stop.sh.
#   HOSTDOWN_ACTION  shutdown (default) or reboot
#   HOSTDOWN_FORCE   1 (default): go down even if the host is not in maintenance mode (its running VMs die
#                    with it and VMware HA restarts them); 0: only a host in maintenance mode
# A host that is not connected is refused (exit 1): vCenter cannot reach it.
. "$(dirname "$0")/common.sh"
vmha_setup "${CLP_RESOURCENAME:-${CLP_MONITORNAME:-vmha}}"
vmha_log I "hostdown.sh: CLP_EVENT=${CLP_EVENT:-} CLP_MONITORNAME=${CLP_MONITORNAME:-} CLP_GROUPNAME=${CLP_GROUPNAME:-}"
# Run by CLUSTERPRO only: by hand, nothing happens.
if [ -z "${CLP_EVENT:-}${CLP_MONITORNAME:-}" ]; then
    vmha_log E "hostdown.sh: not run by CLUSTERPRO (no CLP_EVENT or CLP_MONITORNAME); refusing to act"
    exit 2
fi
case "${HOSTDOWN_ACTION:-shutdown}" in
    shutdown) cmd=host-shutdown ;;
    reboot) cmd=host-reboot ;;
    *)
        vmha_log E "hostdown.sh: HOSTDOWN_ACTION='${HOSTDOWN_ACTION}': use shutdown or reboot"
        exit 2
        ;;
esac
force=--force
[ "${HOSTDOWN_FORCE:-1}" = 0 ] && force=
vmha_run $cmd $force
rc=$?
if [ $rc -eq 0 ]; then
    vmha_log I "hostdown.sh: $cmd done"
else
    vmha_log E "hostdown.sh: vmha $cmd failed (exit $rc)"
fi
exit $rc
