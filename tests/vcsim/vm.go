package main

// VM wraps simulator.VirtualMachine. vcsim dispatches SOAP methods by name
// (reflect MethodByName on the registry object), so the methods defined here
// shadow the simulator's own implementation; everything else is promoted.
//
// The simulator.VirtualMachine is embedded BY VALUE: vcsim's PropertyCollector
// digs the vim25/mo struct out of registry objects by following field 0 of
// struct values, which does not work through an embedded pointer.

import (
	"fmt"
	"log"
	"path"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type VM struct {
	simulator.VirtualMachine
}

func (vm *VM) vmxPath() string {
	if vm.Config == nil {
		return ""
	}
	return vm.Config.Files.VmPathName
}

// ---- fault helpers (messages are the English texts vSphere sends) ------

func hostStateFault(host *types.ManagedObjectReference) (types.BaseMethodFault, string) {
	var h *types.ManagedObjectReference
	if host != nil {
		r := *host
		h = &r
	}
	return &types.InvalidHostConnectionState{InvalidHostState: types.InvalidHostState{Host: h}},
		"The operation is not allowed in the current connection state of the host."
}

func powerStateName(s types.VirtualMachinePowerState) string {
	switch s {
	case types.VirtualMachinePowerStatePoweredOn:
		return "Powered on"
	case types.VirtualMachinePowerStatePoweredOff:
		return "Powered off"
	case types.VirtualMachinePowerStateSuspended:
		return "Suspended"
	}
	return string(s)
}

func powerStateFault(requested, existing types.VirtualMachinePowerState) (types.BaseMethodFault, string) {
	return &types.InvalidPowerState{RequestedState: requested, ExistingState: existing},
		fmt.Sprintf("The attempted operation cannot be performed in the current state (%s).", powerStateName(existing))
}

func invalidArgument(prop string) (types.BaseMethodFault, string) {
	return &types.InvalidArgument{InvalidProperty: prop},
		"A specified parameter was not correct: " + prop
}

func notFoundFault(ref types.ManagedObjectReference) (types.BaseMethodFault, string) {
	return &types.ManagedObjectNotFound{Obj: ref},
		"The object has already been deleted or has not been completely created"
}

func toolsUnavailableFault() (types.BaseMethodFault, string) {
	return &types.ToolsUnavailable{},
		"Cannot complete operation because VMware Tools is not running in this virtual machine."
}

// lockFault is what a power-on reports when another host holds the file
// locks: a GenericVmConfigFault whose faultMessage carries msg.fileio.lock.
func (x *Ext) lockFault(vm *VM, viaHost bool) (types.BaseMethodFault, string) {
	var p object.DatastorePath
	p.FromString(vm.vmxPath())
	disk := fmt.Sprintf("/vmfs/volumes/%s/%s/%s.vmdk", p.Datastore, path.Dir(p.Path), vm.Name)
	msgs := []types.LocalizableMessage{
		{Key: "msg.vmx.poweron.failed", Message: "Failed to start the virtual machine."},
		{Key: "msg.moduletable.powerOnFailed", Message: "Module 'Disk' power on failed."},
		{Key: "msg.disk.noBackEnd", Message: fmt.Sprintf("Cannot open the disk '%s' or one of the snapshot disks it depends on.", disk)},
		{Key: "msg.fileio.lock", Message: "Failed to lock the file"},
	}
	f := &types.GenericVmConfigFault{Reason: "Failed to lock the file"}
	f.FaultMessage = msgs
	text := ""
	if x.mode == "vcenter" && !x.esxHosts && !viaHost {
		text = fmt.Sprintf("An error was received from the ESX host while powering on VM %s.\n", vm.Name)
	}
	for i, m := range msgs {
		if i > 0 {
			text += "\n"
		}
		text += m.Message
	}
	return f, text
}

func cancelFault(q *types.VirtualMachineQuestionInfo) (types.BaseMethodFault, string) {
	msgs := []types.LocalizableMessage{
		{Key: "msg.vmx.poweron.failed", Message: "Failed to start the virtual machine."},
	}
	f := &types.GenericVmConfigFault{Reason: "The operation was canceled by the user."}
	f.FaultMessage = msgs
	return f, "Failed to start the virtual machine.\nThe operation was canceled by the user."
}

func soapFault(f types.BaseMethodFault, msg string) *soap.Fault {
	return simulator.Fault(msg, f)
}

// ---- property change sets ------------------------------------------------

func guestDownChanges() []types.PropertyChange {
	gray := types.ManagedEntityStatusGray
	return []types.PropertyChange{
		{Name: "guestHeartbeatStatus", Val: gray},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: gray},
		{Name: "guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)},
		{Name: "guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsNotRunning},
		{Name: "guest.guestState", Val: "notRunning"},
		{Name: "summary.guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)},
		{Name: "summary.guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsNotRunning},
	}
}

func guestUpChanges(status types.ManagedEntityStatus) []types.PropertyChange {
	return []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)},
		{Name: "guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsOk},
		{Name: "guest.guestState", Val: "running"},
		{Name: "summary.guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)},
		{Name: "summary.guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsOk},
		{Name: "guestHeartbeatStatus", Val: status},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: status},
	}
}

func heartbeatChanges(status types.ManagedEntityStatus) []types.PropertyChange {
	return []types.PropertyChange{
		{Name: "guestHeartbeatStatus", Val: status},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: status},
	}
}

func validHeartbeat(s string) bool {
	switch s {
	case "green", "yellow", "red", "gray":
		return true
	}
	return false
}

// ---- state transitions (caller holds the VM lock) ------------------------

// applyPowerOn powers the VM on (optionally placing it on host first) and
// schedules the "guest comes up" heartbeat.
func (x *Ext) applyPowerOn(vm *VM, host *types.ManagedObjectReference) {
	if host != nil && (vm.Runtime.Host == nil || *host != *vm.Runtime.Host) {
		x.moveVM(vm, *host, nil)
	}
	gen := x.bumpGen(vm.Self)
	now := time.Now()
	on := types.VirtualMachinePowerStatePoweredOn
	changes := []types.PropertyChange{
		{Name: "runtime.powerState", Val: on},
		{Name: "summary.runtime.powerState", Val: on},
		{Name: "runtime.bootTime", Val: now},
		{Name: "summary.runtime.bootTime", Val: now},
	}
	changes = append(changes, guestDownChanges()...)
	simulator.Map.Update(vm, changes)
	x.setRunning(vm, true)
	log.Printf("%s (%s) powered on on %s", vm.Name, vm.Self.Value, hostName(vm.Runtime.Host))

	s := x.settingsCopy(vm.vmxPath())
	if !s.toolsRunning || s.hbStatus == heartbeatNone || s.hbStatus == "gray" {
		return
	}
	ref := vm.Self
	status := types.ManagedEntityStatus(s.hbStatus)
	time.AfterFunc(s.hbDelay, func() {
		withVM(ref, func(vm *VM) {
			if x.currentGen(ref) != gen || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				return
			}
			simulator.Map.Update(vm, guestUpChanges(status))
			log.Printf("%s guest heartbeat -> %s", vm.Name, status)
		})
	})
}

func (x *Ext) applyPowerOff(vm *VM, why string) {
	x.bumpGen(vm.Self)
	off := types.VirtualMachinePowerStatePoweredOff
	changes := []types.PropertyChange{
		{Name: "runtime.powerState", Val: off},
		{Name: "summary.runtime.powerState", Val: off},
		{Name: "runtime.bootTime", Val: nil},
		{Name: "summary.runtime.bootTime", Val: nil},
	}
	changes = append(changes, guestDownChanges()...)
	simulator.Map.Update(vm, changes)
	x.setRunning(vm, false)
	log.Printf("%s (%s) powered off (%s)", vm.Name, vm.Self.Value, why)
}

// applySuspend suspends the VM: the guest stops where it is (no heartbeat, no Tools) until a power-on resumes it.
func (x *Ext) applySuspend(vm *VM, why string) {
	x.bumpGen(vm.Self)
	st := types.VirtualMachinePowerStateSuspended
	changes := []types.PropertyChange{
		{Name: "runtime.powerState", Val: st},
		{Name: "summary.runtime.powerState", Val: st},
	}
	simulator.Map.Update(vm, append(changes, guestDownChanges()...))
	x.setRunning(vm, false)
	log.Printf("%s (%s) suspended (%s)", vm.Name, vm.Self.Value, why)
}

// moveVM re-homes the VM on host (and pool if non-nil), keeping the host and
// pool "vm" lists and the VM's runtime.host / resourcePool consistent.
func (x *Ext) moveVM(vm *VM, host types.ManagedObjectReference, pool *types.ManagedObjectReference) {
	if vm.Runtime.Host == nil || *vm.Runtime.Host != host {
		if vm.Runtime.Host != nil {
			if hobj, h := hostMO(*vm.Runtime.Host); h != nil {
				simulator.Map.WithLock(hobj, func() {
					simulator.Map.Update(hobj, []types.PropertyChange{{Name: "vm", Val: without(h.Vm, vm.Self)}})
				})
			}
		}
		if hobj, h := hostMO(host); h != nil {
			simulator.Map.WithLock(hobj, func() {
				simulator.Map.Update(hobj, []types.PropertyChange{{Name: "vm", Val: with(h.Vm, vm.Self)}})
			})
		}
	}
	h := host
	changes := []types.PropertyChange{
		{Name: "runtime.host", Val: &h},
		{Name: "summary.runtime.host", Val: &h},
	}
	if pool != nil && (vm.ResourcePool == nil || *vm.ResourcePool != *pool) {
		if vm.ResourcePool != nil {
			if pobj := simulator.Map.Get(*vm.ResourcePool); pobj != nil {
				if f := poolVMField(pobj); f != nil {
					simulator.Map.WithLock(pobj, func() {
						simulator.Map.Update(pobj, []types.PropertyChange{{Name: "vm", Val: without(*f, vm.Self)}})
					})
				}
			}
		}
		if pobj := simulator.Map.Get(*pool); pobj != nil {
			if f := poolVMField(pobj); f != nil {
				simulator.Map.WithLock(pobj, func() {
					simulator.Map.Update(pobj, []types.PropertyChange{{Name: "vm", Val: with(*f, vm.Self)}})
				})
			}
		}
		p := *pool
		changes = append(changes, types.PropertyChange{Name: "resourcePool", Val: &p})
	}
	conn := types.VirtualMachineConnectionStateConnected
	if !hostConnected(&h) {
		conn = types.VirtualMachineConnectionStateDisconnected
	}
	changes = append(changes,
		types.PropertyChange{Name: "runtime.connectionState", Val: conn},
		types.PropertyChange{Name: "summary.runtime.connectionState", Val: conn},
	)
	simulator.Map.Update(vm, changes)
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		x.setRunning(vm, true) // the files are now locked from the new host
	}
	x.refreshHosts() // the hosts' own vm folders
	log.Printf("%s (%s) now on host %s", vm.Name, vm.Self.Value, hostName(&h))
}

