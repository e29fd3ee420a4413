package main

// Per-host ESX-direct endpoints. Every served HostSystem has its own HTTPS
// SOAP port over the SAME model as the vCenter (one process, vcsim's global
// simulator.Map), and shows what a real ESXi shows of itself:
//   - its own ServiceContent (apiType HostAgent) whose root folder holds one
//     datacenter "ha-datacenter" with per-host vm/host/datastore/network
//     folders. These containers are objects of their own in the Map
//     (morefs "ha-folder-vm@host-34", ...); the VM, host, pool and datastore
//     objects are the model's own.
//   - only its own VMs: the property collector drops other hosts' VMs and
//     hosts from results (pc.go), FindByUuid/FindByDatastorePath search only
//     this host, and a call on another host's VM is ManagedObjectNotFound.
//   - its own logins (root / vmha-host-password) and sessions: vcsim's
//     SessionManager is shared, so the front checks that a session cookie
//     belongs to the endpoint it is used on.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	vxml "github.com/vmware/govmomi/vim25/xml"
)

const (
	hostUser     = "root"
	hostPassword = "vmha-host-password"

	lockdownDisabled = "lockdownDisabled"
	lockdownNormal   = "lockdownNormal"
	lockdownStrict   = "lockdownStrict"
)

type hostEP struct {
	name  string
	ref   types.ManagedObjectReference
	ep    *endpoint
	mat   *tlsMaterial
	uuid  string // about.instanceUuid
	svc   *simulator.Service
	fresh sync.Mutex // serialises vm folder refreshes

	root, vmFolder, hostFolder, dsFolder, netFolder *mo.Folder
	dc                                              *mo.Datacenter

	// real container moref (as serialized) -> this host's, for responses
	rewrite [][2][]byte

	mu         sync.Mutex
	lockdown   string
	exceptions []string
}

type hostInfo struct {
	Name       string `json:"name"`
	URL        string `json:"url"`
	Thumbprint string `json:"thumbprint"`
}

func (h *hostEP) info() hostInfo {
	return hostInfo{Name: h.name, URL: h.ep.url(), Thumbprint: h.mat.thumbprint256}
}

func perHostRef(kind, value string, host types.ManagedObjectReference) types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: kind, Value: value + "@" + host.Value}
}

func newFolder(ref types.ManagedObjectReference, name string, parent *types.ManagedObjectReference, childType []string, children []types.ManagedObjectReference) *mo.Folder {
	f := &mo.Folder{}
	f.Self = ref
	f.Name = name
	f.Parent = parent
	f.ChildType = childType
	f.ChildEntity = append([]types.ManagedObjectReference{}, children...)
	return f
}

