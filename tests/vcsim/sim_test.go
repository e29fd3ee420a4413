package main

// In-process smoke test of the extensions over real SOAP (HTTPS):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go test ./tests/vcsim
//
// simulator.Map is a process global, so one instance serves all subtests.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func testFault(err error) interface{} {
	switch {
	case err == nil:
		return nil
	case soap.IsSoapFault(err):
		return soap.ToSoapFault(err).VimFault()
	case soap.IsVimFault(err):
		return soap.ToVimFault(err)
	}
	if te, ok := err.(task.Error); ok {
		return te.Fault()
	}
	return err
}

func isFault(err error, name string) bool {
	f := testFault(err)
	if f == nil {
		return false
	}
	rt := reflect.TypeOf(f)
	if rt.Kind() == reflect.Ptr {
		rt = rt.Elem()
	}
	return rt.Name() == name
}

func TestSimulator(t *testing.T) {
	inst, err := start("vcenter", filepath.Join(t.TempDir(), "ca.pem"), tlsCASigned, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close()
	ctx := context.Background()
	// A new client (its own connection, not logged in) trusting the simulator's CA.
	newClient := func(t *testing.T) *vim25.Client {
		u, _ := url.Parse(inst.ready.URL)
		sc := soap.NewClient(u, false)
		if err := sc.SetRootCAs(inst.ready.CAFile); err != nil {
			t.Fatal(err)
		}
		c, err := vim25.NewClient(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient(t)
	sm := session.NewManager(c)
	control := func(method, path string, body string) map[string]interface{} {
		req, _ := http.NewRequest(method, inst.ready.Control+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]interface{}
		_ = json.NewDecoder(res.Body).Decode(&m)
		if res.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v", method, path, res.StatusCode, m)
		}
		return m
	}

	if err := sm.Login(ctx, url.UserPassword(simUser, "nope")); !isFault(err, "InvalidLogin") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := sm.Login(ctx, url.UserPassword(simUser, simPassword)); err != nil {
		t.Fatal(err)
	}
	vmRef := types.ManagedObjectReference{Type: "VirtualMachine", Value: control("GET", "/vm/DC0_H0_VM0", "")["moref"].(string)}
	vm := object.NewVirtualMachine(c, vmRef)
	props := func() mo.VirtualMachine {
		var m mo.VirtualMachine
		if err := vm.Properties(ctx, vmRef, []string{"runtime", "guestHeartbeatStatus"}, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("question blocks power-on until AnswerVM", func(t *testing.T) {
		tk, _ := vm.PowerOff(ctx)
		if err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		control("POST", "/vm/DC0_H0_VM0/question", `{"once":true}`)
		tk, _ = vm.PowerOn(ctx)
		var q *types.VirtualMachineQuestionInfo
		for i := 0; i < 100 && q == nil; i++ {
			time.Sleep(20 * time.Millisecond)
			q = props().Runtime.Question
		}
		if q == nil || q.Message[0].Id != "msg.uuid.altered" || q.Choice.DefaultIndex != 2 {
			t.Fatalf("question: %+v", q)
		}
		var ti mo.Task
		_ = tk.Properties(ctx, tk.Reference(), []string{"info"}, &ti)
		if ti.Info.State != types.TaskInfoStateRunning {
			t.Fatalf("task %s while question pending", ti.Info.State)
		}
		// The pending power-on is listed in the VM's recentTask, as ManagedEntity lists it.
		var withTasks mo.VirtualMachine
		if err := vm.Properties(ctx, vmRef, []string{"recentTask"}, &withTasks); err != nil {
			t.Fatal(err)
		}
		if n := len(withTasks.RecentTask); n == 0 || withTasks.RecentTask[n-1] != tk.Reference() {
			t.Fatalf("recentTask %v does not end with the power-on %v", withTasks.RecentTask, tk.Reference())
		}
		if err := vm.Answer(ctx, q.Id, "9"); !isFault(err, "InvalidArgument") {
			t.Fatalf("bad choice: %v", err)
		}
		if err := vm.Answer(ctx, q.Id, "1"); err != nil {
			t.Fatal(err)
		}
		if err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if m := props(); m.Runtime.PowerState != "poweredOn" || m.Runtime.Question != nil {
			t.Fatalf("after answer: %s %v", m.Runtime.PowerState, m.Runtime.Question)
		}
	})

	t.Run("register vmha-unreg, lock, power-on", func(t *testing.T) {
		un := control("GET", "/vm/vmha-unreg", "")
		vmx := un["vmx"].(string)
		host := types.ManagedObjectReference{Type: "HostSystem", Value: control("GET", "/host/DC0_C0_H1", "")["moref"].(string)}
		hs := object.NewHostSystem(c, host)
		pool, _ := hs.ResourcePool(ctx)
		var dc mo.Datacenter
		dcs, _ := object.NewSearchIndex(c).FindByInventoryPath(ctx, "DC0")
		_ = object.NewDatacenter(c, dcs.Reference()).Properties(ctx, dcs.Reference(), []string{"vmFolder"}, &dc)
		tk, err := object.NewFolder(c, dc.VmFolder).RegisterVM(ctx, vmx, "", false, pool, hs)
		if err != nil {
			t.Fatal(err)
		}
		info, err := tk.WaitForResult(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		nvm := object.NewVirtualMachine(c, info.Result.(types.ManagedObjectReference))
		var m mo.VirtualMachine
		_ = nvm.Properties(ctx, nvm.Reference(), []string{"name", "config.uuid", "runtime.host"}, &m)
		if m.Name != "vmha-unreg" || m.Config.Uuid != un["uuid"] || *m.Runtime.Host != host {
			t.Fatalf("registered: %s %s %v", m.Name, m.Config.Uuid, m.Runtime.Host)
		}
		control("POST", "/lock?vmx="+url.QueryEscape(vmx), `{"held":true,"expire_ms":400}`)
		tk, _ = nvm.PowerOn(ctx)
		err = tk.Wait(ctx)
		if !isFault(err, "GenericVmConfigFault") || !strings.Contains(err.Error(), "Failed to lock the file") {
			t.Fatalf("locked power-on: %v", err)
		}
		time.Sleep(450 * time.Millisecond)
		tk, _ = nvm.PowerOn(ctx)
		if err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("suspend, resume, power off a suspended VM", func(t *testing.T) {
		ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: control("GET", "/vm/DC0_H0_VM1", "")["moref"].(string)}
		svm := object.NewVirtualMachine(c, ref)
		state := func() types.VirtualMachinePowerState {
			var m mo.VirtualMachine
			if err := svm.Properties(ctx, ref, []string{"runtime.powerState"}, &m); err != nil {
				t.Fatal(err)
			}
			return m.Runtime.PowerState
		}
		if v := control("POST", "/vm/DC0_H0_VM1/suspend", ""); v["power_state"] != "suspended" || v["heartbeat"] != "gray" {
			t.Fatalf("control suspend: %v", v)
		}
		if err := svm.ShutdownGuest(ctx); !isFault(err, "InvalidPowerState") {
			t.Fatalf("ShutdownGuest of a suspended VM: %v", err)
		}
		tk, _ := svm.PowerOn(ctx)
		if err := tk.Wait(ctx); err != nil || state() != "poweredOn" {
			t.Fatalf("resume: %v, %s", err, state())
		}
		tk, _ = svm.Suspend(ctx)
		if err := tk.Wait(ctx); err != nil || state() != "suspended" {
			t.Fatalf("SuspendVM_Task: %v, %s", err, state())
		}
		tk, _ = svm.PowerOff(ctx)
		if err := tk.Wait(ctx); err != nil || state() != "poweredOff" {
			t.Fatalf("power off a suspended VM: %v, %s", err, state())
		}
	})

	t.Run("host not responding", func(t *testing.T) {
		control("POST", "/host/DC0_H0/connection", `{"state":"notResponding"}`)
		defer control("POST", "/host/DC0_H0/connection", `{"state":"connected"}`)
		if m := props(); m.Runtime.ConnectionState != "disconnected" || m.Runtime.PowerState != "poweredOn" {
			t.Fatalf("%s %s", m.Runtime.ConnectionState, m.Runtime.PowerState)
		}
		if err := vm.ShutdownGuest(ctx); !isFault(err, "InvalidHostConnectionState") {
			t.Fatalf("ShutdownGuest: %v", err)
		}
	})

	t.Run("bench VMs and connection count", func(t *testing.T) {
		ic, err := vim25.NewClient(ctx, inst.model.Service)
		if err != nil {
			t.Fatal(err)
		}
		if err := X.addBenchVMs(ctx, ic, 3); err != nil {
			t.Fatal(err)
		}
		hosts := map[string]bool{}
		for i := 1; i <= 3; i++ {
			v := control("GET", "/vm/"+benchVMName(i), "")
			if v["power_state"] != "poweredOff" || v["heartbeat"] != "gray" || v["connection_state"] != "connected" {
				t.Fatalf("%s: %v", benchVMName(i), v)
			}
			hosts[v["host"].(string)] = true
		}
		if len(hosts) != 3 {
			t.Fatalf("bench VMs not spread over the cluster's hosts: %v", hosts)
		}
		control("POST", "/stats/reset", "")
		if n := control("GET", "/stats", "")["connections"]; n != 0.0 {
			t.Fatalf("connections after reset: %v", n)
		}
		newClient(t)
		if n := control("GET", "/stats", "")["connections"]; n != 1.0 {
			t.Fatalf("connections after one new client: %v", n)
		}
	})

	t.Run("each session's default collector gets its own updates", func(t *testing.T) {
		// Two sessions, each waiting on its own instance of ServiceContent.propertyCollector: a
		// change must reach both (vcsim 0.24 alone would give it to the last one that waited).
		c2 := newClient(t)
		if err := session.NewManager(c2).Login(ctx, url.UserPassword(simUser, simPassword)); err != nil {
			t.Fatal(err)
		}
		pc := c.ServiceContent.PropertyCollector
		spec := types.PropertyFilterSpec{
			PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"runtime.powerState"}}},
			ObjectSet: []types.ObjectSpec{{Obj: vmRef}},
		}
		maxWait := int32(5)
		versions := make([]string, 2)
		for i, cl := range []*vim25.Client{c, c2} {
			if _, err := methods.CreateFilter(ctx, cl, &types.CreateFilter{This: pc, Spec: spec}); err != nil {
				t.Fatal(err)
			}
			res, err := methods.WaitForUpdatesEx(ctx, cl, &types.WaitForUpdatesEx{This: pc, Options: &types.WaitOptions{MaxWaitSeconds: &maxWait}})
			if err != nil || res.Returnval == nil {
				t.Fatalf("session %d, initial update: %v", i+1, err)
			}
			versions[i] = res.Returnval.Version
		}
		seen := make(chan int, 2)
		for i, cl := range []*vim25.Client{c, c2} {
			go func(i int, cl *vim25.Client) {
				res, err := methods.WaitForUpdatesEx(ctx, cl, &types.WaitForUpdatesEx{This: pc, Version: versions[i], Options: &types.WaitOptions{MaxWaitSeconds: &maxWait}})
				if err == nil && res.Returnval != nil && len(res.Returnval.FilterSet) > 0 {
					seen <- i + 1
					return
				}
				seen <- -(i + 1)
			}(i, cl)
		}
		time.Sleep(100 * time.Millisecond)
		tk, err := vm.PowerOff(ctx)
		if err == nil {
			err = tk.Wait(ctx)
		}
		if err != nil && !isFault(err, "InvalidPowerState") {
			tk, _ = vm.PowerOn(ctx)
			_ = tk.Wait(ctx)
		}
		for n := 0; n < 2; n++ {
			if got := <-seen; got < 0 {
				t.Fatalf("session %d saw no update on its default collector", -got)
			}
		}
	})

	// ---- host endpoints, vCenter outages ----

	hostOf := func(t *testing.T, name string) hostInfo {
		for _, h := range inst.ready.Hosts {
			if h.Name == name {
				return h
			}
		}
		t.Fatalf("no host %s in the ready line %v", name, inst.ready.Hosts)
		return hostInfo{}
	}
	clientFor := func(t *testing.T, rawURL string) *vim25.Client {
		u, _ := url.Parse(rawURL)
		sc := soap.NewClient(u, false)
		if err := sc.SetRootCAs(inst.ready.CAFile); err != nil {
			t.Fatal(err)
		}
		cl, err := vim25.NewClient(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	hostLogin := func(t *testing.T, name string) *vim25.Client {
		hc := clientFor(t, hostOf(t, name).URL)
		if err := session.NewManager(hc).Login(ctx, url.UserPassword(hostUser, hostPassword)); err != nil {
			t.Fatalf("login on %s: %v", name, err)
		}
		return hc
	}
	vmNames := func(t *testing.T, cl *vim25.Client) map[string]types.ManagedObjectReference {
		v, err := view.NewManager(cl).CreateContainerView(ctx, cl.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = v.Destroy(ctx) }()
		var vms []mo.VirtualMachine
		if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
			t.Fatal(err)
		}
		out := map[string]types.ManagedObjectReference{}
		for _, m := range vms {
			out[m.Name+" "+m.Self.Value] = m.Self
		}
		return out
	}
	sorted := func(m map[string]types.ManagedObjectReference) []string {
		var out []string
		for k := range m {
			out = append(out, strings.SplitN(k, " ", 2)[0])
		}
		sort.Strings(out)
		return out
	}

	t.Run("host endpoint shows only its own VMs", func(t *testing.T) {
		h1 := hostOf(t, "DC0_C0_H1")
		hc := clientFor(t, h1.URL)
		if a := hc.ServiceContent.About; a.ApiType != "HostAgent" || a.Name != "VMware ESXi" || a.ApiVersion != c.ServiceContent.About.ApiVersion || a.InstanceUuid == c.ServiceContent.About.InstanceUuid {
			t.Fatalf("about: %+v", a)
		}
		hsm := session.NewManager(hc)
		if err := hsm.Login(ctx, url.UserPassword(simUser, simPassword)); !isFault(err, "InvalidLogin") {
			t.Fatalf("vCenter credentials on a host: %v", err)
		}
		if err := hsm.Login(ctx, url.UserPassword(hostUser, hostPassword)); err != nil {
			t.Fatal(err)
		}
		want := control("GET", "/host/DC0_C0_H1", "")["vms"].([]interface{})
		got := sorted(vmNames(t, hc))
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("VMs through %s: %v, want %v", h1.Name, got, want)
		}
		for i := range want {
			if got[i] != want[i].(string) {
				t.Fatalf("VMs through %s: %v, want %v", h1.Name, got, want)
			}
		}
		// The finder walks from the root folder: one datacenter, these VMs only.
		f := find.NewFinder(hc, true)
		dc, err := f.DefaultDatacenter(ctx)
		if err != nil || dc.Name() != "ha-datacenter" {
			t.Fatalf("datacenter: %v %v", dc, err)
		}
		f.SetDatacenter(dc)
		list, err := f.VirtualMachineList(ctx, "*")
		if err != nil || len(list) != len(want) {
			t.Fatalf("finder: %v %v", list, err)
		}
		// Another host's VM: not found by uuid, path or moref.
		other := control("GET", "/vm/DC0_C0_RP0_VM0", "")
		si := object.NewSearchIndex(hc)
		if ref, err := si.FindByUuid(ctx, nil, other["uuid"].(string), true, nil); err != nil || ref != nil {
			t.Fatalf("FindByUuid of another host's VM: %v %v", ref, err)
		}
		if ref, err := si.FindByDatastorePath(ctx, dc, other["vmx"].(string)); err != nil || ref != nil {
			t.Fatalf("FindByDatastorePath of another host's VM: %v %v", ref, err)
		}
		mine := control("GET", "/vm/"+want[0].(string), "")
		if ref, err := si.FindByUuid(ctx, nil, mine["uuid"].(string), true, nil); err != nil || ref == nil || ref.Reference().Value != mine["moref"] {
			t.Fatalf("FindByUuid of an own VM: %v %v", ref, err)
		}
		ovm := object.NewVirtualMachine(hc, types.ManagedObjectReference{Type: "VirtualMachine", Value: other["moref"].(string)})
		if _, err := ovm.PowerOff(ctx); !isFault(err, "ManagedObjectNotFound") {
			t.Fatalf("power off another host's VM: %v", err)
		}
		// Sessions are per endpoint: the host's cookie means nothing to vCenter.
		vc := clientFor(t, inst.ready.URL)
		hu, _ := url.Parse(h1.URL)
		vu, _ := url.Parse(inst.ready.URL)
		vc.Client.Jar.SetCookies(vu, hc.Client.Jar.Cookies(hu))
		var rf mo.Folder
		if err := object.NewFolder(vc, vc.ServiceContent.RootFolder).Properties(ctx, vc.ServiceContent.RootFolder, []string{"name"}, &rf); !isFault(err, "NotAuthenticated") {
			t.Fatalf("host cookie on vCenter: %v", err)
		}
		sessions := control("GET", "/sessions", "")["sessions"].([]interface{})
		seen := false
		for _, s := range sessions {
			if m := s.(map[string]interface{}); m["endpoint"] == "DC0_C0_H1" && m["user"] == hostUser {
				seen = true
			}
		}
		if !seen {
			t.Fatalf("host session not listed: %v", sessions)
		}
		// vCenter tells who the host is: its certificate, lockdown mode.
		var hs mo.HostSystem
		href := types.ManagedObjectReference{Type: "HostSystem", Value: control("GET", "/host/DC0_C0_H1", "")["moref"].(string)}
		if err := object.NewHostSystem(c, href).Properties(ctx, href, []string{"config.lockdownMode", "summary.config"}, &hs); err != nil || hs.Config.LockdownMode != "lockdownDisabled" {
			t.Fatalf("lockdownMode: %v %v", hs.Config, err)
		}
		if fmt.Sprint(hs.Summary.Config.Port) != hu.Port() || hs.Summary.Config.SslThumbprint != X.hosts["DC0_C0_H1"].mat.thumbprintSHA1 {
			t.Fatalf("summary.config: port %d, sslThumbprint %s", hs.Summary.Config.Port, hs.Summary.Config.SslThumbprint)
		}
		// config.certificate goes out as xsd:byte[] (one element per byte), which govmomi 0.24
		// cannot read: check the wire.
		req := `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>` +
			`<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>HostSystem</type>` +
			`<pathSet>config.certificate</pathSet></propSet><objectSet><obj type="HostSystem">` + href.Value + `</obj></objectSet></specSet><options/></RetrievePropertiesEx>` +
			`</soapenv:Body></soapenv:Envelope>`
		hreq, _ := http.NewRequest("POST", inst.ready.URL, strings.NewReader(req))
		for _, ck := range c.Client.Jar.Cookies(vu) {
			hreq.AddCookie(ck)
		}
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(inst.ready.CAFile)
		pool.AppendCertsFromPEM(pem)
		hres, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(hres.Body)
		hres.Body.Close()
		var wire strings.Builder
		for _, b := range X.hosts["DC0_C0_H1"].mat.leafPEM {
			fmt.Fprintf(&wire, "<byte>%d</byte>", int8(b))
		}
		if !strings.Contains(string(raw), `type="ArrayOfByte">`+wire.String()+`</val>`) {
			t.Fatalf("config.certificate on the wire: %.600s", raw)
		}
	})

	t.Run("lockdown refuses login", func(t *testing.T) {
		control("POST", "/host/DC0_C0_H2/lockdown", `{"mode":"lockdownNormal","exception_users":["svc-ha"]}`)
		hc := clientFor(t, hostOf(t, "DC0_C0_H2").URL)
		if err := session.NewManager(hc).Login(ctx, url.UserPassword(hostUser, hostPassword)); !isFault(err, "InvalidLogin") {
			t.Fatalf("root in lockdown: %v", err)
		}
		control("POST", "/host/DC0_C0_H2/lockdown", `{"mode":"lockdownDisabled"}`)
		hostLogin(t, "DC0_C0_H2")
	})

	t.Run("a host vCenter lost still works through its own endpoint", func(t *testing.T) {
		control("POST", "/host/DC0_C0_H1/connection", `{"state":"disconnected"}`)
		defer control("POST", "/host/DC0_C0_H1/connection", `{"state":"connected"}`)
		ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: control("GET", "/vm/DC0_C0_RP0_VM1", "")["moref"].(string)}
		if err := object.NewVirtualMachine(c, ref).ShutdownGuest(ctx); !isFault(err, "InvalidHostConnectionState") {
			t.Fatalf("ShutdownGuest through vCenter: %v", err)
		}
		hc := hostLogin(t, "DC0_C0_H1")
		hvm := object.NewVirtualMachine(hc, ref)
		var m mo.VirtualMachine
		if err := hvm.Properties(ctx, ref, []string{"runtime", "summary.runtime.connectionState"}, &m); err != nil || m.Runtime.ConnectionState != "connected" || m.Summary.Runtime.ConnectionState != "connected" {
			t.Fatalf("through the host: %v %v", m.Runtime.ConnectionState, err)
		}
		tk, err := hvm.PowerOff(ctx)
		if err == nil {
			err = tk.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("power off through the host: %v", err)
		}
		tk, err = hvm.PowerOn(ctx)
		if err == nil {
			err = tk.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("power on through the host: %v", err)
		}
		if v := control("GET", "/vm/DC0_C0_RP0_VM1", ""); v["power_state"] != "poweredOn" || v["connection_state"] != "disconnected" {
			t.Fatalf("model: %v", v)
		}
	})

	t.Run("frozen vCenter answers nothing while hosts answer", func(t *testing.T) {
		if st := control("GET", "/control?vcenter=frozen", ""); st["vcenter"] != "frozen" {
			t.Fatalf("control: %v", st)
		}
		tctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
		defer cancel()
		u, _ := url.Parse(inst.ready.URL)
		sc := soap.NewClient(u, false)
		_ = sc.SetRootCAs(inst.ready.CAFile)
		if _, err := vim25.NewClient(tctx, sc); err == nil || tctx.Err() == nil {
			t.Fatalf("frozen vCenter answered: %v", err)
		}
		hc := hostLogin(t, "DC0_C0_H0")
		if len(vmNames(t, hc)) == 0 {
			t.Fatal("host H0 shows no VM")
		}
		control("POST", "/control?vcenter=up", "")
		clientFor(t, inst.ready.URL)
	})

	t.Run("register and power on through a host while vCenter is down", func(t *testing.T) {
		old := control("GET", "/vm/DC0_C0_RP0_VM0", "")
		vmx := old["vmx"].(string)
		control("POST", "/settings", `{"host_locks":true,"dead_host_lock_ms":300}`)
		defer control("POST", "/settings", `{"host_locks":false}`)
		control("POST", "/host/DC0_C0_H0/connection", `{"state":"notResponding"}`)
		control("POST", "/control?vcenter=down", "")
		defer control("POST", "/control?vcenter=up", "")
		u, _ := url.Parse(inst.ready.URL)
		if conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}); err == nil {
			conn.Close()
			t.Fatal("vCenter port still accepts connections while down")
		}
		h0, _ := url.Parse(hostOf(t, "DC0_C0_H0").URL)
		if _, err := tls.Dial("tcp", h0.Host, &tls.Config{InsecureSkipVerify: true}); err == nil {
			t.Fatal("dead host H0 still accepts connections")
		}

		hc := hostLogin(t, "DC0_C0_H1")
		f := find.NewFinder(hc, true)
		dc, err := f.DefaultDatacenter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.SetDatacenter(dc)
		folders, err := dc.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := f.DefaultHostSystem(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := hs.ResourcePool(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tk, err := folders.VmFolder.RegisterVM(ctx, vmx, "", false, pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := tk.WaitForResult(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		nref := info.Result.(types.ManagedObjectReference)
		if nref.Value == old["moref"] {
			t.Fatal("re-registration kept the old moref")
		}
		tk, _ = folders.VmFolder.RegisterVM(ctx, vmx, "", false, pool, nil)
		if _, err := tk.WaitForResult(ctx, nil); !isFault(err, "AlreadyExists") {
			t.Fatalf("second registration on the same host: %v", err)
		}
		nvm := object.NewVirtualMachine(hc, nref)
		tk, _ = nvm.PowerOn(ctx)
		if err := tk.Wait(ctx); !isFault(err, "GenericVmConfigFault") || strings.Contains(err.Error(), "ESX host") {
			t.Fatalf("power-on while the dead host's lock holds: %v", err)
		}
		time.Sleep(350 * time.Millisecond)
		tk, _ = nvm.PowerOn(ctx)
		if err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}

		if st := control("POST", "/control?vcenter=up", ""); st["vcenter"] != "up" {
			t.Fatalf("control: %v", st)
		}
		vc := clientFor(t, inst.ready.URL)
		if err := session.NewManager(vc).Login(ctx, url.UserPassword(simUser, simPassword)); err != nil {
			t.Fatal(err)
		}
		entries := map[string]mo.VirtualMachine{}
		for k, ref := range vmNames(t, vc) {
			if strings.HasPrefix(k, "DC0_C0_RP0_VM0 ") {
				var m mo.VirtualMachine
				if err := object.NewVirtualMachine(vc, ref).Properties(ctx, ref, []string{"runtime"}, &m); err != nil {
					t.Fatal(err)
				}
				entries[ref.Value] = m
			}
		}
		o, n := entries[old["moref"].(string)], entries[nref.Value]
		if len(entries) != 2 || o.Runtime.ConnectionState != "disconnected" || n.Runtime.PowerState != "poweredOn" || n.Runtime.ConnectionState != "connected" {
			t.Fatalf("vCenter after the outage: %+v", entries)
		}
		// H0 comes back after a crash: its VMs are off.
		control("POST", "/host/DC0_C0_H0/connection", `{"state":"connected","rebooted":true}`)
		if v := control("GET", "/vmx?vmx="+url.QueryEscape(vmx), ""); v["moref"] == old["moref"] && v["power_state"] != "poweredOff" {
			t.Fatalf("old entry after reboot: %v", v)
		}
		var om mo.VirtualMachine
		oref := types.ManagedObjectReference{Type: "VirtualMachine", Value: old["moref"].(string)}
		if err := object.NewVirtualMachine(vc, oref).Properties(ctx, oref, []string{"runtime"}, &om); err != nil || om.Runtime.PowerState != "poweredOff" || om.Runtime.ConnectionState != "connected" {
			t.Fatalf("old entry after reboot: %v %v", om.Runtime, err)
		}
		c = vc // later subtests use a live connection
		vm = object.NewVirtualMachine(c, vmRef)
	})

	t.Run("session expiry", func(t *testing.T) {
		control("POST", "/sessions/expire", "")
		var f mo.Folder
		err := object.NewFolder(c, c.ServiceContent.RootFolder).Properties(ctx, c.ServiceContent.RootFolder, []string{"name"}, &f)
		if !isFault(err, "NotAuthenticated") {
			t.Fatalf("after expiry: %v", err)
		}
	})
}

// TestESXHosts runs the ESX-only cluster (--mode esx --hosts 2) in a child
// process: simulator.Map is a process global, and TestSimulator has its own.
func TestESXHosts(t *testing.T) { inChild(t, "TestESXHosts", esxHostsChild) }

// TestPlainESX: plain --mode esx also takes the host credentials.
func TestPlainESX(t *testing.T) { inChild(t, "TestPlainESX", plainESXChild) }

// inChild runs f in a child process of the test binary (one simulator per process).
func inChild(t *testing.T, name string, f func(t *testing.T)) {
	if os.Getenv("VCSIM_EXT_CHILD") == name {
		f(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), "VCSIM_EXT_CHILD="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func plainESXChild(t *testing.T) {
	inst, err := start("esx", filepath.Join(t.TempDir(), "ca.pem"), tlsCASigned, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close()
	ctx := context.Background()
	r := inst.ready
	if len(r.Hosts) != 1 || r.Hosts[0].URL != r.URL || r.Hosts[0].Name != "localhost.localdomain" || r.HostUser != hostUser || r.HostPassword != hostPassword {
		t.Fatalf("ready line: %+v", r)
	}
	// vmha after root too: a root login must not change who the next Login checks.
	for _, cred := range []*url.Userinfo{url.UserPassword(simUser, simPassword), url.UserPassword(hostUser, hostPassword), url.UserPassword(simUser, simPassword)} {
		u, _ := url.Parse(r.URL)
		sc := soap.NewClient(u, false)
		if err := sc.SetRootCAs(r.CAFile); err != nil {
			t.Fatal(err)
		}
		c, err := vim25.NewClient(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		if c.ServiceContent.About.ApiType != "HostAgent" {
			t.Fatalf("apiType %s", c.ServiceContent.About.ApiType)
		}
		sm := session.NewManager(c)
		if err := sm.Login(ctx, cred); err != nil {
			t.Fatalf("login as %s: %v", cred.Username(), err)
		}
		us, err := sm.UserSession(ctx)
		if err != nil || us.UserName != cred.Username() {
			t.Fatalf("session of %s: %+v %v", cred.Username(), us, err)
		}
	}
	u, _ := url.Parse(r.URL)
	sc := soap.NewClient(u, false)
	_ = sc.SetRootCAs(r.CAFile)
	c, _ := vim25.NewClient(ctx, sc)
	if err := session.NewManager(c).Login(ctx, url.UserPassword(hostUser, simPassword)); !isFault(err, "InvalidLogin") {
		t.Fatalf("root with the vmha password: %v", err)
	}
}

func esxHostsChild(t *testing.T) {
	inst, err := start("esx", filepath.Join(t.TempDir(), "ca.pem"), tlsCASigned, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close()
	ctx := context.Background()
	r := inst.ready
	if r.Mode != "esx" || len(r.Hosts) != 2 || r.Hosts[0].Name != "DC0_C0_H0" || r.URL != r.Hosts[0].URL || r.User != hostUser {
		t.Fatalf("ready line: %+v", r)
	}
	control := func(method, path, body string) (int, map[string]interface{}) {
		req, _ := http.NewRequest(method, r.Control+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]interface{}
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	login := func(h hostInfo) *vim25.Client {
		u, _ := url.Parse(h.URL)
		sc := soap.NewClient(u, false)
		if err := sc.SetRootCAs(r.CAFile); err != nil {
			t.Fatal(err)
		}
		c, err := vim25.NewClient(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		if err := session.NewManager(c).Login(ctx, url.UserPassword(hostUser, hostPassword)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if code, _ := control("POST", "/control?vcenter=down", ""); code != http.StatusConflict {
		t.Fatalf("vcenter=down without a vCenter: HTTP %d", code)
	}
	control("POST", "/settings", `{"dead_host_lock_ms":300}`)
	_, vm0 := control("GET", "/vm/DC0_C0_RP0_VM0", "")
	if vm0["host"] != "DC0_C0_H0" || vm0["power_state"] != "poweredOn" {
		t.Fatalf("DC0_C0_RP0_VM0: %v", vm0)
	}
	h1 := login(r.Hosts[1])
	f := find.NewFinder(h1, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	folders, _ := dc.Folders(ctx)
	tk, err := folders.VmFolder.RegisterVM(ctx, vm0["vmx"].(string), "", false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := tk.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	nvm := object.NewVirtualMachine(h1, info.Result.(types.ManagedObjectReference))
	powerOn := func() error {
		tk, err := nvm.PowerOn(ctx)
		if err != nil {
			return err
		}
		return tk.Wait(ctx)
	}
	// H0 runs it: its VMX holds the files.
	if err := powerOn(); !isFault(err, "GenericVmConfigFault") {
		t.Fatalf("power-on on H1 while H0 runs the VM: %v", err)
	}
	// H0 dies: its lock outlives it for dead_host_lock_ms.
	control("POST", "/host/DC0_C0_H0/connection", `{"state":"notResponding"}`)
	if err := powerOn(); !isFault(err, "GenericVmConfigFault") {
		t.Fatalf("power-on right after H0 died: %v", err)
	}
	time.Sleep(350 * time.Millisecond)
	if err := powerOn(); err != nil {
		t.Fatalf("power-on after the dead host's lock expired: %v", err)
	}
	// H0 comes back after a reboot: its entry is off; powering it on there now fails (H1 holds the files).
	control("POST", "/host/DC0_C0_H0/connection", `{"state":"connected","rebooted":true}`)
	h0 := login(r.Hosts[0])
	ovm := object.NewVirtualMachine(h0, types.ManagedObjectReference{Type: "VirtualMachine", Value: vm0["moref"].(string)})
	var m mo.VirtualMachine
	if err := ovm.Properties(ctx, ovm.Reference(), []string{"runtime.powerState"}, &m); err != nil || m.Runtime.PowerState != "poweredOff" {
		t.Fatalf("H0's entry after the reboot: %v %v", m.Runtime.PowerState, err)
	}
	tk, _ = ovm.PowerOn(ctx)
	if err := tk.Wait(ctx); !isFault(err, "GenericVmConfigFault") {
		t.Fatalf("power-on on H0 while H1 runs the VM: %v", err)
	}
}