// syncConnection makes the VM's connectionState follow its host's.
func (x *Ext) syncConnection(vm *VM) {
	conn := types.VirtualMachineConnectionStateConnected
	if !hostConnected(vm.Runtime.Host) {
		conn = types.VirtualMachineConnectionStateDisconnected
	}
	if vm.Runtime.ConnectionState == conn {
		return
	}
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "runtime.connectionState", Val: conn},
		{Name: "summary.runtime.connectionState", Val: conn},
	})
}

// ---- power on (with questions and vmx locks) -----------------------------

func (x *Ext) checkPowerOn(vm *VM, host *types.ManagedObjectReference, via *hostEP) (types.BaseMethodFault, string) {
	// Through the host's own endpoint the host is up whatever vCenter thinks.
	if via == nil && !hostConnected(vm.Runtime.Host) {
		return hostStateFault(vm.Runtime.Host)
	}
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		return powerStateFault(types.VirtualMachinePowerStatePoweredOn, vm.Runtime.PowerState)
	}
	if host != nil && *host != *vm.Runtime.Host {
		if _, h := hostMO(*host); h == nil {
			return notFoundFault(*host)
		}
		a, b := computeResourceOf(*host), computeResourceOf(*vm.Runtime.Host)
		if a == nil || b == nil || *a != *b {
			return invalidArgument("host")
		}
		if !hostConnected(host) {
			return hostStateFault(host)
		}
	}
	if held, _ := x.lockHeld(vm.vmxPath()); held || x.lockedByOther(vm) {
		return x.lockFault(vm, via != nil)
	}
	return nil, ""
}

