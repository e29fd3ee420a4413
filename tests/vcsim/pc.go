package main

// PC wraps vcsim's PropertyCollector to add result paging:
// RetrievePropertiesEx honours options.maxObjects (or the control surface's
// "retrieve_page_size" when maxObjects is unset) and returns a token;
// ContinueRetrievePropertiesEx / CancelRetrievePropertiesEx (missing from
// vcsim 0.24) serve / drop the remaining pages.
//
// vcsim creates the per-session instance of the ServiceContent
// PropertyCollector with reflect.New on the type registered in the Map, so
// registering a *PC for that moref makes every session use a *PC.
//
// WaitForUpdatesEx on a session's default collector: vcsim 0.24 keys its
// change listeners by moref, and every session's instance of the default
// collector has the same moref, so the session that waited last would take
// every other session's updates. vCenter and ESXi keep the default collector
// per session (only CreatePropertyCollector's are "private" within one), so
// each instance listens under a key of its own here.

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type PC struct {
	simulator.PropertyCollector

	tokMu sync.Mutex
	pages map[string]*pagedResult
	next  int

	listener *sessionListener
}

// defaultPC is ServiceContent.propertyCollector.
var defaultPC types.ManagedObjectReference

var listenerSeq int64

// sessionListener forwards inventory changes to one session's instance of the
// default collector, under a moref of its own (see the comment at the top).
type sessionListener struct {
	pc  *simulator.PropertyCollector
	ref types.ManagedObjectReference
}

func (l *sessionListener) Reference() types.ManagedObjectReference { return l.ref }
func (l *sessionListener) PutObject(o mo.Reference)                { l.pc.PutObject(o) }
func (l *sessionListener) UpdateObject(o mo.Reference, c []types.PropertyChange) {
	l.pc.UpdateObject(o, c)
}
func (l *sessionListener) RemoveObject(ref types.ManagedObjectReference) { l.pc.RemoveObject(ref) }

func (pc *PC) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	res := pc.PropertyCollector.WaitForUpdatesEx(ctx, r)
	if h := X.sessionHost(ctx); h != nil {
		if body, ok := res.(*methods.WaitForUpdatesExBody); ok && body.Res != nil && body.Res.Returnval != nil {
			h.filterUpdates(body.Res.Returnval)
		}
	}
	if r.Version == "" && pc.Self == defaultPC {
		// The call above listens under the shared moref: move it to our own.
		ctx.Map.RemoveHandler(&pc.PropertyCollector)
		if pc.listener == nil {
			n := atomic.AddInt64(&listenerSeq, 1)
			pc.listener = &sessionListener{
				pc:  &pc.PropertyCollector,
				ref: types.ManagedObjectReference{Type: "PropertyCollector", Value: fmt.Sprintf("%s-session-%d", pc.Self.Value, n)},
			}
		}
		ctx.Map.AddHandler(pc.listener)
	}
	return res
}

type pagedResult struct {
	objects []types.ObjectContent
	size    int
}

func installPropertyCollector(ref types.ManagedObjectReference) {
	defaultPC = ref
	w := &PC{}
	w.Self = ref
	simulator.Map.Put(w)
}

func (pc *PC) page(objs []types.ObjectContent, size int) *types.RetrieveResult {
	if len(objs) <= size {
		return &types.RetrieveResult{Objects: objs}
	}
	pc.tokMu.Lock()
	defer pc.tokMu.Unlock()
	if pc.pages == nil {
		pc.pages = map[string]*pagedResult{}
	}
	pc.next++
	token := strconv.Itoa(pc.next)
	pc.pages[token] = &pagedResult{objects: objs[size:], size: size}
	return &types.RetrieveResult{Token: token, Objects: objs[:size]}
}

func (pc *PC) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	if h := X.sessionHost(ctx); h != nil {
		body.Res.Returnval.Objects = h.filterContents(body.Res.Returnval.Objects)
	}
	size := int(r.Options.MaxObjects)
	if size <= 0 {
		size = X.pageSize()
	}
	if size <= 0 {
		return res
	}
	body.Res.Returnval = pc.page(body.Res.Returnval.Objects, size)
	return body
}

func (pc *PC) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	p, ok := pc.takePage(r.Token)
	if !ok {
		f, msg := invalidArgument("token")
		body.Fault_ = soapFault(f, msg)
		return body
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *pc.page(p.objects, p.size)}
	return body
}

func (pc *PC) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	body := &methods.CancelRetrievePropertiesExBody{}
	_, ok := pc.takePage(r.Token)
	if !ok {
		f, msg := invalidArgument("token")
		body.Fault_ = soapFault(f, msg)
		return body
	}
	body.Res = &types.CancelRetrievePropertiesExResponse{}
	return body
}

