package main

// Extension state shared by the SOAP overrides (vm.go), the SOAP front
// handler (front.go) and the control surface (control.go).
//
// Locking rules (to stay deadlock free next to vcsim's own locking):
//   - vcsim dispatches a SOAP method while holding the per-object lock of the
//     target object (simulator.Map.WithLock). Our own goroutines take the
//     same lock through withVM() before touching a VM.
//   - Lock order is VM -> HostSystem/ResourcePool -> Task. Never take a VM
//     lock while holding a host lock.
//   - Ext.mu only guards the maps below; it is never held while taking a
//     simulator object lock.
//   - Every property change goes through simulator.Map.Update so that
//     PropertyCollector filters / WaitForUpdatesEx see it.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	defaultHeartbeatStatus  = "green"
	defaultHeartbeatDelay   = 300 * time.Millisecond
	defaultShutdownDelay    = 200 * time.Millisecond
	defaultTaskDelay        = 50 * time.Millisecond
	heartbeatNone           = "none"
	toolsVersionWhenRunning = "11365"
)

// questionSpec is a question armed for the next power-on(s) of a vmx path.
type questionSpec struct {
	ID        string       `json:"id,omitempty"` // empty: generated "_vmxN" at power-on
	Text      string       `json:"text"`
	MessageID string       `json:"message_id"`
	Choices   []choiceSpec `json:"choices"`
	Default   int32        `json:"default"`
	CancelKey string       `json:"cancel_key,omitempty"`
	Once      bool         `json:"once"`
}

type choiceSpec struct {
	Key     string `json:"key"`
	Label   string `json:"label"`
	Summary string `json:"summary"`
}

// defaultQuestion is the question ESXi asks when a VM's uuid.location no
// longer matches its path ("moved or copied"). Labels are the real ids sent
// by ESXi (PowerCLI's Set-VMQuestion -Option and pyVmomi scripts match on them).
func defaultQuestion() *questionSpec {
	return &questionSpec{
		Text: "This virtual machine might have been moved or copied.\n" +
			"In order to configure certain management and networking features, VMware ESX needs to know if this virtual machine was moved or copied.\n\n" +
			"If you don't know, answer \"I _copied it\".\n",
		MessageID: "msg.uuid.altered",
		Choices: []choiceSpec{
			{Key: "0", Label: "button.uuid.cancel", Summary: "Cancel"},
			{Key: "1", Label: "button.uuid.movedTheVM", Summary: "I _moved it"},
			{Key: "2", Label: "button.uuid.copiedTheVM", Summary: "I _copied it"},
		},
		Default:   2,
		CancelKey: "0",
		Once:      true,
	}
}

// cancelKey returns the key of the choice that cancels the operation.
func (q *questionSpec) cancelKey() string {
	if q.CancelKey != "" {
		return q.CancelKey
	}
	for _, c := range q.Choices {
		if strings.EqualFold(c.Summary, "cancel") || strings.HasSuffix(strings.ToLower(c.Label), ".cancel") {
			return c.Key
		}
	}
	return ""
}

// vmxSettings are per .vmx path, so they survive unregister/register (new moref).
type vmxSettings struct {
	question       *questionSpec
	hbStatus       string // green|yellow|red|gray|none
	hbDelay        time.Duration
	toolsRunning   bool
	ignoreShutdown bool
	shutdownDelay  time.Duration
}

func newVmxSettings() *vmxSettings {
	return &vmxSettings{
		hbStatus:      defaultHeartbeatStatus,
		hbDelay:       defaultHeartbeatDelay,
		toolsRunning:  true,
		shutdownDelay: defaultShutdownDelay,
	}
}

// unregInfo is what the .vmx "remembers" about an unregistered VM.
type unregInfo struct {
	Name         string
	Vmx          string
	UUID         string
	InstanceUUID string
	LastHost     string
}

type answer struct {
	cancel bool
	key    string
	fault  types.BaseMethodFault // non-nil: the pending power-on must fail with this
	msg    string
}

type pendingQuestion struct {
	info      *types.VirtualMachineQuestionInfo
	cancelKey string
	keys      map[string]bool
	ch        chan answer
}