// raiseQuestion publishes runtime.question (caller holds the VM lock).
func (x *Ext) raiseQuestion(vm *VM, q *questionSpec) *pendingQuestion {
	id := q.ID
	if id == "" {
		id = x.nextQuestionID()
	}
	var choices []types.BaseElementDescription
	keys := map[string]bool{}
	for _, c := range q.Choices {
		choices = append(choices, &types.ElementDescription{
			Description: types.Description{Label: c.Label, Summary: c.Summary},
			Key:         c.Key,
		})
		keys[c.Key] = true
	}
	info := &types.VirtualMachineQuestionInfo{
		Id:     id,
		Text:   q.Text,
		Choice: types.ChoiceOption{ChoiceInfo: choices, DefaultIndex: q.Default},
	}
	if q.MessageID != "" {
		info.Message = []types.VirtualMachineMessage{{Id: q.MessageID, Text: q.Text}}
	}
	p := &pendingQuestion{info: info, cancelKey: q.cancelKey(), keys: keys, ch: make(chan answer, 1)}
	x.mu.Lock()
	x.pending[vm.Self] = p
	x.mu.Unlock()
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "runtime.question", Val: info},
		{Name: "summary.runtime.question", Val: info},
	})
	log.Printf("%s (%s) question %s raised (%s)", vm.Name, vm.Self.Value, id, q.MessageID)
	return p
}