// CreatePropertyCollector returns a *PC too (vcsim would create a plain one).
// Its moref's type is PropertyCollector, as vCenter sends (left empty, vcsim
// would name it after the Go type, "PC", which pyVmomi cannot deserialize).
func (pc *PC) CreatePropertyCollector(ctx *simulator.Context, c *types.CreatePropertyCollector) soap.HasFault {
	cpc := &PC{}
	cpc.Self.Type = "PropertyCollector"
	return &methods.CreatePropertyCollectorBody{
		Res: &types.CreatePropertyCollectorResponse{Returnval: ctx.Session.Put(cpc).Reference()},
	}
}

// takePage removes and returns the pages left behind a continuation token.
func (pc *PC) takePage(token string) (*pagedResult, bool) {
	pc.tokMu.Lock()
	defer pc.tokMu.Unlock()
	p, ok := pc.pages[token]
	delete(pc.pages, token)
	return p, ok
}

func (pc *PC) RetrieveProperties(ctx *simulator.Context, r *types.RetrieveProperties) soap.HasFault {
	res := pc.PropertyCollector.RetrieveProperties(ctx, r)
	if h := X.sessionHost(ctx); h != nil {
		if body, ok := res.(*methods.RetrievePropertiesBody); ok && body.Res != nil {
			body.Res.Returnval = h.filterContents(body.Res.Returnval)
		}
	}
	return res
}

// ---- what a host endpoint's sessions see -------------------------------------------

// filterContents drops other hosts' VMs and hosts from a result and shows
// the rest as the host sees it (filterValue).
func (h *hostEP) filterContents(objs []types.ObjectContent) []types.ObjectContent {
	out := make([]types.ObjectContent, 0, len(objs))
	for _, oc := range objs {
		if !h.visible(oc.Obj) {
			continue
		}
		props := make([]types.DynamicProperty, len(oc.PropSet))
		for i, p := range oc.PropSet {
			p.Val = h.filterValue(oc.Obj, p.Name, p.Val)
			props[i] = p
		}
		oc.PropSet = props
		out = append(out, oc)
	}
	return out
}

func (h *hostEP) filterUpdates(u *types.UpdateSet) {
	var sets []types.PropertyFilterUpdate
	for _, fs := range u.FilterSet {
		var objs []types.ObjectUpdate
		for _, ou := range fs.ObjectSet {
			if !h.visible(ou.Obj) {
				continue
			}
			changes := make([]types.PropertyChange, len(ou.ChangeSet))
			for i, c := range ou.ChangeSet {
				c.Val = h.filterValue(ou.Obj, c.Name, c.Val)
				changes[i] = c
			}
			ou.ChangeSet = changes
			objs = append(objs, ou)
		}
		if len(objs) > 0 {
			fs.ObjectSet = objs
			sets = append(sets, fs)
		}
	}
	u.FilterSet = sets
}

func (h *hostEP) filterRefs(refs []types.ManagedObjectReference) []types.ManagedObjectReference {
	out := make([]types.ManagedObjectReference, 0, len(refs))
	for _, r := range refs {
		if h.visible(r) {
			out = append(out, r)
		}
	}
	return out
}

// filterValue removes other hosts' VMs and hosts from reference lists (a
// pool's or datastore's "vm", a cluster's "host", a view's "view") and shows
// the connection state of this host and its VMs as "connected": vCenter may
// have lost the host, but whoever reaches its own endpoint talks to it. Values
// are copied, never changed in place (they may be the model's).
func (h *hostEP) filterValue(obj types.ManagedObjectReference, name string, val types.AnyType) types.AnyType {
	switch v := val.(type) {
	case types.ArrayOfManagedObjectReference:
		return types.ArrayOfManagedObjectReference{ManagedObjectReference: h.filterRefs(v.ManagedObjectReference)}
	case *types.ArrayOfManagedObjectReference:
		return &types.ArrayOfManagedObjectReference{ManagedObjectReference: h.filterRefs(v.ManagedObjectReference)}
	case []types.ManagedObjectReference:
		return h.filterRefs(v)
	}
	switch obj.Type {
	case "VirtualMachine":
		disc := types.VirtualMachineConnectionStateDisconnected
		conn := types.VirtualMachineConnectionStateConnected
		switch v := val.(type) {
		case types.VirtualMachineConnectionState:
			if v == disc {
				return conn
			}
		case types.VirtualMachineRuntimeInfo:
			if v.ConnectionState == disc {
				v.ConnectionState = conn
			}
			return v
		case types.VirtualMachineSummary:
			if v.Runtime.ConnectionState == disc {
				v.Runtime.ConnectionState = conn
			}
			return v
		}
	case "HostSystem":
		conn := types.HostSystemConnectionStateConnected
		switch v := val.(type) {
		case types.HostSystemConnectionState:
			return conn
		case types.HostRuntimeInfo:
			v.ConnectionState = conn
			return v
		case types.HostListSummary:
			if v.Runtime != nil {
				rt := *v.Runtime
				rt.ConnectionState = conn
				v.Runtime = &rt
			}
			return v
		}
	}
	return val
}
