// Command govmomi-peer is the govmomi side of benches/side_by_side.rs: a
// one-shot CLI that does what `vmha status|start|stop|monitor` does, the way a
// small govmomi program would (login, find, read or act, logout). Built
// offline against Debian's golang-github-vmware-govmomi-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/govmomi-peer ./benches/peers/govmomi
//
// Usage (credentials from VMHA_URL, VMHA_USER, VMHA_PASSWORD; trust from --ca-file):
//
//	govmomi-peer --ca-file CA status|start|stop|monitor (--name N | --vmx PATH | --uuid U) [--host H]
//
// Exit codes: 0 success (monitor: healthy), 1 failure, 2 usage, 11 monitor: unhealthy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// vmProps is what status and monitor read, in one RetrieveProperties.
var vmProps = []string{"name", "config.uuid", "summary.config.vmPathName", "runtime.powerState",
	"runtime.host", "runtime.connectionState", "runtime.question", "guestHeartbeatStatus"}

type options struct {
	caFile, name, vmx, uuid, host string
	wait                          time.Duration
}

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "govmomi-peer: %s\n", msg)
	os.Exit(2)
}

func main() {
	var o options
	fs := flag.NewFlagSet("govmomi-peer", flag.ContinueOnError)
	fs.StringVar(&o.caFile, "ca-file", "", "CA certificate (PEM) to trust")
	fs.StringVar(&o.name, "name", "", "VM name")
	fs.StringVar(&o.vmx, "vmx", "", "VM .vmx datastore path")
	fs.StringVar(&o.uuid, "uuid", "", "VM BIOS uuid")
	fs.StringVar(&o.host, "host", "", "ESX host of this node")
	fs.DurationVar(&o.wait, "wait", 60*time.Second, "how long start/stop wait")
	// Flags may come before and after the command.
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() < 1 {
		usage("no command (status, start, stop, monitor)")
	}
	cmd := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		os.Exit(2)
	}
	os.Exit(run(cmd, o))
}

func run(cmd string, o options) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, err := url.Parse(os.Getenv("VMHA_URL"))
	if err != nil || u.Host == "" {
		usage("VMHA_URL must be https://HOST:PORT/sdk")
	}
	sc := soap.NewClient(u, false)
	if o.caFile != "" {
		if err := sc.SetRootCAs(o.caFile); err != nil {
			fmt.Fprintf(os.Stderr, "govmomi-peer: %s: %s\n", o.caFile, err)
			return 2
		}
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govmomi-peer: connect: %s\n", err)
		return 1
	}
	sm := session.NewManager(c)
	if err := sm.Login(ctx, url.UserPassword(os.Getenv("VMHA_USER"), os.Getenv("VMHA_PASSWORD"))); err != nil {
		fmt.Fprintf(os.Stderr, "govmomi-peer: login: %s\n", err)
		return 1
	}
	defer func() { _ = sm.Logout(context.Background()) }()

	code, err := dispatch(ctx, c, cmd, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govmomi-peer %s: %s\n", cmd, err)
	}
	return code
}

func dispatch(ctx context.Context, c *vim25.Client, cmd string, o options) (int, error) {
	finder := find.NewFinder(c, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return 1, err
	}
	finder.SetDatacenter(dc)
	vm, err := findVM(ctx, c, finder, dc, o)
	if err != nil {
		return 1, err
	}
	pc := property.DefaultCollector(c)
	switch cmd {
	case "status":
		if vm == nil {
			fmt.Println("registered: false")
			return 0, nil
		}
		var m mo.VirtualMachine
		if err := pc.RetrieveOne(ctx, vm.Reference(), vmProps, &m); err != nil {
			return 1, err
		}
		hostName := ""
		if m.Runtime.Host != nil {
			var h mo.HostSystem
			if err := pc.RetrieveOne(ctx, *m.Runtime.Host, []string{"name"}, &h); err != nil {
				return 1, err
			}
			hostName = h.Name
		}
		fmt.Printf("registered: true\nname: %s\nvmx: %s\nuuid: %s\npower_state: %s\nhost: %s\nconnection_state: %s\nheartbeat: %s\nquestion: %v\n",
			m.Name, m.Summary.Config.VmPathName, m.Config.Uuid, m.Runtime.PowerState, hostName,
			m.Runtime.ConnectionState, m.GuestHeartbeatStatus, m.Runtime.Question != nil)
		return 0, nil
	case "start", "stop", "monitor":
	default:
		return 2, fmt.Errorf("unknown command %q", cmd)
	}
	if o.host == "" {
		return 2, errors.New("--host is required")
	}
	host, err := finder.HostSystem(ctx, o.host)
	if err != nil {
		return 1, err
	}
	if vm == nil {
		if cmd == "stop" {
			fmt.Println("not registered: nothing to stop")
			return 0, nil
		}
		if cmd == "monitor" {
			fmt.Println("unhealthy: not registered")
			return 11, nil
		}
		return 1, errors.New("not registered (this peer does not register VMs)")
	}
	var m mo.VirtualMachine
	if err := pc.RetrieveOne(ctx, vm.Reference(), vmProps, &m); err != nil {
		return 1, err
	}
	onHost := m.Runtime.Host != nil && *m.Runtime.Host == host.Reference()
	switch cmd {
	case "monitor":
		switch {
		case !onHost:
			fmt.Println("unhealthy: on another host")
			return 11, nil
		case m.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn:
			fmt.Printf("unhealthy: %s\n", m.Runtime.PowerState)
			return 11, nil
		case m.Runtime.Question != nil:
			fmt.Println("unhealthy: question pending")
			return 11, nil
		case m.GuestHeartbeatStatus == types.ManagedEntityStatusRed:
			fmt.Println("unhealthy: heartbeat red")
			return 11, nil
		}
		fmt.Println("healthy")
		return 0, nil
	case "start":
		return start(ctx, c, pc, vm, host, &m, onHost, o.wait)
	default:
		return stop(ctx, pc, vm, &m, onHost, o.wait)
	}
}