func clearQuestion(vm *VM) {
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "runtime.question", Val: nil},
		{Name: "summary.runtime.question", Val: nil},
	})
}

// cancelPending fails a power-on that waits for an answer.
func (x *Ext) cancelPending(ref types.ManagedObjectReference, f types.BaseMethodFault, msg string) {
	x.mu.Lock()
	p := x.pending[ref]
	delete(x.pending, ref)
	x.mu.Unlock()
	if p != nil {
		p.ch <- answer{fault: f, msg: msg}
	}
}

func (x *Ext) startPowerOn(ref types.ManagedObjectReference, task *simulator.Task, host *types.ManagedObjectReference, via *hostEP) {
	x.mu.Lock()
	if busy, ok := x.powerBusy[ref]; ok {
		x.mu.Unlock()
		go func() {
			time.Sleep(x.getTaskDelay())
			finishTask(task, nil, &types.TaskInProgress{Task: busy}, "Another task is already in progress.")
		}()
		return
	}
	x.powerBusy[ref] = task.Self
	x.mu.Unlock()
	go x.runPowerOn(ref, task, host, via)
}

func (x *Ext) runPowerOn(ref types.ManagedObjectReference, task *simulator.Task, host *types.ManagedObjectReference, via *hostEP) {
	defer func() {
		x.mu.Lock()
		if x.powerBusy[ref] == task.Self {
			delete(x.powerBusy, ref)
		}
		x.mu.Unlock()
	}()
	time.Sleep(x.getTaskDelay())

	var fault types.BaseMethodFault
	var msg string
	var pend *pendingQuestion
	ok := withVM(ref, func(vm *VM) {
		if fault, msg = x.checkPowerOn(vm, host, via); fault != nil {
			return
		}
		if q := x.takeQuestion(vm.vmxPath()); q != nil {
			pend = x.raiseQuestion(vm, q)
			return
		}
		x.applyPowerOn(vm, host)
	})
	if !ok {
		fault, msg = notFoundFault(ref)
	}
	if fault != nil || pend == nil {
		finishTask(task, nil, fault, msg)
		return
	}

	a := <-pend.ch
	switch {
	case a.fault != nil:
		finishTask(task, nil, a.fault, a.msg)
		return
	case a.cancel:
		f, m := cancelFault(pend.info)
		finishTask(task, nil, f, m)
		return
	}
	time.Sleep(x.getTaskDelay())
	ok = withVM(ref, func(vm *VM) {
		if fault, msg = x.checkPowerOn(vm, host, via); fault != nil {
			return
		}
		x.applyPowerOn(vm, host)
	})
	if !ok {
		fault, msg = notFoundFault(ref)
	}
	finishTask(task, nil, fault, msg)
}

