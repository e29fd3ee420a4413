package main

// ShutdownHost_Task and RebootHost_Task, which vcsim 0.24 does not implement
// (HostSystem is not wrapped like VM: vcsim asserts *simulator.HostSystem in
// many places, so these are answered in front of vcsim, as RegisterVM_Task's
// checks are). As vSphere: a host that is not connected fails the task with
// HostNotConnected; without force a host not in maintenance mode fails it with
// InvalidState. Then the host drops out of the inventory's reach: shutdown
// leaves it notResponding with powerState poweredOff; reboot brings it back
// connected after rebootDelay. Also POST /host/{host}/maintenance.

import (
	"log"
	"net/http"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// How long a rebooting host stays unreachable.
const rebootDelay = time.Second

// hostPower answers ShutdownHost_Task and RebootHost_Task; false leaves the
// request to vcsim (unknown host: its ManagedObjectNotFound).
func (x *Ext) hostPower(w http.ResponseWriter, method string, body []byte) bool {
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return false
	}
	var this types.ManagedObjectReference
	var force bool
	switch req := m.Body.(type) {
	case *types.ShutdownHost_Task:
		this, force = req.This, req.Force
	case *types.RebootHost_Task:
		this, force = req.This, req.Force
	default:
		return false
	}
	obj, h := hostMO(this)
	if h == nil {
		return false
	}
	reboot := method == "RebootHost_Task"
	id := "shutdown"
	if reboot {
		id = "reboot"
	}
	var connected, maintenance bool
	var name string
	simulator.Map.WithLock(obj, func() {
		connected = h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected
		maintenance = h.Runtime.InMaintenanceMode
		name = h.Name
	})
	task := newTask(nil, obj, name, id, method)
	go func() {
		time.Sleep(x.getTaskDelay())
		switch {
		case !connected:
			finishTask(task, nil, &types.HostNotConnected{},
				"Unable to communicate with the remote host, since it is disconnected.")
			return
		case !maintenance && !force:
			finishTask(task, nil, &types.InvalidState{}, "The operation is not allowed in the current state.")
			return
		}
		finishTask(task, nil, nil, "")
		x.setHostPower(this, types.HostSystemPowerStatePoweredOff)
		x.setHostConnection(this, types.HostSystemConnectionStateNotResponding, true)
		log.Printf("host %s %s (force=%v, maintenance=%v)", name, id, force, maintenance)
		if reboot {
			time.Sleep(rebootDelay)
			x.setHostPower(this, types.HostSystemPowerStatePoweredOn)
			x.setHostConnection(this, types.HostSystemConnectionStateConnected, false)
			log.Printf("host %s is back after its reboot", name)
		}
	}()
	writeTaskResponse(w, method, task.Self)
	return true
}

func (x *Ext) setHostPower(ref types.ManagedObjectReference, state types.HostSystemPowerState) {
	obj, h := hostMO(ref)
	if h == nil {
		return
	}
	simulator.Map.WithLock(obj, func() {
		simulator.Map.Update(obj, []types.PropertyChange{
			{Name: "runtime.powerState", Val: state},
			{Name: "summary.runtime.powerState", Val: state},
		})
	})
}

// setMaintenance is POST /host/{host}/maintenance {"enabled": true|false}.
func (x *Ext) setMaintenance(r *http.Request, ref types.ManagedObjectReference) error {
	var req struct {
		Enabled bool `json:"enabled"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	obj, h := hostMO(ref)
	if h == nil {
		return errf(http.StatusNotFound, "unknown host")
	}
	simulator.Map.WithLock(obj, func() {
		simulator.Map.Update(obj, []types.PropertyChange{
			{Name: "runtime.inMaintenanceMode", Val: req.Enabled},
			{Name: "summary.runtime.inMaintenanceMode", Val: req.Enabled},
		})
	})
	log.Printf("host %s maintenance mode -> %v", h.Name, req.Enabled)
	return nil
}
