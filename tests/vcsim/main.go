// Command vcsim-ext is the vSphere simulator used by vmha's end-to-end tests:
// govmomi's vcsim (simulator package) plus the behaviour of a real
// vCenter/ESXi that vmha depends on (VM questions, guest heartbeat, VMware
// Tools, host connection loss, .vmx locks, session expiry, ...), driven
// through a small JSON control API. See README.md.
//
//	vcsim-ext --mode vcenter|esx [--ca-out PATH] [--ignore-stdin] [--trace] [--vms N] [--wsdl-dir DIR]
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
	URL            string `json:"url"`
	Control        string `json:"control"`
	User           string `json:"user"`
	Password       string `json:"password"`
	Thumbprint     string `json:"thumbprint"`
	ThumbprintSHA1 string `json:"thumbprint_sha1"`
	CAFile         string `json:"ca_file"`
	Mode           string `json:"mode"`
	PID            int    `json:"pid"`
}

type instance struct {
	model   *simulator.Model
	server  *simulator.Server
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
	flag.Parse()

	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	simulator.Trace = *trace

	if *vms < 0 {
		log.Printf("vcsim-ext: --vms must be >= 0")
		os.Exit(2)
	}
	if err := loadWSDL(); err != nil { // wsdl.go
		log.Printf("vcsim-ext: %s", err)
		os.Exit(2)
	}
	inst, err := start(*mode, *caOut, *tlsProfile, *vms)
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
		inst.server.Close() // waits for outstanding requests (e.g. WaitForUpdatesEx)
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

func start(mode, caOut, tlsProfile string, extraVMs int) (*instance, error) {
	var m *simulator.Model
	switch mode {
	case "vcenter":
		m = simulator.VPX()
	case "esx":
		m = simulator.ESX()
	default:
		return nil, fmt.Errorf("unknown --mode %q (want vcenter or esx)", mode)
	}
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("creating model: %w", err)
	}

	X = newExt(mode)
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
	caFile := caOut
	if caFile == "" {
		f, err := os.CreateTemp("", "vcsim-ext-ca-*.pem")
		if err != nil {
			m.Remove()
			return nil, err
		}
		caFile = f.Name()
		_ = f.Close()
		inst.tempCA = caFile
	}
	if err := os.WriteFile(caFile, mat.caPEM, 0o644); err != nil {
		m.Remove()
		return nil, fmt.Errorf("writing CA: %w", err)
	}

	// Service.Listen.User makes vcsim's SessionManager accept only these
	// credentials (anything else: InvalidLogin "Login failure").
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(simUser, simPassword)}
	minTLS, maxTLS := tlsVersions(tlsProfile)
	m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{mat.leaf}, MinVersion: minTLS, MaxVersion: maxTLS}
	srv := m.Service.NewServer()
	// Put our front handler before vcsim's mux. No client knows the port
	// yet, so nothing is being served concurrently.
	srv.Config.Handler = wsdlHandler(X.frontHandler(srv.Config.Handler))
	// Count the TCP connections clients open (GET /stats "connections"); the
	// server's own hook (it tracks connections for Close) still runs.
	serverHook := srv.Config.ConnState
	srv.Config.ConnState = func(c net.Conn, cs http.ConnState) {
		if cs == http.StateNew {
			X.stats.addConnection()
		}
		if serverHook != nil {
			serverHook(c, cs)
		}
	}
	inst.server = srv

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		m.Remove()
		return nil, err
	}
	inst.control = ln
	go func() {
		err := http.Serve(ln, X.controlHandler())
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Printf("control server: %s", err)
		}
	}()

	inst.ready = readyLine{
		URL:            fmt.Sprintf("https://%s/sdk", srv.URL.Host),
		Control:        "http://" + ln.Addr().String(),
		User:           simUser,
		Password:       simPassword,
		Thumbprint:     mat.thumbprint256,
		ThumbprintSHA1: mat.thumbprintSHA1,
		CAFile:         caFile,
		Mode:           mode,
		PID:            os.Getpid(),
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

	var dcFolder, pool, host types.ManagedObjectReference
	dcObj := simulator.Map.Any("Datacenter")
	dc, ok := moOf(dcObj).(*mo.Datacenter)
	if !ok {
		return errors.New("no datacenter")
	}
	dcFolder = dc.VmFolder

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
			simulator.Map.Update(vm, initialGuestChanges(vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn))
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