// ---- SOAP method overrides ----------------------------------------------

func (vm *VM) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	if vm.Config.Template {
		return &methods.PowerOnVM_TaskBody{Fault_: simulator.Fault("cannot powerOn a template", &types.InvalidState{})}
	}
	via := X.sessionHost(ctx)
	if via != nil && req.Host != nil && *req.Host != via.ref {
		return &methods.PowerOnVM_TaskBody{Fault_: soapFault(invalidArgument("host"))}
	}
	task := newTask(ctx, vm, vm.Name, "powerOn", "PowerOnVM_Task")
	X.startPowerOn(vm.Self, task, req.Host, via)
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: task.Self}}
}

// runAsync completes task after the task delay with f's outcome (run under the VM lock).
func (x *Ext) runAsync(ref types.ManagedObjectReference, task *simulator.Task, f func(vm *VM) (types.AnyType, types.BaseMethodFault, string)) {
	go func() {
		time.Sleep(x.getTaskDelay())
		var res types.AnyType
		var fault types.BaseMethodFault
		var msg string
		if !withVM(ref, func(vm *VM) { res, fault, msg = f(vm) }) {
			fault, msg = notFoundFault(ref)
		}
		finishTask(task, res, fault, msg)
	}()
}

func (vm *VM) PowerOffVMTask(ctx *simulator.Context, req *types.PowerOffVM_Task) soap.HasFault {
	task := newTask(ctx, vm, vm.Name, "powerOff", "PowerOffVM_Task")
	viaHost := X.sessionHost(ctx) != nil
	X.runAsync(vm.Self, task, func(vm *VM) (types.AnyType, types.BaseMethodFault, string) {
		if !viaHost && !hostConnected(vm.Runtime.Host) {
			f, m := hostStateFault(vm.Runtime.Host)
			return nil, f, m
		}
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
			f, m := powerStateFault(types.VirtualMachinePowerStatePoweredOff, vm.Runtime.PowerState)
			return nil, f, m
		}
		X.applyPowerOff(vm, "PowerOffVM_Task")
		return nil, nil, ""
	})
	return &methods.PowerOffVM_TaskBody{Res: &types.PowerOffVM_TaskResponse{Returnval: task.Self}}
}

func (vm *VM) ResetVMTask(ctx *simulator.Context, req *types.ResetVM_Task) soap.HasFault {
	task := newTask(ctx, vm, vm.Name, "reset", "ResetVM_Task")
	viaHost := X.sessionHost(ctx) != nil
	X.runAsync(vm.Self, task, func(vm *VM) (types.AnyType, types.BaseMethodFault, string) {
		if !viaHost && !hostConnected(vm.Runtime.Host) {
			f, m := hostStateFault(vm.Runtime.Host)
			return nil, f, m
		}
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			f, m := powerStateFault(types.VirtualMachinePowerStatePoweredOn, vm.Runtime.PowerState)
			return nil, f, m
		}
		X.applyPowerOff(vm, "ResetVM_Task")
		X.applyPowerOn(vm, nil)
		return nil, nil, ""
	})
	return &methods.ResetVM_TaskBody{Res: &types.ResetVM_TaskResponse{Returnval: task.Self}}
}

func (vm *VM) SuspendVMTask(ctx *simulator.Context, req *types.SuspendVM_Task) soap.HasFault {
	task := newTask(ctx, vm, vm.Name, "suspend", "SuspendVM_Task")
	viaHost := X.sessionHost(ctx) != nil
	X.runAsync(vm.Self, task, func(vm *VM) (types.AnyType, types.BaseMethodFault, string) {
		if !viaHost && !hostConnected(vm.Runtime.Host) {
			f, m := hostStateFault(vm.Runtime.Host)
			return nil, f, m
		}
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			f, m := powerStateFault(types.VirtualMachinePowerStateSuspended, vm.Runtime.PowerState)
			return nil, f, m
		}
		X.applySuspend(vm, "SuspendVM_Task")
		return nil, nil, ""
	})
	return &methods.SuspendVM_TaskBody{Res: &types.SuspendVM_TaskResponse{Returnval: task.Self}}
}

