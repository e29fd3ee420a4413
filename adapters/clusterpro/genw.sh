#!/bin/sh
# CLUSTERPRO custom monitor (genw) for the VM.
#   Synchronous monitor (genw "Monitor Type: Synchronous"): one check per interval; exit 0 = normal.
#   Asynchronous monitor ("Asynchronous"): set WATCH=1 (or VMHA_GENW_WATCH=1); the script keeps running while
#   the VM is healthy and exits non-zero the moment it turns unhealthy.
# Exit codes are vmha monitor's: 10 not registered, 11 not powered on, 12 heartbeat red, 13 question pending,
# 14 moved to another host (after migration-wait), 15 host not connected; 2-4 settings/login/connection.
RESOURCE=vmha    # the exec resource this monitor watches: its settings are /etc/vmha/$RESOURCE.toml
WATCH=${VMHA_GENW_WATCH:-0}
. "$(dirname "$0")/common.sh"
vmha_setup "${VMHA_GENW_RESOURCE:-$RESOURCE}"
if [ "$WATCH" = "1" ]; then
    vmha_log I "genw.sh: watching (asynchronous)"
    vmha_run monitor --watch
else
    vmha_run monitor
fi
rc=$?
case $rc in
    0) ;;
    10) vmha_log E "genw.sh: abnormal: VM not registered (exit 10)" ;;
    11) vmha_log E "genw.sh: abnormal: VM not powered on (exit 11)" ;;
    12) vmha_log E "genw.sh: abnormal: guest heartbeat red (exit 12)" ;;
    13) vmha_log E "genw.sh: abnormal: a question is pending on the VM (exit 13)" ;;
    14) vmha_log E "genw.sh: abnormal: the VM moved to another host (exit 14)" ;;
    15) vmha_log E "genw.sh: abnormal: the VM's host is not connected (exit 15)" ;;
    *) vmha_log E "genw.sh: monitor could not check the VM (exit $rc)" ;;
esac
exit $rc
