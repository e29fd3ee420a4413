package main

// Plain-HTTP JSON control surface (see README.md for the API).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errf(code int, format string, args ...interface{}) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	data, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		data, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	data = append(data, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// decodeBody decodes an optional JSON body, rejecting unknown fields.
func decodeBody(r *http.Request, v interface{}) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errf(http.StatusBadRequest, "reading body: %s", err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "bad JSON body: %s", err)
	}
	return nil
}

// ---- views ---------------------------------------------------------------------

type questionView struct {
	ID        string       `json:"id"`
	Text      string       `json:"text"`
	MessageID string       `json:"message_id"`
	Choices   []choiceSpec `json:"choices"`
	Default   int32        `json:"default"`
}

type lockView struct {
	Held        bool   `json:"held"`
	ExpiresInMs *int64 `json:"expires_in_ms"`
}

type hbView struct {
	Status  string `json:"status"`
	DelayMs int64  `json:"delay_ms"`
}

type settingsView struct {
	ToolsRunning          bool   `json:"tools_running"`
	IgnoreShutdown        bool   `json:"ignore_shutdown"`
	ShutdownDelayMs       int64  `json:"shutdown_delay_ms"`
	HeartbeatAfterPowerOn hbView `json:"heartbeat_after_poweron"`
}

type vmView struct {
	Registered         bool          `json:"registered"`
	Name               string        `json:"name"`
	Moref              *string       `json:"moref"`
	Vmx                string        `json:"vmx"`
	UUID               string        `json:"uuid"`
	InstanceUUID       string        `json:"instance_uuid"`
	PowerState         *string       `json:"power_state"`
	Host               *string       `json:"host"`
	HostMoref          *string       `json:"host_moref"`
	PoolMoref          *string       `json:"pool_moref"`
	ConnectionState    *string       `json:"connection_state"`
	Heartbeat          *string       `json:"heartbeat"`
	ToolsRunningStatus *string       `json:"tools_running_status"`
	Question           *questionView `json:"question"`
	ArmedQuestion      *questionSpec `json:"armed_question"`
	Lock               *lockView     `json:"lock"`
	Settings           settingsView  `json:"settings"`
	LastHost           *string       `json:"last_host,omitempty"`
}

type hostView struct {
	Name            string   `json:"name"`
	Moref           string   `json:"moref"`
	ConnectionState string   `json:"connection_state"`
	ComputeResource string   `json:"compute_resource"`
	VMs             []string `json:"vms"`
}

func sp(s string) *string { return &s }

func (x *Ext) commonView(v *vmView) {
	x.mu.Lock()
	s := *x.settingsLocked(v.Vmx)
	if s.question != nil {
		q := *s.question
		v.ArmedQuestion = &q
	}
	x.mu.Unlock()
	v.Settings = settingsView{
		ToolsRunning:          s.toolsRunning,
		IgnoreShutdown:        s.ignoreShutdown,
		ShutdownDelayMs:       s.shutdownDelay.Milliseconds(),
		HeartbeatAfterPowerOn: hbView{Status: s.hbStatus, DelayMs: s.hbDelay.Milliseconds()},
	}
	if held, until := x.lockHeld(v.Vmx); held {
		lv := &lockView{Held: true}
		if !until.IsZero() {
			ms := time.Until(until).Milliseconds()
			if ms < 0 {
				ms = 0
			}
			lv.ExpiresInMs = &ms
		}
		v.Lock = lv
	}
}

