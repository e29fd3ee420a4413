// Command vcsim-ext is the vSphere simulator used by vmha's end-to-end tests:
// govmomi's vcsim (simulator package) plus the behaviour of a real
// vCenter/ESXi that vmha depends on (VM questions, guest heartbeat, VMware
// Tools, host connection loss, .vmx locks, session expiry, ...), driven
// through a small JSON control API. See README.md.
//
//	vcsim-ext --mode vcenter|esx [--hosts N] [--ca-out PATH] [--ignore-stdin] [--trace] [--vms N] [--wsdl-dir DIR]
//
// It prints exactly one JSON line on stdout once it is ready and serves until
// SIGTERM/SIGINT or until its stdin reaches EOF.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	simUser     = "vmha"
	simPassword = "vmha-sim-password"
	unregName   = "vmha-unreg"
)

type readyLine struct {
	URL            string     `json:"url"`
	Control        string     `json:"control"`
	User           string     `json:"user"`
	Password       string     `json:"password"`
	Thumbprint     string     `json:"thumbprint"`
	ThumbprintSHA1 string     `json:"thumbprint_sha1"`
	CAFile         string     `json:"ca_file"`
	Mode           string     `json:"mode"`
	PID            int        `json:"pid"`
	Hosts          []hostInfo `json:"hosts"`
	HostUser       string     `json:"host_user"`
	HostPassword   string     `json:"host_password"`
}

type instance struct {
	model   *simulator.Model
	control net.Listener
	ready   readyLine
	tempCA  string
}

func main() {
	mode := flag.String("mode", "vcenter", "inventory to simulate: vcenter or esx")
	caOut := flag.String("ca-out", "", "write the CA certificate (PEM) to this path (default: a temp file removed at exit)")
	ignoreStdin := flag.Bool("ignore-stdin", false, "do not exit when stdin reaches EOF (for manual runs)")
	trace := flag.Bool("trace", false, "dump SOAP requests and responses to stderr")
	tlsProfile := flag.String("tls", tlsCASigned, "server TLS: ca-signed, self-signed-ca, rsa1024, tls10 or expired")
	vms := flag.Int("vms", 0, "add this many powered-off VMs bench-vm-00001... (spread over the cluster's hosts)")
	hosts := flag.Int("hosts", 0, "with --mode esx: an ESX-only cluster of N (2..3) hosts serving their own endpoints, no vCenter")
	flag.Parse()

	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	simulator.Trace = *trace

	if *vms < 0 {
		log.Printf("vcsim-ext: --vms must be >= 0")
		os.Exit(2)
	}
	if *hosts != 0 && (*mode != "esx" || *hosts < 2 || *hosts > len(clusterHosts)) {
		log.Printf("vcsim-ext: --hosts N needs --mode esx and 2 <= N <= %d", len(clusterHosts))
		os.Exit(2)
	}
	if err := loadWSDL(); err != nil { // wsdl.go
		log.Printf("vcsim-ext: %s", err)
		os.Exit(2)
	}
	inst, err := start(*mode, *caOut, *tlsProfile, *vms, *hosts)
	if err != nil {
		log.Printf("vcsim-ext: start-up failed: %s", err)
		os.Exit(1)
	}

	line, _ := json.Marshal(inst.ready)
	fmt.Fprintf(os.Stdout, "%s\n", line)
	_ = os.Stdout.Sync()
	log.Printf("ready: %s", line)

	done := make(chan string, 2)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { done <- "signal " + (<-sig).String() }()
	if !*ignoreStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			done <- "stdin closed"
		}()
	}
	log.Printf("shutting down: %s", <-done)
	inst.close()
	os.Exit(0)
}