func (vm *VM) ShutdownGuest(ctx *simulator.Context, req *types.ShutdownGuest) soap.HasFault {
	body := &methods.ShutdownGuestBody{}
	if X.sessionHost(ctx) == nil && !hostConnected(vm.Runtime.Host) {
		body.Fault_ = soapFault(hostStateFault(vm.Runtime.Host))
		return body
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		body.Fault_ = soapFault(powerStateFault(types.VirtualMachinePowerStatePoweredOn, vm.Runtime.PowerState))
		return body
	}
	if vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
		body.Fault_ = soapFault(toolsUnavailableFault())
		return body
	}
	s := X.settingsCopy(vm.vmxPath())
	body.Res = &types.ShutdownGuestResponse{}
	if s.ignoreShutdown {
		log.Printf("%s: guest ignores ShutdownGuest", vm.Name)
		return body
	}
	ref := vm.Self
	gen := X.currentGen(ref)
	time.AfterFunc(s.shutdownDelay, func() {
		withVM(ref, func(vm *VM) {
			if X.currentGen(ref) != gen || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				return
			}
			X.applyPowerOff(vm, "guest shutdown (ShutdownGuest)")
		})
	})
	return body
}

func (vm *VM) AnswerVM(ctx *simulator.Context, req *types.AnswerVM) soap.HasFault {
	body := &methods.AnswerVMBody{}
	X.mu.Lock()
	p := X.pending[vm.Self]
	if p == nil || p.info.Id != req.QuestionId {
		answered := X.answered[vm.Self][req.QuestionId]
		X.mu.Unlock()
		if answered {
			body.Fault_ = simulator.Fault("Cannot complete operation due to concurrent modification by another operation.", &types.ConcurrentAccess{})
		} else {
			body.Fault_ = soapFault(invalidArgument("questionId"))
		}
		return body
	}
	if !p.keys[req.AnswerChoice] {
		X.mu.Unlock()
		body.Fault_ = soapFault(invalidArgument("answerChoice"))
		return body
	}
	delete(X.pending, vm.Self)
	if X.answered[vm.Self] == nil {
		X.answered[vm.Self] = map[string]bool{}
	}
	X.answered[vm.Self][req.QuestionId] = true
	X.mu.Unlock()

	clearQuestion(vm)
	log.Printf("%s: question %s answered with %q", vm.Name, req.QuestionId, req.AnswerChoice)
	p.ch <- answer{cancel: req.AnswerChoice == p.cancelKey, key: req.AnswerChoice}
	body.Res = &types.AnswerVMResponse{}
	return body
}

func (vm *VM) UnregisterVM(ctx *simulator.Context, req *types.UnregisterVM) soap.HasFault {
	// Through the host's own endpoint the host is up: ESXi refuses to
	// unregister a running VM.
	connected := X.sessionHost(ctx) != nil || hostConnected(vm.Runtime.Host)
	if connected && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		return &methods.UnregisterVMBody{Fault_: soapFault(powerStateFault(types.VirtualMachinePowerStatePoweredOff, vm.Runtime.PowerState))}
	}
	info := &unregInfo{
		Name:         vm.Name,
		Vmx:          vm.vmxPath(),
		UUID:         vm.Config.Uuid,
		InstanceUUID: vm.Config.InstanceUuid,
		LastHost:     hostName(vm.Runtime.Host),
	}
	f, m := notFoundFault(vm.Self)
	X.cancelPending(vm.Self, f, m)

	// vcsim refuses to unregister a poweredOn VM; vCenter allows removing a VM
	// of a disconnected host from the inventory. Bypass the check locally.
	saved := vm.Runtime.PowerState
	vm.Runtime.PowerState = types.VirtualMachinePowerStatePoweredOff
	res := vm.VirtualMachine.UnregisterVM(ctx, req)
	vm.Runtime.PowerState = saved
	if res.Fault() != nil {
		return res
	}
	X.bumpGen(vm.Self)
	X.mu.Lock()
	delete(X.running, vm.Self)
	X.unreg[info.Vmx] = info
	delete(X.answered, vm.Self)
	X.mu.Unlock()
	log.Printf("%s (%s) unregistered (%s)", info.Name, vm.Self.Value, info.Vmx)
	return res
}