type Ext struct {
	mode string

	mu        sync.Mutex
	vmx       map[string]*vmxSettings
	locks     map[string]time.Time // vmx -> expiry; zero time = until released
	unreg     map[string]*unregInfo
	pending   map[types.ManagedObjectReference]*pendingQuestion
	answered  map[types.ManagedObjectReference]map[string]bool
	powerBusy map[types.ManagedObjectReference]types.ManagedObjectReference // vm -> running power-on task
	gen       map[types.ManagedObjectReference]uint64
	qcounter  int
	taskDelay time.Duration
	pageSz    int

	wrapMu sync.Mutex

	stats    *stats
	sessions *sessionTracker

	// Endpoints: the vCenter's (nil in --mode esx --hosts N) and the hosts'.
	vcenter   *endpoint
	hosts     map[string]*hostEP
	hostOrder []string
	realDC    *mo.Datacenter // the model's datacenter (hosts show their own)
	esxHosts  bool           // --mode esx --hosts N

	// File locks between hosts (on by default with --hosts N): a VM powered
	// on on a live host locks its .vmx against the other entries of the same
	// files, and a host that stops responding keeps them for deadLockDelay.
	hostLocks     bool
	deadLockDelay time.Duration
	running       map[types.ManagedObjectReference]runInfo // powered-on VMs
	deadLocks     map[string]types.ManagedObjectReference  // vmx -> dead host that holds it

	explicitHost map[string]bool // vmx paths being registered with an explicit host

	rootSvc *simulator.Service // plain --mode esx: where root logins go
}

type runInfo struct {
	vmx  string
	host types.ManagedObjectReference
}

const defaultDeadLockDelay = 2 * time.Second

// sessionHost is the host whose endpoint the calling session logged in to
// (nil: the vCenter, or an internal call).
func (x *Ext) sessionHost(ctx *simulator.Context) *hostEP {
	if ctx == nil || ctx.Session == nil {
		return nil
	}
	name := x.sessions.endpointOf(ctx.Session.Key)
	if name == "" || name == vcenterEndpoint {
		return nil
	}
	return x.hosts[name]
}

func (x *Ext) endpointStats(name string) *stats {
	if name == vcenterEndpoint {
		if x.vcenter != nil {
			return x.vcenter.stats
		}
		return nil
	}
	if h := x.hosts[name]; h != nil && h.ep != nil {
		return h.ep.stats
	}
	return nil
}

func (x *Ext) allEndpoints() []*endpoint {
	var out []*endpoint
	if x.vcenter != nil {
		out = append(out, x.vcenter)
	}
	for _, n := range x.hostOrder {
		if h := x.hosts[n]; h.ep != nil {
			out = append(out, h.ep)
		}
	}
	return out
}

var X *Ext

func newExt(mode string) *Ext {
	return &Ext{
		mode:      mode,
		vmx:       map[string]*vmxSettings{},
		locks:     map[string]time.Time{},
		unreg:     map[string]*unregInfo{},
		pending:   map[types.ManagedObjectReference]*pendingQuestion{},
		answered:  map[types.ManagedObjectReference]map[string]bool{},
		powerBusy: map[types.ManagedObjectReference]types.ManagedObjectReference{},
		gen:       map[types.ManagedObjectReference]uint64{},
		taskDelay: defaultTaskDelay,
		stats:     newStats(),
		sessions:  newSessionTracker(),

		hosts:         map[string]*hostEP{},
		deadLockDelay: defaultDeadLockDelay,
		running:       map[types.ManagedObjectReference]runInfo{},
		deadLocks:     map[string]types.ManagedObjectReference{},
		explicitHost:  map[string]bool{},
	}
}

// settings returns (creating if needed) the settings for a vmx path. Caller holds x.mu.
func (x *Ext) settingsLocked(vmx string) *vmxSettings {
	s, ok := x.vmx[vmx]
	if !ok {
		s = newVmxSettings()
		x.vmx[vmx] = s
	}
	return s
}

// settingsCopy returns a snapshot of the settings for a vmx path.
func (x *Ext) settingsCopy(vmx string) vmxSettings {
	x.mu.Lock()
	defer x.mu.Unlock()
	return *x.settingsLocked(vmx)
}

func (x *Ext) updateSettings(vmx string, f func(s *vmxSettings)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f(x.settingsLocked(vmx))
}

func (x *Ext) getTaskDelay() time.Duration {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.taskDelay
}

func (x *Ext) pageSize() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.pageSz
}

// bumpGen invalidates timers (heartbeat, guest shutdown) scheduled for a VM.
func (x *Ext) bumpGen(ref types.ManagedObjectReference) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen[ref]++
	return x.gen[ref]
}

func (x *Ext) currentGen(ref types.ManagedObjectReference) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.gen[ref]
}

// lockHeld reports whether the vmx lock is held (expiring it if due).
func (x *Ext) lockHeld(vmx string) (bool, time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	until, ok := x.locks[vmx]
	if !ok {
		return false, time.Time{}
	}
	if !until.IsZero() && time.Now().After(until) {
		delete(x.locks, vmx)
		return false, time.Time{}
	}
	return true, until
}

func (x *Ext) nextQuestionID() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.qcounter++
	return fmt.Sprintf("_vmx%d", x.qcounter)
}

// takeQuestion returns the question armed for vmx, disarming it if "once".
func (x *Ext) takeQuestion(vmx string) *questionSpec {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.settingsLocked(vmx)
	q := s.question
	if q == nil {
		return nil
	}
	if q.Once {
		s.question = nil
	}
	cp := *q
	cp.Choices = append([]choiceSpec(nil), q.Choices...)
	return &cp
}

