package main

// Authz wraps vcsim's AuthorizationManager so that HasPrivilegeOnEntities
// answers from a privilege set the tests control: vcsim 0.24 grants every
// privilege to everyone. The control surface (POST /privileges) takes
// privileges away from the simulator's user, everywhere or on given
// entities; DELETE /privileges gives them back.
//
// As on a real server, the sessionId must be a live session's key (the
// caller's own here): anything else faults InvalidArgument(sessionId).

import (
	"log"
	"net/http"
	"sort"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type Authz struct {
	simulator.AuthorizationManager
}

// denials: privilege id -> entity moref values it is denied on ("" = all).
var denials = struct {
	sync.Mutex
	m     map[string]map[string]bool
	calls int
}{m: map[string]map[string]bool{}}

// installAuthz replaces the registry's AuthorizationManager with the
// wrapper, keeping its state (roles, permissions).
func installAuthz(ref types.ManagedObjectReference) {
	orig, ok := simulator.Map.Get(ref).(*simulator.AuthorizationManager)
	if !ok {
		log.Printf("authz: no AuthorizationManager at %v; HasPrivilegeOnEntities stays vcsim's", ref)
		return
	}
	simulator.Map.Put(&Authz{AuthorizationManager: *orig})
}

func denied(priv, entity string) bool {
	on := denials.m[priv]
	return on[""] || on[entity]
}

func (a *Authz) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	body := &methods.HasPrivilegeOnEntitiesBody{}
	if ctx.Session == nil || req.SessionId != ctx.Session.Key {
		body.Fault_ = simulator.Fault("A specified parameter was not correct: sessionId", &types.InvalidArgument{InvalidProperty: "sessionId"})
		return body
	}
	denials.Lock()
	defer denials.Unlock()
	denials.calls++
	var out []types.EntityPrivilege
	for _, e := range req.Entity {
		p := types.EntityPrivilege{Entity: e}
		for _, id := range req.PrivId {
			p.PrivAvailability = append(p.PrivAvailability, types.PrivilegeAvailability{
				PrivId:    id,
				IsGranted: !denied(id, e.Value),
			})
		}
		out = append(out, p)
	}
	body.Res = &types.HasPrivilegeOnEntitiesResponse{Returnval: out}
	return body
}

// routePrivileges serves /privileges:
//
//	GET                                     {"denied": {priv: [entities]}, "calls": N}
//	POST {"deny": [priv...], "entities": [moref value...]}   (no entities: everywhere)
//	DELETE                                  every privilege granted again
func routePrivileges(r *http.Request) (interface{}, error) {
	switch r.Method {
	case http.MethodPost:
		var req struct {
			Deny     []string `json:"deny"`
			Entities []string `json:"entities"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if len(req.Deny) == 0 {
			return nil, errf(http.StatusBadRequest, "deny: name at least one privilege id")
		}
		on := req.Entities
		if len(on) == 0 {
			on = []string{""}
		}
		denials.Lock()
		for _, p := range req.Deny {
			if denials.m[p] == nil {
				denials.m[p] = map[string]bool{}
			}
			for _, e := range on {
				denials.m[p][e] = true
			}
		}
		denials.Unlock()
		log.Printf("privileges denied: %v on %v", req.Deny, on)
	case http.MethodDelete:
		denials.Lock()
		denials.m = map[string]map[string]bool{}
		denials.Unlock()
		log.Printf("privileges: all granted again")
	case http.MethodGet:
	default:
		return nil, errf(http.StatusMethodNotAllowed, "use GET, POST or DELETE")
	}
	denials.Lock()
	defer denials.Unlock()
	view := map[string][]string{}
	for p, on := range denials.m {
		for e := range on {
			if e == "" {
				e = "*"
			}
			view[p] = append(view[p], e)
		}
		sort.Strings(view[p])
	}
	return map[string]interface{}{"denied": view, "calls": denials.calls}, nil
}