// migrate implements RelocateVM_Task / MigrateVM_Task placement (VM lock held).
func (x *Ext) migrate(vm *VM, pool, host *types.ManagedObjectReference) (types.BaseMethodFault, string) {
	if !hostConnected(vm.Runtime.Host) {
		return hostStateFault(vm.Runtime.Host)
	}
	// A VM's tasks are serialized: a power-on still running (say, waiting on a
	// question) refuses a migration, as vCenter does.
	x.mu.Lock()
	busy, ok := x.powerBusy[vm.Self]
	x.mu.Unlock()
	if ok {
		return &types.TaskInProgress{Task: busy}, "Another task is already in progress."
	}
	if pool != nil && simulator.Map.Get(*pool) == nil {
		return notFoundFault(*pool)
	}
	target := *vm.Runtime.Host
	if host != nil {
		if _, h := hostMO(*host); h == nil {
			return notFoundFault(*host)
		}
		target = *host
	} else if pool != nil {
		cr := computeResourceOf(*pool)
		cur := computeResourceOf(*vm.Runtime.Host)
		if cr == nil {
			return invalidArgument("pool")
		}
		if cur == nil || *cr != *cur {
			found := false
			for _, h := range computeResourceHosts(*cr) {
				h := h
				if hostConnected(&h) {
					target, found = h, true
					break
				}
			}
			if !found {
				return invalidArgument("host")
			}
		}
	}
	if !hostConnected(&target) {
		return hostStateFault(&target)
	}
	targetCR := computeResourceOf(target)
	var targetPool *types.ManagedObjectReference
	if pool != nil {
		pcr := computeResourceOf(*pool)
		if pcr == nil || targetCR == nil || *pcr != *targetCR {
			return invalidArgument("pool")
		}
		targetPool = pool
	} else if vm.ResourcePool != nil {
		cur := computeResourceOf(*vm.ResourcePool)
		if targetCR != nil && (cur == nil || *cur != *targetCR) {
			targetPool = computeResourcePool(*targetCR)
		}
	}
	x.moveVM(vm, target, targetPool)
	return nil, ""
}

func (vm *VM) RelocateVMTask(ctx *simulator.Context, req *types.RelocateVM_Task) soap.HasFault {
	task := newTask(ctx, vm, vm.Name, "relocate", "RelocateVM_Task")
	pool, host := req.Spec.Pool, req.Spec.Host
	X.runAsync(vm.Self, task, func(vm *VM) (types.AnyType, types.BaseMethodFault, string) {
		f, m := X.migrate(vm, pool, host)
		return nil, f, m
	})
	return &methods.RelocateVM_TaskBody{Res: &types.RelocateVM_TaskResponse{Returnval: task.Self}}
}

func (vm *VM) MigrateVMTask(ctx *simulator.Context, req *types.MigrateVM_Task) soap.HasFault {
	task := newTask(ctx, vm, vm.Name, "migrate", "MigrateVM_Task")
	pool, host, state := req.Pool, req.Host, req.State
	X.runAsync(vm.Self, task, func(vm *VM) (types.AnyType, types.BaseMethodFault, string) {
		if state != "" && state != vm.Runtime.PowerState {
			f, m := powerStateFault(state, vm.Runtime.PowerState)
			return nil, f, m
		}
		f, m := X.migrate(vm, pool, host)
		return nil, f, m
	})
	return &methods.MigrateVM_TaskBody{Res: &types.MigrateVM_TaskResponse{Returnval: task.Self}}
}

// ---- wrapping new VMs ----------------------------------------------------

// ensureWrapped replaces every plain *simulator.VirtualMachine in the
// registry by a *VM wrapper. New plain VMs appear after RegisterVM_Task,
// CreateVM_Task or CloneVM_Task; the SOAP front handler calls this before it
// sends the response, so clients never see an unwrapped VM.
func (x *Ext) ensureWrapped(startup bool) {
	x.wrapMu.Lock()
	defer x.wrapMu.Unlock()
	for _, e := range simulator.Map.All("VirtualMachine") {
		raw, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		w := &VM{VirtualMachine: *raw}
		// Remove first so ContainerViews do not list the VM twice.
		simulator.Map.Remove(raw.Self)
		simulator.Map.Put(w)
		if startup {
			continue
		}
		x.adopt(w)
	}
}