// ---- inventory helpers -------------------------------------------------

// moOf digs the embedded vim25/mo struct out of a registry object (like
// vcsim's getManagedObject, which is unexported).
func moOf(obj mo.Reference) interface{} {
	if obj == nil {
		return nil
	}
	rval := reflect.ValueOf(obj)
	if rval.Kind() != reflect.Ptr {
		return nil
	}
	rval = rval.Elem()
	for {
		rtype := rval.Type()
		if path.Base(rtype.PkgPath()) == "mo" {
			return rval.Addr().Interface()
		}
		if rtype.Kind() != reflect.Struct || rtype.NumField() == 0 {
			return nil
		}
		rval = rval.Field(0)
		if rval.Kind() == reflect.Ptr {
			if rval.IsNil() {
				return nil
			}
			rval = rval.Elem()
		}
	}
}

func hostMO(ref types.ManagedObjectReference) (mo.Reference, *mo.HostSystem) {
	obj := simulator.Map.Get(ref)
	h, _ := moOf(obj).(*mo.HostSystem)
	return obj, h
}

func hostName(ref *types.ManagedObjectReference) string {
	if ref == nil {
		return ""
	}
	_, h := hostMO(*ref)
	if h == nil {
		return ""
	}
	return h.Name
}

func hostConnection(ref *types.ManagedObjectReference) types.HostSystemConnectionState {
	if ref == nil {
		return types.HostSystemConnectionStateDisconnected
	}
	_, h := hostMO(*ref)
	if h == nil {
		return types.HostSystemConnectionStateDisconnected
	}
	return h.Runtime.ConnectionState
}

func hostConnected(ref *types.ManagedObjectReference) bool {
	return hostConnection(ref) == types.HostSystemConnectionStateConnected
}

// rootPoolOf is the root resource pool of a host's compute resource.
func rootPoolOf(host types.ManagedObjectReference) (types.ManagedObjectReference, error) {
	cr := computeResourceOf(host)
	if cr == nil {
		return types.ManagedObjectReference{}, errors.New("inventory: host without compute resource")
	}
	p := computeResourcePool(*cr)
	if p == nil {
		return types.ManagedObjectReference{}, errors.New("inventory: compute resource without pool")
	}
	return *p, nil
}

// initialGuestChanges is a VM's guest state when the simulator starts or
// adds it: Tools installed; running: Tools running and a green heartbeat,
// otherwise down (gray).
func initialGuestChanges(poweredOn bool) []types.PropertyChange {
	changes := []types.PropertyChange{{Name: "guest.toolsVersion", Val: toolsVersionWhenRunning}}
	if poweredOn {
		return append(changes, guestUpChanges(types.ManagedEntityStatusGreen)...)
	}
	return append(changes, guestDownChanges()...)
}

// computeResourceOf walks up the parents of a host or pool to its
// ComputeResource / ClusterComputeResource.
func computeResourceOf(ref types.ManagedObjectReference) *types.ManagedObjectReference {
	for i := 0; i < 32; i++ {
		obj := simulator.Map.Get(ref)
		if obj == nil {
			return nil
		}
		switch ref.Type {
		case "ComputeResource", "ClusterComputeResource":
			r := ref
			return &r
		}
		e, ok := obj.(mo.Entity)
		if !ok || e.Entity().Parent == nil {
			return nil
		}
		ref = *e.Entity().Parent
	}
	return nil
}

func computeResourceHosts(cr types.ManagedObjectReference) []types.ManagedObjectReference {
	switch c := moOf(simulator.Map.Get(cr)).(type) {
	case *mo.ClusterComputeResource:
		return append([]types.ManagedObjectReference(nil), c.Host...)
	case *mo.ComputeResource:
		return append([]types.ManagedObjectReference(nil), c.Host...)
	}
	return nil
}

func computeResourcePool(cr types.ManagedObjectReference) *types.ManagedObjectReference {
	switch c := moOf(simulator.Map.Get(cr)).(type) {
	case *mo.ClusterComputeResource:
		return c.ResourcePool
	case *mo.ComputeResource:
		return c.ResourcePool
	}
	return nil
}

// poolVMField returns the "vm" slice of a ResourcePool or VirtualApp.
func poolVMField(obj mo.Reference) *[]types.ManagedObjectReference {
	switch p := moOf(obj).(type) {
	case *mo.ResourcePool:
		return &p.Vm
	case *mo.VirtualApp:
		return &p.Vm
	}
	return nil
}

func without(list []types.ManagedObjectReference, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	out := make([]types.ManagedObjectReference, 0, len(list))
	for _, r := range list {
		if r != ref {
			out = append(out, r)
		}
	}
	return out
}