// viewVM renders a registered VM (taking its lock).
func (x *Ext) viewVM(vm *VM) vmView {
	var v vmView
	simulator.Map.WithLock(vm, func() {
		v = vmView{
			Registered:         true,
			Name:               vm.Name,
			Moref:              sp(vm.Self.Value),
			Vmx:                vm.vmxPath(),
			UUID:               vm.Config.Uuid,
			InstanceUUID:       vm.Config.InstanceUuid,
			PowerState:         sp(string(vm.Runtime.PowerState)),
			ConnectionState:    sp(string(vm.Runtime.ConnectionState)),
			Heartbeat:          sp(string(vm.GuestHeartbeatStatus)),
			ToolsRunningStatus: sp(""),
		}
		if vm.Runtime.Host != nil {
			v.Host = sp(hostName(vm.Runtime.Host))
			v.HostMoref = sp(vm.Runtime.Host.Value)
		}
		if vm.ResourcePool != nil {
			v.PoolMoref = sp(vm.ResourcePool.Value)
		}
		if vm.Guest != nil {
			v.ToolsRunningStatus = sp(vm.Guest.ToolsRunningStatus)
		}
		if q := vm.Runtime.Question; q != nil {
			qv := &questionView{ID: q.Id, Text: q.Text, Default: q.Choice.DefaultIndex, Choices: []choiceSpec{}}
			if len(q.Message) > 0 {
				qv.MessageID = q.Message[0].Id
			}
			for _, c := range q.Choice.ChoiceInfo {
				d := c.GetElementDescription()
				qv.Choices = append(qv.Choices, choiceSpec{Key: d.Key, Label: d.Label, Summary: d.Summary})
			}
			v.Question = qv
		}
	})
	x.commonView(&v)
	return v
}

func (x *Ext) viewUnreg(info unregInfo) vmView {
	v := vmView{
		Registered:   false,
		Name:         info.Name,
		Vmx:          info.Vmx,
		UUID:         info.UUID,
		InstanceUUID: info.InstanceUUID,
		LastHost:     sp(info.LastHost),
	}
	x.commonView(&v)
	return v
}

func viewHost(ref types.ManagedObjectReference) hostView {
	obj, h := hostMO(ref)
	v := hostView{Moref: ref.Value, VMs: []string{}}
	if h == nil {
		return v
	}
	simulator.Map.WithLock(obj, func() {
		v.Name = h.Name
		v.ConnectionState = string(h.Runtime.ConnectionState)
		if h.Parent != nil {
			v.ComputeResource = h.Parent.Value
		}
		for _, r := range h.Vm {
			if vm, ok := simulator.Map.Get(r).(*VM); ok {
				v.VMs = append(v.VMs, vm.Name)
			}
		}
	})
	sort.Strings(v.VMs)
	return v
}

// ---- target resolution ------------------------------------------------------

type target struct {
	vmx  string
	vm   *VM        // registered VM, if any
	info *unregInfo // unregistered VM, if any
}

func (t *target) ref() *types.ManagedObjectReference {
	if t.vm == nil {
		return nil
	}
	r := t.vm.Self
	return &r
}