// setupHosts starts an endpoint for each named host.
func (x *Ext) setupHosts(names []string, profile string, vc *tlsMaterial, minTLS, maxTLS uint16) error {
	dcObj := x.realDC
	for _, name := range names {
		ref, ok := findHostByName(name)
		if !ok {
			return fmt.Errorf("no host %q in the inventory", name)
		}
		_, hs := hostMO(ref)
		mat, err := hostMaterial(profile, vc)
		if err != nil {
			return err
		}
		h := &hostEP{
			name:     name,
			ref:      ref,
			mat:      mat,
			uuid:     uuid.NewSHA1(uuid.NameSpaceOID, []byte("vcsim-ext host "+name)).String(),
			lockdown: lockdownDisabled,
		}
		rootRef := perHostRef("Folder", "ha-folder-root", ref)
		dcRef := perHostRef("Datacenter", "ha-datacenter", ref)
		vmRef := perHostRef("Folder", "ha-folder-vm", ref)
		hostRef := perHostRef("Folder", "ha-folder-host", ref)
		dsRef := perHostRef("Folder", "ha-folder-datastore", ref)
		netRef := perHostRef("Folder", "ha-folder-network", ref)
		var crs []types.ManagedObjectReference
		if cr := computeResourceOf(ref); cr != nil {
			crs = append(crs, *cr)
		}
		h.root = newFolder(rootRef, "ha-folder-root", nil, []string{"Datacenter"}, []types.ManagedObjectReference{dcRef})
		h.vmFolder = newFolder(vmRef, "vm", &dcRef, []string{"VirtualMachine"}, hs.Vm)
		h.hostFolder = newFolder(hostRef, "host", &dcRef, []string{"ComputeResource"}, crs)
		h.dsFolder = newFolder(dsRef, "datastore", &dcRef, []string{"Datastore"}, hs.Datastore)
		h.netFolder = newFolder(netRef, "network", &dcRef, []string{"Network"}, hs.Network)
		h.dc = &mo.Datacenter{VmFolder: vmRef, HostFolder: hostRef, DatastoreFolder: dsRef, NetworkFolder: netRef,
			Datastore: append([]types.ManagedObjectReference{}, hs.Datastore...), Network: append([]types.ManagedObjectReference{}, hs.Network...)}
		h.dc.Self = dcRef
		h.dc.Name = "ha-datacenter"
		h.dc.Parent = &rootRef
		for _, o := range []mo.Reference{h.root, h.dc, h.vmFolder, h.hostFolder, h.dsFolder, h.netFolder} {
			simulator.Map.Put(o)
		}
		if dcObj != nil {
			pairs := [][2]types.ManagedObjectReference{
				{dcObj.Self, dcRef}, {dcObj.VmFolder, vmRef}, {dcObj.HostFolder, hostRef},
				{dcObj.DatastoreFolder, dsRef}, {dcObj.NetworkFolder, netRef},
			}
			if dcObj.Parent != nil {
				pairs = append(pairs, [2]types.ManagedObjectReference{*dcObj.Parent, rootRef})
			}
			for _, p := range pairs {
				h.rewrite = append(h.rewrite, [2][]byte{
					[]byte(fmt.Sprintf(`type="%s">%s<`, p[0].Type, p[0].Value)),
					[]byte(fmt.Sprintf(`type="%s">%s<`, p[1].Type, p[1].Value)),
				})
			}
		}

		svc := hostService()
		h.svc = svc

		tlsConf := &tls.Config{Certificates: []tls.Certificate{mat.leaf}, MinVersion: minTLS, MaxVersion: maxTLS}
		ep, err := newEndpoint(name, "127.0.0.1:0", tlsConf, x.frontHandler(svc.ServeMux, h))
		if err != nil {
			return err
		}
		h.ep = ep

		obj, _ := hostMO(ref)
		simulator.Map.WithLock(obj, func() {
			simulator.Map.Update(obj, []types.PropertyChange{
				{Name: "config.certificate", Val: mat.leafPEM},
				{Name: "config.lockdownMode", Val: types.HostLockdownMode(lockdownDisabled)},
				// The port vCenter reaches the host's agent on (443 on a real host).
				{Name: "summary.config.port", Val: int32(ep.port())},
				// vCenter reports the host certificate's SHA-1 thumbprint here.
				{Name: "summary.config.sslThumbprint", Val: mat.thumbprintSHA1},
			})
		})
		x.hosts[name] = h
		x.hostOrder = append(x.hostOrder, name)
		log.Printf("host %s (%s) serves %s", name, ref.Value, ep.url())
	}
	return nil
}

// hostService is a vcsim Service over the one model that takes the host
// credentials: vcsim checks Login against Service.Listen.User, and the
// session manager (hence the sessions) is the model's.
func hostService() *simulator.Service {
	svc := simulator.New(nil)
	svc.RegisterSDK(simulator.Map)
	svc.Listen = &url.URL{User: url.UserPassword(hostUser, hostPassword)}
	svc.ServeMux.HandleFunc("/sdk/vimServiceVersions.xml", svc.ServiceVersions)
	return svc
}

func (x *Ext) hostByRef(ref types.ManagedObjectReference) *hostEP {
	for _, h := range x.hosts {
		if h.ref == ref {
			return h
		}
	}
	return nil
}

// hostVMs is the host's "vm" list (copied under the host's lock).
func hostVMs(ref types.ManagedObjectReference) []types.ManagedObjectReference {
	obj, hs := hostMO(ref)
	if hs == nil {
		return nil
	}
	var out []types.ManagedObjectReference
	simulator.Map.WithLock(obj, func() {
		out = append(out, hs.Vm...)
	})
	return out
}

