package main

// --vms N: extra powered-off VMs for benchmarks (benches/side_by_side.rs),
// created in-process at start-up.

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// benchVMName is the name of the i-th extra VM (1-based): bench-vm-00001, ...
func benchVMName(i int) string { return fmt.Sprintf("bench-vm-%05d", i) }

// addBenchVMs creates n powered-off VMs named bench-vm-NNNNN (numbering
// continues after the ones that exist), spread round-robin over the hosts
// of the cluster (vcenter mode: DC0_C0_H0..H2, pool Resources of DC0_C0;
// esx mode: the one host). Like the initial VMs, their files exist in the
// datastore (vcsim writes the .vmx), their BIOS uuid derives from the vmx
// path, and their guest is down (Tools not running, heartbeat gray).
func (x *Ext) addBenchVMs(ctx context.Context, c *vim25.Client, n int) error {
	if n <= 0 {
		return nil
	}
	started := time.Now()
	// The model's datacenter (Map.Any could return a host endpoint's own).
	dc := x.realDC
	if dc == nil {
		return fmt.Errorf("no datacenter")
	}
	var hosts []types.ManagedObjectReference
	if x.mode == "vcenter" {
		for _, name := range []string{"DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"} {
			h, ok := findHostByName(name)
			if !ok {
				return fmt.Errorf("inventory: %s missing", name)
			}
			hosts = append(hosts, h)
		}
	} else {
		h, ok := findHostByName("localhost.localdomain")
		if !ok {
			return fmt.Errorf("inventory: ESX host missing")
		}
		hosts = append(hosts, h)
	}
	pool, err := rootPoolOf(hosts[0])
	if err != nil {
		return err
	}

	first := 1
	for vmNameExists(benchVMName(first)) {
		first++
	}
	created := make([]types.ManagedObjectReference, 0, n)
	for i := 0; i < n; i++ {
		name := benchVMName(first + i)
		host := hosts[i%len(hosts)]
		req := types.CreateVM_Task{
			This: dc.VmFolder,
			Config: types.VirtualMachineConfigSpec{
				Name:     name,
				GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherGuest64),
				NumCPUs:  1,
				MemoryMB: 64,
				Files:    &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
			},
			Pool: pool,
			Host: &host,
		}
		res, err := methods.CreateVM_Task(ctx, c, &req)
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		task, ok := simulator.Map.Get(res.Returnval).(*simulator.Task)
		if !ok {
			return fmt.Errorf("creating %s: no task", name)
		}
		// vcsim runs CreateVM_Task to the end before it answers.
		if task.Info.State != types.TaskInfoStateSuccess {
			return fmt.Errorf("creating %s: task %s: %v", name, task.Info.State, task.Info.Error)
		}
		ref, ok := task.Info.Result.(types.ManagedObjectReference)
		if !ok {
			return fmt.Errorf("creating %s: task without result", name)
		}
		created = append(created, ref)
		// vcsim keeps every finished task; 5,000 of them would only cost memory.
		simulator.Map.Remove(task.Self)
	}
	x.ensureWrapped(true)
	for _, ref := range created {
		withVM(ref, func(vm *VM) { simulator.Map.Update(vm, initialGuestChanges(false)) })
	}
	log.Printf("added %d powered-off VMs %s..%s in %s", n, benchVMName(first), benchVMName(first+n-1),
		time.Since(started).Round(time.Millisecond))
	return nil
}

// vmNameExists reports whether a VM of this name exists, without sorting
// the whole inventory as allVMs does.
func vmNameExists(name string) bool {
	for _, e := range simulator.Map.All("VirtualMachine") {
		if e.Entity().Name == name {
			return true
		}
	}
	return false
}
