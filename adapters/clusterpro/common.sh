# Shared by start.sh, stop.sh and genw.sh (sourced, not run). One settings file per resource: vmha's TOML
# config, on each server its own (each server names its own ESX host in it).
#   VMHA_CONFIG  the settings file; default /etc/vmha/RESOURCE.toml
#   VMHA         the vmha binary; default vmha on PATH, else /usr/local/bin/vmha
vmha_log() {
    # CLUSTERPRO-style line, the same format as vmha's own: "YYYY-MM-DD hh:mm:ss [I] [resource] message"
    level=$1
    shift
    echo "$(date '+%Y-%m-%d %H:%M:%S') [$level] [$VMHA_RESOURCE] $*"
}

vmha_setup() {
    VMHA_RESOURCE=${1:-vmha}
    VMHA_CONFIG=${VMHA_CONFIG:-/etc/vmha/$VMHA_RESOURCE.toml}
    if [ -z "${VMHA:-}" ]; then
        VMHA=$(command -v vmha 2>/dev/null || echo /usr/local/bin/vmha)
    fi
    if [ ! -r "$VMHA_CONFIG" ]; then
        vmha_log E "settings file $VMHA_CONFIG is missing or unreadable (set VMHA_CONFIG or create it)"
        exit 2
    fi
    if [ ! -x "$VMHA" ]; then
        vmha_log E "vmha binary $VMHA not found (set VMHA or install vmha to /usr/local/bin)"
        exit 2
    fi
    # The password comes only from the settings file's password-file, never from this environment.
    unset VMHA_PASSWORD
    export VMHA_CONFIG
}

# Runs vmha with the resource's settings; its step log goes to stdout, its errors too (CLUSTERPRO keeps stdout).
vmha_run() {
    "$VMHA" --config "$VMHA_CONFIG" "$@" 2>&1
}