// findVM returns nil (no error) when no VM matches.
func findVM(ctx context.Context, c *vim25.Client, finder *find.Finder, dc *object.Datacenter, o options) (*object.VirtualMachine, error) {
	si := object.NewSearchIndex(c)
	var ref object.Reference
	var err error
	switch {
	case o.name != "":
		vm, err := finder.VirtualMachine(ctx, o.name)
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return vm, err
	case o.vmx != "":
		ref, err = si.FindByDatastorePath(ctx, dc, o.vmx)
	case o.uuid != "":
		ref, err = si.FindByUuid(ctx, dc, strings.ToLower(o.uuid), true, nil)
	default:
		usage("one of --name, --vmx, --uuid is required")
	}
	if err != nil || ref == nil {
		return nil, err
	}
	return object.NewVirtualMachine(c, ref.Reference()), nil
}

func start(ctx context.Context, c *vim25.Client, pc *property.Collector, vm *object.VirtualMachine, host *object.HostSystem,
	m *mo.VirtualMachine, onHost bool, wait time.Duration) (int, error) {
	if m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		if onHost {
			fmt.Println("already running here")
			return 0, nil
		}
		return 5, errors.New("running on another host")
	}
	h := host.Reference()
	res, err := methods.PowerOnVM_Task(ctx, c, &types.PowerOnVM_Task{This: vm.Reference(), Host: &h})
	if err != nil {
		return 1, err
	}
	if err := object.NewTask(c, res.Returnval).Wait(ctx); err != nil {
		return 1, fmt.Errorf("power on: %w", err)
	}
	// As vmha does: wait for a green guest heartbeat.
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err = property.Wait(wctx, pc, vm.Reference(), []string{"guestHeartbeatStatus"}, func(pcs []types.PropertyChange) bool {
		for _, pc := range pcs {
			if pc.Op == types.PropertyChangeOpAssign && pc.Val == types.ManagedEntityStatusGreen {
				return true
			}
		}
		return false
	})
	if err != nil {
		fmt.Println("started; no green heartbeat:", err)
		return 0, nil
	}
	fmt.Println("started")
	return 0, nil
}

func stop(ctx context.Context, pc *property.Collector, vm *object.VirtualMachine, m *mo.VirtualMachine, onHost bool, wait time.Duration) (int, error) {
	if !onHost {
		fmt.Println("on another host: nothing to do here")
		return 0, nil
	}
	if m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
		fmt.Println("already off")
		return 0, nil
	}
	if m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		if err := vm.ShutdownGuest(ctx); err == nil {
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			err = property.Wait(wctx, pc, vm.Reference(), []string{"runtime.powerState"}, func(pcs []types.PropertyChange) bool {
				for _, pc := range pcs {
					if pc.Val == types.VirtualMachinePowerStatePoweredOff {
						return true
					}
				}
				return false
			})
			if err == nil {
				fmt.Println("shut down")
				return 0, nil
			}
		}
	}
	t, err := vm.PowerOff(ctx)
	if err != nil {
		return 1, err
	}
	if err := t.Wait(ctx); err != nil {
		return 1, fmt.Errorf("power off: %w", err)
	}
	fmt.Println("powered off")
	return 0, nil
}