func (inst *instance) close() {
	closed := make(chan struct{})
	go func() {
		_ = inst.control.Close()
		for _, e := range X.allEndpoints() {
			e.close()
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		log.Printf("server close timed out; exiting anyway")
	}
	inst.model.Remove() // removes the datastore temp directories
	if inst.tempCA != "" {
		_ = os.Remove(inst.tempCA)
	}
}

// clusterHosts are the hosts of --mode esx --hosts N, in order.
var clusterHosts = []string{"DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"}

func start(mode, caOut, tlsProfile string, extraVMs, nhosts int) (*instance, error) {
	var m *simulator.Model
	modelMode := mode
	switch {
	case mode == "vcenter":
		m = simulator.VPX()
	case mode == "esx" && nhosts > 0:
		// ESX-only cluster: the vCenter model's inventory, never served
		// through a vCenter endpoint.
		m = simulator.VPX()
		modelMode = "vcenter"
	case mode == "esx":
		m = simulator.ESX()
	default:
		return nil, fmt.Errorf("unknown --mode %q (want vcenter or esx)", mode)
	}
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("creating model: %w", err)
	}

	X = newExt(modelMode)
	X.esxHosts = nhosts > 0
	X.hostLocks = X.esxHosts
	if err := X.prepareInventory(m); err != nil {
		m.Remove()
		return nil, fmt.Errorf("preparing inventory: %w", err)
	}
	if extraVMs > 0 {
		c, err := vim25.NewClient(context.Background(), m.Service)
		if err == nil {
			err = X.addBenchVMs(context.Background(), c, extraVMs)
		}
		if err != nil {
			m.Remove()
			return nil, fmt.Errorf("adding %d VMs: %w", extraVMs, err)
		}
	}

	mat, err := generateTLSProfile(tlsProfile)
	if err != nil {
		m.Remove()
		return nil, fmt.Errorf("generating TLS material: %w", err)
	}
	inst := &instance{model: m}
	fail := func(err error) (*instance, error) {
		for _, e := range X.allEndpoints() {
			e.close()
		}
		m.Remove()
		if inst.tempCA != "" {
			_ = os.Remove(inst.tempCA)
		}
		return nil, err
	}
	caFile := caOut
	if caFile == "" {
		f, err := os.CreateTemp("", "vcsim-ext-ca-*.pem")
		if err != nil {
			return fail(err)
		}
		caFile = f.Name()
		_ = f.Close()
		inst.tempCA = caFile
	}
	if err := os.WriteFile(caFile, mat.caPEM, 0o644); err != nil {
		return fail(fmt.Errorf("writing CA: %w", err))
	}

	// Service.Listen.User makes vcsim's SessionManager accept only these
	// credentials (anything else: InvalidLogin "Login failure").
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(simUser, simPassword)}
	minTLS, maxTLS := tlsVersions(tlsProfile)
	m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{mat.leaf}, MinVersion: minTLS, MaxVersion: maxTLS}
	srv := m.Service.NewServer()
	// vcsim's server only sets the model up (SDK registration, the URL it
	// advertises); our endpoint serves the same handler on the same port so
	// that the control surface can take it down and bring it back.
	addr := srv.Listener.Addr().String()
	handler := srv.Config.Handler
	srv.Close()

	var hostNames []string
	switch {
	case mode == "vcenter":
		for _, e := range simulator.Map.All("HostSystem") {
			hostNames = append(hostNames, e.Entity().Name)
		}
		sort.Strings(hostNames)
	case nhosts > 0:
		hostNames = clusterHosts[:nhosts]
	}

	if mode == "esx" && nhosts == 0 {
		X.rootSvc = hostService()
	}
	if nhosts == 0 {
		ep, err := newEndpoint(vcenterEndpoint, addr, m.Service.TLS, wsdlHandler(X.frontHandler(handler, nil)))
		if err != nil {
			return fail(err)
		}
		X.vcenter = ep
	}
	if err := X.setupHosts(hostNames, tlsProfile, mat, minTLS, maxTLS); err != nil {
		return fail(fmt.Errorf("host endpoints: %w", err))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	inst.control = ln
	go func() {
		err := http.Serve(ln, X.controlHandler())
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Printf("control server: %s", err)
		}
	}()

	inst.ready = readyLine{
		Control:        "http://" + ln.Addr().String(),
		User:           simUser,
		Password:       simPassword,
		Thumbprint:     mat.thumbprint256,
		ThumbprintSHA1: mat.thumbprintSHA1,
		CAFile:         caFile,
		Mode:           mode,
		PID:            os.Getpid(),
		Hosts:          []hostInfo{},
		HostUser:       hostUser,
		HostPassword:   hostPassword,
	}
	for _, n := range X.hostOrder {
		inst.ready.Hosts = append(inst.ready.Hosts, X.hosts[n].info())
	}
	switch {
	case X.vcenter != nil && mode == "esx":
		// Plain --mode esx: the one host is the endpoint itself; it takes
		// both its usual credentials and the host ones.
		inst.ready.URL = X.vcenter.url()
		name := "localhost.localdomain"
		inst.ready.Hosts = []hostInfo{{Name: name, URL: inst.ready.URL, Thumbprint: mat.thumbprint256}}
	case X.vcenter != nil:
		inst.ready.URL = X.vcenter.url()
	default:
		first := X.hosts[X.hostOrder[0]]
		inst.ready.URL = first.ep.url()
		inst.ready.User, inst.ready.Password = hostUser, hostPassword
		inst.ready.Thumbprint, inst.ready.ThumbprintSHA1 = first.mat.thumbprint256, first.mat.thumbprintSHA1
	}
	return inst, nil
}