func with(list []types.ManagedObjectReference, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	out := append(make([]types.ManagedObjectReference, 0, len(list)+1), list...)
	for _, r := range list {
		if r == ref {
			return out
		}
	}
	return append(out, ref)
}

// allVMs returns every registered VM wrapper.
func allVMs() []*VM {
	var out []*VM
	for _, e := range simulator.Map.All("VirtualMachine") {
		if vm, ok := e.(*VM); ok {
			out = append(out, vm)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func findVMByName(name string) *VM {
	for _, vm := range allVMs() {
		if vm.Name == name {
			return vm
		}
	}
	return nil
}

func findVMByVmx(vmx string) *VM {
	for _, vm := range allVMs() {
		if vm.Config != nil && vm.Config.Files.VmPathName == vmx {
			return vm
		}
	}
	return nil
}

func findHostByName(name string) (types.ManagedObjectReference, bool) {
	for _, e := range simulator.Map.All("HostSystem") {
		if e.Entity().Name == name {
			return e.Reference(), true
		}
	}
	return types.ManagedObjectReference{}, false
}

// withVM runs f with the VM's simulator lock held. It returns false if the
// moref no longer refers to a (wrapped) VM.
func withVM(ref types.ManagedObjectReference, f func(vm *VM)) bool {
	vm, ok := simulator.Map.Get(ref).(*VM)
	if !ok {
		return false
	}
	simulator.Map.WithLock(vm, func() { f(vm) })
	return true
}

// internalContext builds a simulator.Context for work done outside a SOAP call.
func internalContext() *simulator.Context {
	return &simulator.Context{
		Context: context.Background(),
		Session: &simulator.Session{
			UserSession: types.UserSession{Key: "vcsim-ext-internal", UserName: "vcsim-ext"},
			Registry:    simulator.NewRegistry(),
		},
		Map: simulator.Map,
	}
}

// ---- tasks ---------------------------------------------------------------

// newTask creates a vim Task in state "running" that we complete ourselves
// (vcsim's Task.Run is synchronous; real vCenter tasks are not).
func newTask(ctx *simulator.Context, entity mo.Reference, entityName, id, name string) *simulator.Task {
	t := simulator.CreateTask(entity, id, nil)
	simulator.Map.WithLock(t, func() {
		t.Info.Name = name
		t.Info.DescriptionId = entity.Reference().Type + "." + id
		t.Info.EntityName = entityName
		if ctx != nil && ctx.Session != nil && ctx.Session.UserName != "" {
			t.Info.Reason = &types.TaskReasonUser{UserName: ctx.Session.UserName}
		}
		simulator.Map.Update(t, []types.PropertyChange{
			{Name: "info.startTime", Val: time.Now()},
			{Name: "info.progress", Val: int32(0)},
			{Name: "info.state", Val: types.TaskInfoStateRunning},
		})
	})
	if vm, ok := entity.(*VM); ok {
		noteRecentTask(vm, t.Self)
	}
	return t
}

// recentTasksKept is how many tasks a VM's recentTask lists (real vCenter
// keeps finished ones for some minutes; clients filter by info.state).
const recentTasksKept = 10

// noteRecentTask lists a new task in the VM's recentTask, as ManagedEntity
// does (caller holds the VM lock: every VM task starts inside its method).
func noteRecentTask(vm *VM, task types.ManagedObjectReference) {
	recent := append(append([]types.ManagedObjectReference(nil), vm.RecentTask...), task)
	if len(recent) > recentTasksKept {
		recent = recent[len(recent)-recentTasksKept:]
	}
	simulator.Map.Update(vm, []types.PropertyChange{{Name: "recentTask", Val: recent}})
}

func finishTask(t *simulator.Task, result types.AnyType, fault types.BaseMethodFault, msg string) {
	changes := []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
	}
	if fault != nil {
		if msg == "" {
			msg = fmt.Sprintf("%T", fault)
		}
		changes = append(changes,
			types.PropertyChange{Name: "info.error", Val: &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}},
			types.PropertyChange{Name: "info.state", Val: types.TaskInfoStateError},
		)
	} else {
		changes = append(changes,
			types.PropertyChange{Name: "info.progress", Val: int32(100)},
			types.PropertyChange{Name: "info.result", Val: result},
			types.PropertyChange{Name: "info.state", Val: types.TaskInfoStateSuccess},
		)
	}
	simulator.Map.WithLock(t, func() { simulator.Map.Update(t, changes) })
	log.Printf("task %s (%s on %s) -> %s %s", t.Self.Value, t.Info.Name, t.Info.EntityName, stateOf(fault), msg)
}

func stateOf(f types.BaseMethodFault) string {
	if f == nil {
		return "success"
	}
	return fmt.Sprintf("error %T", f)
}