func sameRefs(a, b []types.ManagedObjectReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// refresh makes the per-host vm folder list the host's VMs now.
func (h *hostEP) refresh() {
	h.fresh.Lock()
	defer h.fresh.Unlock()
	vms := hostVMs(h.ref)
	if vms == nil {
		vms = []types.ManagedObjectReference{}
	}
	simulator.Map.WithLock(h.vmFolder, func() {
		if !sameRefs(h.vmFolder.ChildEntity, vms) {
			simulator.Map.Update(h.vmFolder, []types.PropertyChange{{Name: "childEntity", Val: vms}})
		}
	})
}

func (x *Ext) refreshHosts() {
	for _, h := range x.hosts {
		h.refresh()
	}
}

// owns reports whether a VM is registered on this host.
func (h *hostEP) owns(ref types.ManagedObjectReference) bool {
	on := false
	withVM(ref, func(vm *VM) {
		on = vm.Runtime.Host != nil && *vm.Runtime.Host == h.ref
	})
	return on
}

// visible reports whether an object may appear through this host's endpoint.
func (h *hostEP) visible(ref types.ManagedObjectReference) bool {
	switch ref.Type {
	case "VirtualMachine":
		vm, ok := simulator.Map.Get(ref).(*VM)
		if !ok {
			return true // not ours to judge (e.g. a VM being created)
		}
		host := vm.Runtime.Host
		return host != nil && *host == h.ref
	case "HostSystem":
		return ref == h.ref
	}
	return true
}

func (h *hostEP) loginAllowed(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lockdown == lockdownDisabled {
		return true
	}
	for _, e := range h.exceptions {
		if e == user {
			return true
		}
	}
	return false
}

func (x *Ext) setLockdown(h *hostEP, mode string, exceptions []string) {
	h.mu.Lock()
	h.lockdown = mode
	h.exceptions = append([]string(nil), exceptions...)
	h.mu.Unlock()
	obj, _ := hostMO(h.ref)
	simulator.Map.WithLock(obj, func() {
		simulator.Map.Update(obj, []types.PropertyChange{{Name: "config.lockdownMode", Val: types.HostLockdownMode(mode)}})
	})
	log.Printf("host %s lockdown -> %s (exceptions %v)", h.name, mode, exceptions)
}

// ---- SOAP answers the host front gives itself ---------------------------------

func writeSOAPResponse(w http.ResponseWriter, method string, v interface{}) {
	var b bytes.Buffer
	b.WriteString(envelopeHead)
	enc := vxml.NewEncoder(&b)
	err := enc.EncodeElement(v, vxml.StartElement{Name: vxml.Name{Local: method + "Response", Space: "urn:" + vim25.Namespace}})
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		writeSOAPFault(w, "SystemError", "encoding response: "+err.Error(), "")
		return
	}
	b.WriteString(envelopeTail)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

func writeNotFound(w http.ResponseWriter, ref types.ManagedObjectReference) {
	msg := fmt.Sprintf("The object 'vim.%s:%s' has already been deleted or has not been completely created", ref.Type, ref.Value)
	writeSOAPFault(w, "ManagedObjectNotFound", msg,
		fmt.Sprintf(`<obj type="%s">%s</obj>`, xmlEscape(ref.Type), xmlEscape(ref.Value)))
}

// serviceContent is what RetrieveServiceContent returns on this host.
func (h *hostEP) serviceContent() types.ServiceContent {
	si, _ := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	var c types.ServiceContent
	if si != nil {
		c = si.Content
	}
	c.RootFolder = h.root.Self
	a := &c.About
	a.Name = "VMware ESXi"
	a.FullName = fmt.Sprintf("VMware ESXi %s build-%s", a.Version, a.Build)
	a.OsType = "vmnix-x86"
	a.ProductLineId = "embeddedEsx"
	a.ApiType = "HostAgent"
	a.InstanceUuid = h.uuid
	a.LicenseProductName = "VMware ESX Server"
	return c
}

// search answers FindByUuid / FindAllByUuid / FindByDatastorePath from this
// host's VMs only. It returns false for other methods.
func (h *hostEP) search(w http.ResponseWriter, method string, body []byte) bool {
	switch method {
	case "FindByUuid", "FindAllByUuid", "FindByDatastorePath":
	default:
		return false
	}
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return false
	}
	var match func(vm *VM) bool
	vmSearch := true
	hostUUID := ""
	switch req := m.Body.(type) {
	case *types.FindByUuid:
		vmSearch, hostUUID = req.VmSearch, req.Uuid
		match = uuidMatcher(req.Uuid, req.InstanceUuid)
	case *types.FindAllByUuid:
		vmSearch, hostUUID = req.VmSearch, req.Uuid
		match = uuidMatcher(req.Uuid, req.InstanceUuid)
	case *types.FindByDatastorePath:
		p := req.Path
		match = func(vm *VM) bool { return vm.vmxPath() == p }
	default:
		return false
	}
	var found []types.ManagedObjectReference
	if vmSearch {
		for _, ref := range hostVMs(h.ref) {
			withVM(ref, func(vm *VM) {
				if vm.Config != nil && match(vm) {
					found = append(found, ref)
				}
			})
		}
	} else {
		// vmSearch=false looks for hosts by hardware uuid: only this one.
		obj, hs := hostMO(h.ref)
		simulator.Map.WithLock(obj, func() {
			if hs.Summary.Hardware != nil && strings.EqualFold(hs.Summary.Hardware.Uuid, hostUUID) {
				found = append(found, h.ref)
			}
		})
	}
	switch method {
	case "FindAllByUuid":
		writeSOAPResponse(w, method, &types.FindAllByUuidResponse{Returnval: found})
	case "FindByUuid":
		res := &types.FindByUuidResponse{}
		if len(found) > 0 {
			res.Returnval = &found[0]
		}
		writeSOAPResponse(w, method, res)
	default:
		res := &types.FindByDatastorePathResponse{}
		if len(found) > 0 {
			res.Returnval = &found[0]
		}
		writeSOAPResponse(w, method, res)
	}
	return true
}

