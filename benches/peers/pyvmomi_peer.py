#!/usr/bin/env python3
"""The pyVmomi side of benches/side_by_side.rs: a one-shot CLI that does what
`vmha status|start|stop|monitor` does, the way a small pyVmomi script would
(connect and log in, find, read or act, log out). Needs pyVmomi from PyPI
(the bench installs pyvmomi==9.1.1 into target/pyvmomi-venv).

    VMHA_URL=https://HOST:PORT/sdk VMHA_USER=... VMHA_PASSWORD=... \\
        pyvmomi_peer.py --ca-file CA status|start|stop|monitor (--name N | --vmx P | --uuid U) [--host H]

Exit codes: 0 success (monitor: healthy), 1 failure, 2 usage, 5 start refused,
11 monitor: unhealthy.
"""

import argparse
import os
import ssl
import sys
import time
from urllib.parse import urlparse

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

VM_PROPS = ["name", "config.uuid", "summary.config.vmPathName", "runtime.powerState",
            "runtime.host", "runtime.connectionState", "runtime.question", "guestHeartbeatStatus"]


def read_props(si, obj, paths):
    """One RetrievePropertiesEx for `paths` of `obj`; returns {path: value}."""
    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=paths)])
    res = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    out = {p: None for p in paths}
    if res:
        for obj_content in res.objects:
            for prop in obj_content.propSet:
                out[prop.name] = prop.val
    return out


def find_by_name(si, kind, name):
    """All objects of `kind` below the root folder, by name, in one property read of a container view."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        pc = content.propertyCollector
        traverse = vmodl.query.PropertyCollector.TraversalSpec(
            name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=["name"])])
        res = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while res:
            for obj_content in res.objects:
                if obj_content.propSet and obj_content.propSet[0].val == name:
                    if res.token:
                        pc.CancelRetrievePropertiesEx(res.token)
                    return obj_content.obj
            if not res.token:
                break
            res = pc.ContinueRetrievePropertiesEx(res.token)
        return None
    finally:
        view.DestroyView()


def find_vm(si, args):
    index = si.content.searchIndex
    if args.name:
        return find_by_name(si, vim.VirtualMachine, args.name)
    if args.vmx:
        datacenter = si.content.rootFolder.childEntity[0]
        return index.FindByDatastorePath(datacenter, args.vmx)
    return index.FindByUuid(None, args.uuid.lower(), True, False)


def wait_for(si, obj, path, done, timeout):
    """Waits (WaitForUpdatesEx on a private collector) until done(value of `path`) holds."""
    pc = si.content.propertyCollector.CreatePropertyCollector()
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=[path])])
        pc.CreateFilter(spec, True)
        version = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wait = max(1, int(deadline - time.monotonic()))
            update = pc.WaitForUpdatesEx(version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=wait))
            if update is None:
                continue
            version = update.version
            for fs in update.filterSet:
                for os_ in fs.objectSet:
                    for change in os_.changeSet:
                        if change.name == path and done(change.val):
                            return True
        return False
    finally:
        pc.DestroyPropertyCollector()


def wait_task(si, task, timeout=120):
    ok = wait_for(si, task, "info.state", lambda s: s in ("success", "error"), timeout)
    if not ok:
        raise RuntimeError("task did not finish")
    if task.info.state == "error":
        raise RuntimeError(task.info.error.msg)


def run(si, args):
    vm = find_vm(si, args)
    if args.command == "status":
        if vm is None:
            print("registered: false")
            return 0
        p = read_props(si, vm, VM_PROPS)
        host = read_props(si, p["runtime.host"], ["name"])["name"] if p["runtime.host"] else ""
        print("registered: true")
        print(f"name: {p['name']}\nvmx: {p['summary.config.vmPathName']}\nuuid: {p['config.uuid']}")
        print(f"power_state: {p['runtime.powerState']}\nhost: {host}\nconnection_state: {p['runtime.connectionState']}")
        print(f"heartbeat: {p['guestHeartbeatStatus']}\nquestion: {p['runtime.question'] is not None}")
        return 0
    if not args.host:
        print("--host is required", file=sys.stderr)
        return 2
    host = find_by_name(si, vim.HostSystem, args.host)
    if host is None:
        print(f"no host {args.host}", file=sys.stderr)
        return 1
    if vm is None:
        if args.command == "stop":
            print("not registered: nothing to stop")
            return 0
        if args.command == "monitor":
            print("unhealthy: not registered")
            return 11
        print("not registered (this peer does not register VMs)", file=sys.stderr)
        return 1
    p = read_props(si, vm, VM_PROPS)
    on_host = p["runtime.host"] is not None and p["runtime.host"]._moId == host._moId
    state = p["runtime.powerState"]
    if args.command == "monitor":
        if not on_host:
            print("unhealthy: on another host")
            return 11
        if state != "poweredOn":
            print(f"unhealthy: {state}")
            return 11
        if p["runtime.question"] is not None:
            print("unhealthy: question pending")
            return 11
        if p["guestHeartbeatStatus"] == "red":
            print("unhealthy: heartbeat red")
            return 11
        print("healthy")
        return 0
    if args.command == "start":
        if state == "poweredOn":
            if on_host:
                print("already running here")
                return 0
            print("running on another host", file=sys.stderr)
            return 5
        wait_task(si, vm.PowerOnVM_Task(host))
        # As vmha does: wait for a green guest heartbeat.
        if wait_for(si, vm, "guestHeartbeatStatus", lambda s: s == "green", args.wait):
            print("started")
        else:
            print("started; no green heartbeat")
        return 0
    # stop
    if not on_host:
        print("on another host: nothing to do here")
        return 0
    if state == "poweredOff":
        print("already off")
        return 0
    if state == "poweredOn":
        try:
            vm.ShutdownGuest()
            if wait_for(si, vm, "runtime.powerState", lambda s: s == "poweredOff", args.wait):
                print("shut down")
                return 0
        except vim.fault.ToolsUnavailable:
            pass
    wait_task(si, vm.PowerOffVM_Task())
    print("powered off")
    return 0


def main():
    ap = argparse.ArgumentParser(prog="pyvmomi_peer")
    ap.add_argument("--ca-file")
    ap.add_argument("--wait", type=float, default=60.0)
    ap.add_argument("command", choices=["status", "start", "stop", "monitor"])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--name")
    which.add_argument("--vmx")
    which.add_argument("--uuid")
    ap.add_argument("--host")
    args = ap.parse_args()

    url = urlparse(os.environ["VMHA_URL"])
    context = ssl.create_default_context(cafile=args.ca_file)
    si = SmartConnect(host=url.hostname, port=url.port or 443, user=os.environ["VMHA_USER"],
                      pwd=os.environ["VMHA_PASSWORD"], sslContext=context)
    try:
        return run(si, args)
    except vmodl.MethodFault as e:
        print(f"pyvmomi_peer {args.command}: {e.msg}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"pyvmomi_peer {args.command}: {e}", file=sys.stderr)
        return 1
    finally:
        Disconnect(si)


if __name__ == "__main__":
    sys.exit(main())