// adopt finishes a VM that was just registered/created through SOAP: the
// name and uuids a real ESXi would read back from the .vmx, a connected
// host, and a consistent guest state.
func (x *Ext) adopt(w *VM) {
	withVM(w.Self, func(vm *VM) {
		vmx := vm.vmxPath()
		x.mu.Lock()
		info := x.unreg[vmx]
		delete(x.unreg, vmx)
		explicit := x.explicitHost[vmx]
		delete(x.explicitHost, vmx)
		x.mu.Unlock()
		if info == nil {
			// Another entry of the same files (registered on another host):
			// what the .vmx says is the same for both.
			for _, other := range allVMs() {
				if other.Self != vm.Self && other.vmxPath() == vmx && other.Config != nil {
					info = &unregInfo{Name: other.Name, Vmx: vmx, UUID: other.Config.Uuid, InstanceUUID: other.Config.InstanceUuid}
					break
				}
			}
		}

		var changes []types.PropertyChange
		if info != nil {
			var p object.DatastorePath
			p.FromString(vmx)
			if vm.Name == path.Dir(p.Path) && info.Name != "" && info.Name != vm.Name {
				changes = append(changes,
					types.PropertyChange{Name: "name", Val: info.Name},
					types.PropertyChange{Name: "config.name", Val: info.Name},
					types.PropertyChange{Name: "summary.config.name", Val: info.Name},
				)
			}
			if info.UUID != "" {
				changes = append(changes,
					types.PropertyChange{Name: "config.uuid", Val: info.UUID},
					types.PropertyChange{Name: "summary.config.uuid", Val: info.UUID},
				)
			}
			if info.InstanceUUID != "" {
				changes = append(changes,
					types.PropertyChange{Name: "config.instanceUuid", Val: info.InstanceUUID},
					types.PropertyChange{Name: "summary.config.instanceUuid", Val: info.InstanceUUID},
				)
			}
		}
		changes = append(changes,
			types.PropertyChange{Name: "guest.toolsVersion", Val: toolsVersionWhenRunning},
			types.PropertyChange{Name: "summary.config.vmPathName", Val: vmx},
		)
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			changes = append(changes, guestDownChanges()...)
		}
		simulator.Map.Update(vm, changes)

		// vcsim picks a random host of the pool when RegisterVM_Task has no
		// host; vCenter would not pick a host that is not connected.
		if !explicit && !hostConnected(vm.Runtime.Host) && vm.Runtime.Host != nil {
			if cr := computeResourceOf(*vm.Runtime.Host); cr != nil {
				for _, h := range computeResourceHosts(*cr) {
					h := h
					if hostConnected(&h) {
						x.moveVM(vm, h, nil)
						break
					}
				}
			}
		}
		x.syncConnection(vm)
		log.Printf("%s (%s) registered from %s on %s", vm.Name, vm.Self.Value, vmx, hostName(vm.Runtime.Host))
	})
}

// setRunning records whether a VM is powered on (for the file locks between
// hosts). Caller holds the VM lock.
func (x *Ext) setRunning(vm *VM, on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if on && vm.Runtime.Host != nil {
		x.running[vm.Self] = runInfo{vmx: vm.vmxPath(), host: *vm.Runtime.Host}
	} else {
		delete(x.running, vm.Self)
	}
}

// lockedByOther reports whether another entry of the same files runs on a
// host that is alive (its VMX holds the file locks).
func (x *Ext) lockedByOther(vm *VM) bool {
	x.mu.Lock()
	if !x.hostLocks {
		x.mu.Unlock()
		return false
	}
	var hosts []types.ManagedObjectReference
	for ref, r := range x.running {
		if ref != vm.Self && r.vmx == vm.vmxPath() {
			hosts = append(hosts, r.host)
		}
	}
	x.mu.Unlock()
	for _, h := range hosts {
		h := h
		if hostConnection(&h) != types.HostSystemConnectionStateNotResponding {
			return true
		}
	}
	return false
}