func uuidMatcher(want string, instance *bool) func(vm *VM) bool {
	return func(vm *VM) bool {
		if instance != nil && *instance {
			return strings.EqualFold(vm.Config.InstanceUuid, want)
		}
		return strings.EqualFold(vm.Config.Uuid, want)
	}
}

// encodeRequest re-serializes a (modified) request body.
func encodeRequest(method string, req interface{}) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envelopeHead)
	enc := vxml.NewEncoder(&b)
	if err := enc.EncodeElement(req, vxml.StartElement{Name: vxml.Name{Local: method, Space: "urn:" + vim25.Namespace}}); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	b.WriteString(envelopeTail)
	return b.Bytes(), nil
}

// hostRegister turns RegisterVM_Task on this host's vm folder into the same
// call on the model's folder, on this host. It returns the new body, or nil
// after answering the request itself.
func (x *Ext) hostRegister(w http.ResponseWriter, h *hostEP, body []byte) []byte {
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return body
	}
	req, ok := m.Body.(*types.RegisterVM_Task)
	if !ok {
		return body
	}
	if req.This != h.vmFolder.Self {
		writeNotFound(w, req.This)
		return nil
	}
	if req.Host != nil && *req.Host != h.ref {
		_, msg := invalidArgument("host")
		writeSOAPFault(w, "InvalidArgument", msg, `<invalidProperty>host</invalidProperty>`)
		return nil
	}
	host := h.ref
	req.Host = &host
	if req.Pool == nil {
		if p, err := rootPoolOf(h.ref); err == nil {
			req.Pool = &p
		}
	}
	if x.realDC != nil {
		req.This = x.realDC.VmFolder
	}
	nb, err := encodeRequest("RegisterVM_Task", req)
	if err != nil {
		writeSOAPFault(w, "SystemError", err.Error(), "")
		return nil
	}
	return nb
}

// ---- response rewriting ----------------------------------------------------------

// rewriteContainers shows the host's own containers where the model's appear
// (e.g. a VM's parent folder).
func (h *hostEP) rewriteContainers(b []byte) []byte {
	for _, p := range h.rewrite {
		if bytes.Contains(b, p[0]) {
			b = bytes.ReplaceAll(b, p[0], p[1])
		}
	}
	return b
}

var certElem = regexp.MustCompile(`<(certificate|byte)>(-----BEGIN CERTIFICATE-----[^<]*)</(certificate|byte)>`)

// byteArrays writes a PEM held in an xsd:byte[] (HostConfigInfo.certificate)
// the way vSphere does: one element per (signed) byte. govmomi would write
// the bytes as one text node.
func byteArrays(b []byte) []byte {
	if !bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
		return b
	}
	return certElem.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := certElem.FindSubmatch(m)
		name := string(sub[1])
		text := unescapeXML(sub[2])
		var out bytes.Buffer
		for _, c := range text {
			fmt.Fprintf(&out, "<%s>%d</%s>", name, int8(c), name)
		}
		return out.Bytes()
	})
}

func unescapeXML(b []byte) []byte {
	var s string
	d := vxml.NewDecoder(bytes.NewReader(append(append([]byte("<x>"), b...), "</x>"...)))
	if err := d.Decode(&s); err != nil {
		return b
	}
	return []byte(s)
}