// prepareInventory wraps the model's VMs, makes VM placement deterministic
// and creates the unregistered VM "vmha-unreg".
func (x *Ext) prepareInventory(m *simulator.Model) error {
	ctx := context.Background()
	c, err := vim25.NewClient(ctx, m.Service)
	if err != nil {
		return err
	}
	x.ensureWrapped(true)
	installPropertyCollector(c.ServiceContent.PropertyCollector)
	installAuthz(*c.ServiceContent.AuthorizationManager)

	var dcFolder, pool, host types.ManagedObjectReference
	dcObj := simulator.Map.Any("Datacenter")
	dc, ok := moOf(dcObj).(*mo.Datacenter)
	if !ok {
		return errors.New("no datacenter")
	}
	dcFolder = dc.VmFolder
	x.realDC = dc

	if x.mode == "vcenter" {
		// vcsim places cluster VMs on a random cluster host; pin them.
		pins := map[string]string{"DC0_C0_RP0_VM0": "DC0_C0_H0", "DC0_C0_RP0_VM1": "DC0_C0_H1"}
		for vmName, hName := range pins {
			vm := findVMByName(vmName)
			href, ok := findHostByName(hName)
			if vm == nil || !ok {
				return fmt.Errorf("inventory: %s or %s missing", vmName, hName)
			}
			withVM(vm.Self, func(vm *VM) { x.moveVM(vm, href, nil) })
		}
		href, ok := findHostByName("DC0_C0_H0")
		if !ok {
			return errors.New("inventory: DC0_C0_H0 missing")
		}
		host = href
	} else {
		href, ok := findHostByName("localhost.localdomain")
		if !ok {
			return errors.New("inventory: ESX host missing")
		}
		host = href
	}
	pool, err = rootPoolOf(host)
	if err != nil {
		return err
	}

	// vmha-unreg: its files exist on the datastore, but it is not registered.
	spec := types.VirtualMachineConfigSpec{
		Name:     unregName,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherGuest64),
		NumCPUs:  1,
		MemoryMB: 64,
		Files:    &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
	}
	task, err := object.NewFolder(c, dcFolder).CreateVM(ctx, spec, object.NewResourcePool(c, pool), object.NewHostSystem(c, host))
	if err != nil {
		return fmt.Errorf("creating %s: %w", unregName, err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating %s: %w", unregName, err)
	}
	unregRef := info.Result.(types.ManagedObjectReference)
	x.ensureWrapped(true)

	// Guest state of the initial inventory: running VMs have Tools running
	// and a green heartbeat, the others are gray.
	for _, vm := range allVMs() {
		withVM(vm.Self, func(vm *VM) {
			on := vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
			simulator.Map.Update(vm, initialGuestChanges(on))
			x.setRunning(vm, on)
		})
	}

	if err := object.NewVirtualMachine(c, unregRef).Unregister(ctx); err != nil {
		return fmt.Errorf("unregistering %s: %w", unregName, err)
	}
	x.mu.Lock()
	var vmxPath string
	for p, i := range x.unreg {
		if i.Name == unregName {
			vmxPath = p
		}
	}
	x.mu.Unlock()
	if vmxPath == "" {
		return errors.New("vmha-unreg was not recorded as unregistered")
	}
	log.Printf("inventory ready (%s mode); %s unregistered at %s", x.mode, unregName, vmxPath)
	return nil
}
