#!/bin/sh
# CLUSTERPRO exec resource: start script. Activates the VM on this server's ESX host (the settings file's host).
# CLP_EVENT: START (group start), FAILOVER (failover to this server), RECOVER (cluster recovery of the group).
# vmha start is idempotent: a VM already running here succeeds; a VM running on another connected host is
# refused (exit 5) and nothing changes.
. "$(dirname "$0")/common.sh"
vmha_setup "${CLP_RESOURCENAME:-vmha}"
vmha_log I "start.sh: CLP_EVENT=${CLP_EVENT:-} CLP_SERVER=${CLP_SERVER:-} CLP_DISK=${CLP_DISK:-} CLP_GROUPNAME=${CLP_GROUPNAME:-}"
case "${CLP_EVENT:-}" in
    START | FAILOVER | RECOVER) ;;
    *)
        vmha_log E "start.sh: not run by CLUSTERPRO (CLP_EVENT='${CLP_EVENT:-}'); refusing to act"
        exit 2
        ;;
esac
if [ "${CLP_DISK:-SUCCESS}" = "FAILURE" ]; then
    vmha_log W "start.sh: CLP_DISK=FAILURE (a disk resource of the group failed); starting the VM anyway"
fi
vmha_run start
rc=$?
if [ $rc -eq 0 ]; then
    vmha_log I "start.sh: done"
else
    vmha_log E "start.sh: vmha start failed (exit $rc)"
fi
exit $rc
