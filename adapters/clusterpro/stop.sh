#!/bin/sh
# CLUSTERPRO exec resource: stop script. Deactivates the VM if it runs on this server's ESX host; a VM running
# on another host is left alone. A failure here (exit non-zero) is a deactivation failure: CLUSTERPRO's final
# action (e.g. shut this server down) then keeps the VM from running twice.
. "$(dirname "$0")/common.sh"
vmha_setup "${CLP_RESOURCENAME:-vmha}"
vmha_log I "stop.sh: CLP_EVENT=${CLP_EVENT:-} CLP_FACTOR=${CLP_FACTOR:-} CLP_SERVER=${CLP_SERVER:-} CLP_GROUPNAME=${CLP_GROUPNAME:-}"
case "${CLP_EVENT:-}" in
    START | FAILOVER) ;;
    *)
        vmha_log E "stop.sh: not run by CLUSTERPRO (CLP_EVENT='${CLP_EVENT:-}'); refusing to act"
        exit 2
        ;;
esac
vmha_run stop
rc=$?
if [ $rc -eq 0 ]; then
    vmha_log I "stop.sh: done"
else
    vmha_log E "stop.sh: vmha stop failed (exit $rc)"
fi
exit $rc