func (x *Ext) resolveName(name string) (*target, error) {
	if vm := findVMByName(name); vm != nil {
		return &target{vmx: vm.vmxPath(), vm: vm}, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, info := range x.unreg {
		if info.Name == name {
			cp := *info
			return &target{vmx: info.Vmx, info: &cp}, nil
		}
	}
	return nil, errf(http.StatusNotFound, "unknown VM %q", name)
}

// resolveVmx accepts any "[ds] path.vmx"; unknown paths are allowed (for
// arming questions/locks before the VM exists) unless mustExist.
func (x *Ext) resolveVmx(r *http.Request, mustExist bool) (*target, error) {
	vmx := r.URL.Query().Get("vmx")
	if vmx == "" {
		return nil, errf(http.StatusBadRequest, "missing ?vmx=[datastore] path/to.vmx")
	}
	if !strings.HasPrefix(vmx, "[") || !strings.Contains(vmx, "]") {
		return nil, errf(http.StatusBadRequest, "vmx must look like \"[LocalDS_0] dir/name.vmx\", got %q", vmx)
	}
	if vm := findVMByVmx(vmx); vm != nil {
		return &target{vmx: vmx, vm: vm}, nil
	}
	x.mu.Lock()
	info := x.unreg[vmx]
	x.mu.Unlock()
	if info != nil {
		cp := *info
		return &target{vmx: vmx, info: &cp}, nil
	}
	if mustExist {
		return nil, errf(http.StatusNotFound, "no VM with vmx %q", vmx)
	}
	return &target{vmx: vmx}, nil
}

func (x *Ext) view(t *target) interface{} {
	if t.vm != nil {
		if vm, ok := simulator.Map.Get(t.vm.Self).(*VM); ok {
			return x.viewVM(vm)
		}
	}
	x.mu.Lock()
	info := x.unreg[t.vmx]
	x.mu.Unlock()
	if info != nil {
		return x.viewUnreg(*info)
	}
	if vm := findVMByVmx(t.vmx); vm != nil {
		return x.viewVM(vm)
	}
	v := vmView{Vmx: t.vmx}
	x.commonView(&v)
	return v
}

// ---- actions on a VM/vmx -------------------------------------------------------

type questionReq struct {
	Once      *bool        `json:"once"`
	ID        string       `json:"id"`
	Text      string       `json:"text"`
	MessageID *string      `json:"message_id"`
	Choices   []choiceSpec `json:"choices"`
	Default   *int32       `json:"default"`
	CancelKey string       `json:"cancel_key"`
}

func (x *Ext) actionQuestion(r *http.Request, t *target) error {
	if r.Method == http.MethodDelete {
		x.updateSettings(t.vmx, func(s *vmxSettings) { s.question = nil })
		return nil
	}
	var req questionReq
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	var q *questionSpec
	if req.Text == "" && len(req.Choices) == 0 {
		q = defaultQuestion()
		if req.MessageID != nil {
			q.MessageID = *req.MessageID
		}
	} else {
		if req.Text == "" || len(req.Choices) == 0 {
			return errf(http.StatusBadRequest, "a custom question needs both \"text\" and \"choices\"")
		}
		seen := map[string]bool{}
		for _, c := range req.Choices {
			if c.Key == "" || seen[c.Key] {
				return errf(http.StatusBadRequest, "choice keys must be non-empty and unique")
			}
			seen[c.Key] = true
		}
		q = &questionSpec{Text: req.Text, Choices: req.Choices}
		if req.MessageID != nil {
			q.MessageID = *req.MessageID
		}
	}
	q.ID = req.ID
	if req.CancelKey != "" {
		if !choiceKeys(q)[req.CancelKey] {
			return errf(http.StatusBadRequest, "cancel_key %q is not a choice key", req.CancelKey)
		}
		q.CancelKey = req.CancelKey
	}
	if req.Default != nil {
		if *req.Default < 0 || int(*req.Default) >= len(q.Choices) {
			return errf(http.StatusBadRequest, "default %d out of range", *req.Default)
		}
		q.Default = *req.Default
	}
	q.Once = true
	if req.Once != nil {
		q.Once = *req.Once
	}
	x.updateSettings(t.vmx, func(s *vmxSettings) { s.question = q })
	log.Printf("question armed for %s (once=%v)", t.vmx, q.Once)
	return nil
}

func choiceKeys(q *questionSpec) map[string]bool {
	m := map[string]bool{}
	for _, c := range q.Choices {
		m[c.Key] = true
	}
	return m
}

func (x *Ext) actionHeartbeat(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	var req struct {
		Status string `json:"status"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !validHeartbeat(req.Status) {
		return errf(http.StatusBadRequest, "status must be green, yellow, red or gray")
	}
	ref := t.ref()
	if ref == nil {
		return errf(http.StatusConflict, "VM is not registered")
	}
	withVM(*ref, func(vm *VM) {
		simulator.Map.Update(vm, heartbeatChanges(types.ManagedEntityStatus(req.Status)))
	})
	return nil
}

func (x *Ext) actionHeartbeatAfterPowerOn(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	var req struct {
		Status  string `json:"status"`
		DelayMs *int64 `json:"delay_ms"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Status == "" {
		req.Status = defaultHeartbeatStatus
	}
	if req.Status != heartbeatNone && !validHeartbeat(req.Status) {
		return errf(http.StatusBadRequest, "status must be green, yellow, red, gray or none")
	}
	delay := defaultHeartbeatDelay
	if req.DelayMs != nil {
		if *req.DelayMs < 0 {
			return errf(http.StatusBadRequest, "delay_ms must be >= 0")
		}
		delay = time.Duration(*req.DelayMs) * time.Millisecond
	}
	x.updateSettings(t.vmx, func(s *vmxSettings) {
		s.hbStatus = req.Status
		s.hbDelay = delay
	})
	return nil
}

func (x *Ext) actionTools(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	var req struct {
		Running *bool `json:"running"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Running == nil {
		return errf(http.StatusBadRequest, "body must be {\"running\": true|false}")
	}
	running := *req.Running
	var s vmxSettings
	x.updateSettings(t.vmx, func(st *vmxSettings) { st.toolsRunning = running; s = *st })
	if ref := t.ref(); ref != nil {
		withVM(*ref, func(vm *VM) {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				return
			}
			if !running {
				simulator.Map.Update(vm, guestDownChanges())
				return
			}
			status := types.ManagedEntityStatus(s.hbStatus)
			if s.hbStatus == heartbeatNone {
				status = types.ManagedEntityStatusGray
			}
			simulator.Map.Update(vm, guestUpChanges(status))
		})
	}
	return nil
}

func (x *Ext) actionIgnoreShutdown(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	var req struct {
		Ignore          *bool  `json:"ignore"`
		ShutdownDelayMs *int64 `json:"shutdown_delay_ms"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Ignore == nil && req.ShutdownDelayMs == nil {
		return errf(http.StatusBadRequest, "body must be {\"ignore\": true|false, \"shutdown_delay_ms\": N}")
	}
	if req.ShutdownDelayMs != nil && *req.ShutdownDelayMs < 0 {
		return errf(http.StatusBadRequest, "shutdown_delay_ms must be >= 0")
	}
	x.updateSettings(t.vmx, func(s *vmxSettings) {
		if req.Ignore != nil {
			s.ignoreShutdown = *req.Ignore
		}
		if req.ShutdownDelayMs != nil {
			s.shutdownDelay = time.Duration(*req.ShutdownDelayMs) * time.Millisecond
		}
	})
	return nil
}

func (x *Ext) actionGuestShutdown(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	ref := t.ref()
	if ref == nil {
		return errf(http.StatusConflict, "VM is not registered")
	}
	var err error
	withVM(*ref, func(vm *VM) {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			err = errf(http.StatusConflict, "VM is %s", vm.Runtime.PowerState)
			return
		}
		x.applyPowerOff(vm, "guest OS shut down by itself")
	})
	return err
}

// actionSuspend suspends a powered-on VM, as SuspendVM_Task does, so tests can start and stop a suspended VM.
func (x *Ext) actionSuspend(r *http.Request, t *target) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "use POST")
	}
	ref := t.ref()
	if ref == nil {
		return errf(http.StatusConflict, "VM is not registered")
	}
	var err error
	withVM(*ref, func(vm *VM) {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			err = errf(http.StatusConflict, "VM is %s", vm.Runtime.PowerState)
			return
		}
		x.applySuspend(vm, "control surface")
	})
	return err
}

func (x *Ext) actionLock(r *http.Request, t *target) error {
	release := func() {
		x.mu.Lock()
		delete(x.locks, t.vmx)
		x.mu.Unlock()
		log.Printf("lock on %s released", t.vmx)
	}
	switch r.Method {
	case http.MethodDelete:
		release()
		return nil
	case http.MethodPost:
	default:
		return errf(http.StatusMethodNotAllowed, "use POST or DELETE")
	}
	var req struct {
		Held     *bool  `json:"held"`
		ExpireMs *int64 `json:"expire_ms"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Held != nil && !*req.Held {
		release()
		return nil
	}
	var until time.Time
	if req.ExpireMs != nil {
		if *req.ExpireMs <= 0 {
			return errf(http.StatusBadRequest, "expire_ms must be > 0")
		}
		until = time.Now().Add(time.Duration(*req.ExpireMs) * time.Millisecond)
	}
	x.mu.Lock()
	x.locks[t.vmx] = until
	x.mu.Unlock()
	log.Printf("lock on %s held (until %v)", t.vmx, until)
	return nil
}

var vmActions = map[string]func(*Ext, *http.Request, *target) error{
	"question":                (*Ext).actionQuestion,
	"heartbeat":               (*Ext).actionHeartbeat,
	"heartbeat-after-poweron": (*Ext).actionHeartbeatAfterPowerOn,
	"tools":                   (*Ext).actionTools,
	"ignore-shutdown":         (*Ext).actionIgnoreShutdown,
	"guest-shutdown":          (*Ext).actionGuestShutdown,
	"suspend":                 (*Ext).actionSuspend,
	"lock":                    (*Ext).actionLock,
}

// ---- hosts -------------------------------------------------------------------------

func (x *Ext) setHostConnection(ref types.ManagedObjectReference, state types.HostSystemConnectionState) {
	obj, h := hostMO(ref)
	if h == nil {
		return
	}
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(obj, func() {
		simulator.Map.Update(obj, []types.PropertyChange{
			{Name: "runtime.connectionState", Val: state},
			{Name: "summary.runtime.connectionState", Val: state},
		})
		vms = append(vms, h.Vm...)
	})
	for _, r := range vms {
		withVM(r, func(vm *VM) { x.syncConnection(vm) })
	}
	log.Printf("host %s connection state -> %s", h.Name, state)
}

// ---- router ---------------------------------------------------------------------------

func (x *Ext) controlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := x.route(r)
		if err != nil {
			var he *httpError
			code := http.StatusInternalServerError
			if errors.As(err, &he) {
				code = he.code
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue
		}
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
		out = append(out, s)
	}
	return out
}

func (x *Ext) route(r *http.Request) (interface{}, error) {
	parts := splitPath(r.URL.EscapedPath())
	get := r.Method == http.MethodGet
	post := r.Method == http.MethodPost
	if len(parts) == 0 {
		return map[string]string{"service": "vcsim-ext control", "mode": x.mode}, nil
	}
	switch parts[0] {
	case "vms":
		if !get || len(parts) != 1 {
			break
		}
		out := []interface{}{}
		for _, vm := range allVMs() {
			out = append(out, x.viewVM(vm))
		}
		x.mu.Lock()
		var infos []unregInfo
		for _, info := range x.unreg {
			infos = append(infos, *info)
		}
		x.mu.Unlock()
		sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
		for _, info := range infos {
			out = append(out, x.viewUnreg(info))
		}
		return out, nil

	case "hosts":
		if !get || len(parts) != 1 {
			break
		}
		out := []hostView{}
		for _, e := range simulator.Map.All("HostSystem") {
			out = append(out, viewHost(e.Reference()))
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil

	case "host":
		if len(parts) < 2 {
			break
		}
		ref, ok := findHostByName(parts[1])
		if !ok {
			return nil, errf(http.StatusNotFound, "unknown host %q", parts[1])
		}
		if len(parts) == 2 && get {
			return viewHost(ref), nil
		}
		if len(parts) == 3 && parts[2] == "maintenance" && post {
			if err := x.setMaintenance(r, ref); err != nil {
				return nil, err
			}
			return viewHost(ref), nil
		}
		if len(parts) == 3 && parts[2] == "connection" && post {
			var req struct {
				State string `json:"state"`
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			switch types.HostSystemConnectionState(req.State) {
			case types.HostSystemConnectionStateConnected, types.HostSystemConnectionStateDisconnected, types.HostSystemConnectionStateNotResponding:
			default:
				return nil, errf(http.StatusBadRequest, "state must be connected, disconnected or notResponding")
			}
			x.setHostConnection(ref, types.HostSystemConnectionState(req.State))
			return viewHost(ref), nil
		}

	case "vm":
		if len(parts) < 2 {
			break
		}
		t, err := x.resolveName(parts[1])
		if err != nil {
			return nil, err
		}
		if len(parts) == 2 {
			if !get {
				break
			}
			return x.view(t), nil
		}
		if len(parts) == 3 {
			if f, ok := vmActions[parts[2]]; ok {
				if err := f(x, r, t); err != nil {
					return nil, err
				}
				return x.view(t), nil
			}
		}

	case "vmx":
		if len(parts) == 1 {
			if !get {
				break
			}
			t, err := x.resolveVmx(r, true)
			if err != nil {
				return nil, err
			}
			return x.view(t), nil
		}
		if len(parts) == 2 {
			if f, ok := vmActions[parts[1]]; ok {
				t, err := x.resolveVmx(r, parts[1] == "heartbeat" || parts[1] == "guest-shutdown" || parts[1] == "suspend")
				if err != nil {
					return nil, err
				}
				if err := f(x, r, t); err != nil {
					return nil, err
				}
				return x.view(t), nil
			}
		}

	case "lock":
		if len(parts) != 1 {
			break
		}
		t, err := x.resolveVmx(r, false)
		if err != nil {
			return nil, err
		}
		if err := x.actionLock(r, t); err != nil {
			return nil, err
		}
		return x.view(t), nil

	case "locks":
		if !get {
			break
		}
		x.mu.Lock()
		paths := make([]string, 0, len(x.locks))
		for p := range x.locks {
			paths = append(paths, p)
		}
		x.mu.Unlock()
		out := map[string]*lockView{}
		for _, p := range paths {
			if held, until := x.lockHeld(p); held {
				lv := &lockView{Held: true}
				if !until.IsZero() {
					ms := time.Until(until).Milliseconds()
					lv.ExpiresInMs = &ms
				}
				out[p] = lv
			}
		}
		return out, nil

	case "sessions":
		if len(parts) == 1 && get {
			return map[string]int{"live": x.sessions.count()}, nil
		}
		if len(parts) == 2 && parts[1] == "expire" && post {
			return map[string]int{"expired": x.sessions.expireAll()}, nil
		}

	case "stats":
		if len(parts) == 1 && get {
			return x.stats.snapshot(), nil
		}
		if len(parts) == 2 && parts[1] == "reset" && post {
			x.stats.reset()
			return x.stats.snapshot(), nil
		}

	case "settings":
		if len(parts) != 1 {
			break
		}
		if post {
			var req struct {
				TaskDelayMs      *int64 `json:"task_delay_ms"`
				RetrievePageSize *int   `json:"retrieve_page_size"`
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if req.RetrievePageSize != nil {
				if *req.RetrievePageSize < 0 {
					return nil, errf(http.StatusBadRequest, "retrieve_page_size must be >= 0")
				}
				x.mu.Lock()
				x.pageSz = *req.RetrievePageSize
				x.mu.Unlock()
			}
			if req.TaskDelayMs != nil {
				if *req.TaskDelayMs < 0 {
					return nil, errf(http.StatusBadRequest, "task_delay_ms must be >= 0")
				}
				x.mu.Lock()
				x.taskDelay = time.Duration(*req.TaskDelayMs) * time.Millisecond
				x.mu.Unlock()
			}
		} else if !get {
			break
		}
		return map[string]int64{"task_delay_ms": x.getTaskDelay().Milliseconds(), "retrieve_page_size": int64(x.pageSize())}, nil
	}
	return nil, errf(http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path)
}
