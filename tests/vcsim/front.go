package main

// The HTTP handler in front of vcsim's /sdk endpoint:
//   - counts SOAP requests per method (GET /stats on the control port);
//   - tracks SOAP sessions (cookie vmware_soap_session) so the control
//     surface can expire them, and answers NotAuthenticated like vCenter for
//     any call without a live session (vcsim lets RetrieveProperties(Ex)
//     through without a session);
//   - validates RegisterVM_Task's host argument (vcsim does not);
//   - buffers vcsim's response so that VMs created by the call are wrapped
//     (see ensureWrapped) before the client learns their moref.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ---- stats -----------------------------------------------------------------

type stats struct {
	mu          sync.Mutex
	total       int
	byMethod    map[string]int
	connections int // TCP connections accepted on the SOAP port
}

func newStats() *stats { return &stats{byMethod: map[string]int{}} }

func (s *stats) add(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.byMethod[method]++
}

func (s *stats) addConnection() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections++
}

func (s *stats) snapshot() map[string]interface{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for k, v := range s.byMethod {
		m[k] = v
	}
	return map[string]interface{}{"total": s.total, "by_method": m, "connections": s.connections}
}

func (s *stats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total = 0
	s.byMethod = map[string]int{}
	s.connections = 0
}

// ---- sessions --------------------------------------------------------------

type sessionInfo struct {
	at       time.Time
	endpoint string // "vcenter" or the host's name
	user     string
}

type sessionTracker struct {
	mu   sync.Mutex
	live map[string]sessionInfo // session key -> login
}

func newSessionTracker() *sessionTracker { return &sessionTracker{live: map[string]sessionInfo{}} }

// valid reports whether key is a live session of that endpoint (a session
// of another endpoint does not work there, as between vCenter and a host).
func (t *sessionTracker) valid(key, endpoint string) bool {
	if key == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.live[key]
	return ok && s.endpoint == endpoint
}

// endpointOf returns the endpoint a session belongs to ("" if unknown).
func (t *sessionTracker) endpointOf(key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live[key].endpoint
}

func (t *sessionTracker) add(key, endpoint, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live[key] = sessionInfo{at: time.Now(), endpoint: endpoint, user: user}
}

func (t *sessionTracker) remove(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, key)
}

func (t *sessionTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

type sessionView struct {
	Endpoint string `json:"endpoint"`
	User     string `json:"user"`
	AgeMs    int64  `json:"age_ms"`
}

// list describes the live sessions (without their keys), oldest first.
func (t *sessionTracker) list() []sessionView {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []sessionView{}
	for _, s := range t.live {
		out = append(out, sessionView{Endpoint: s.endpoint, User: s.user, AgeMs: time.Since(s.at).Milliseconds()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgeMs > out[j].AgeMs })
	return out
}

// expire terminates the tracked sessions of one endpoint ("" = all) inside
// vcsim too, so that a client logging in again with its stale cookie gets a
// fresh session.
func (t *sessionTracker) expire(endpoint string) int {
	t.mu.Lock()
	keys := []string{}
	for k, s := range t.live {
		if endpoint == "" || s.endpoint == endpoint {
			keys = append(keys, k)
			delete(t.live, k)
		}
	}
	t.mu.Unlock()

	sm := simulator.Map.SessionManager()
	ctx := internalContext()
	for _, k := range keys {
		res := sm.TerminateSession(ctx, &types.TerminateSession{This: sm.Self, SessionId: []string{k}})
		if f := res.Fault(); f != nil {
			log.Printf("TerminateSession %s: %s", k, f.String)
		}
	}
	log.Printf("expired %d session(s) of %q", len(keys), endpoint)
	return len(keys)
}

func (t *sessionTracker) expireAll() int { return t.expire("") }

// methods that work without a session on vCenter/ESXi
var publicMethods = map[string]bool{
	"RetrieveServiceContent":      true,
	"Login":                       true,
	"LoginByToken":                true,
	"LoginExtensionByCertificate": true,
	"LoginExtensionBySubjectName": true,
	"LoginBySSPI":                 true,
	"CloneSession":                true,
}

// methods after which the hosts' own vm folders may have to change
var inventoryMethods = map[string]bool{
	"RegisterVM_Task":     true,
	"UnregisterVM":        true,
	"CreateVM_Task":       true,
	"CloneVM_Task":        true,
	"Destroy_Task":        true,
	"MoveIntoFolder_Task": true,
}

var loginMethods = map[string]bool{
	"Login":                       true,
	"LoginByToken":                true,
	"LoginExtensionByCertificate": true,
	"LoginExtensionBySubjectName": true,
	"LoginBySSPI":                 true,
	"CloneSession":                true,
}

// ---- SOAP parsing / writing ---------------------------------------------------

// scanMethod returns the SOAP method name and its _this argument.
func scanMethod(body []byte) (string, types.ManagedObjectReference) {
	var this types.ManagedObjectReference
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	method := ""
	for {
		tok, err := dec.Token()
		if err != nil {
			return method, this
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if !inBody {
				if t.Name.Local == "Body" {
					inBody = true
				}
				continue
			}
			if method == "" {
				method = t.Name.Local
				continue
			}
			if t.Name.Local == "_this" {
				for _, a := range t.Attr {
					if a.Name.Local == "type" {
						this.Type = a.Value
					}
				}
				var v string
				if err := dec.DecodeElement(&v, &t); err == nil {
					this.Value = strings.TrimSpace(v)
				}
			}
			return method, this
		}
	}
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

const envelopeHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`
const envelopeTail = `</soapenv:Body></soapenv:Envelope>`

func writeSOAPFault(w http.ResponseWriter, faultType, msg, detailInner string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `%s<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring><detail><%sFault xmlns="urn:vim25" xsi:type="%s">%s</%sFault></detail></soapenv:Fault>%s`,
		envelopeHead, xmlEscape(msg), faultType, faultType, detailInner, faultType, envelopeTail)
}

func writeNotAuthenticated(w http.ResponseWriter, this types.ManagedObjectReference) {
	inner := ""
	if this.Type != "" {
		inner = fmt.Sprintf(`<object type="%s">%s</object>`, xmlEscape(this.Type), xmlEscape(this.Value))
	}
	inner += `<privilegeId>System.View</privilegeId>`
	writeSOAPFault(w, "NotAuthenticated", "The session is not authenticated.", inner)
}

func writeTaskResponse(w http.ResponseWriter, method string, task types.ManagedObjectReference) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, `%s<%sResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval></%sResponse>%s`,
		envelopeHead, method, xmlEscape(task.Value), method, envelopeTail)
}

// recorder buffers a response so it can be released after post-processing.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, code: http.StatusOK} }

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func (r *recorder) flushTo(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	}
	w.Header().Set("Content-Length", strconv.Itoa(r.body.Len()))
	w.WriteHeader(r.code)
	_, _ = w.Write(r.body.Bytes())
}

func (r *recorder) sessionCookie() string {
	resp := http.Response{Header: r.header}
	for _, c := range resp.Cookies() {
		if c.Name == soap.SessionCookieName {
			return c.Value
		}
	}
	return ""
}

func requestSessionCookie(r *http.Request) string {
	if c, err := r.Cookie(soap.SessionCookieName); err == nil {
		return c.Value
	}
	return ""
}

// ---- the handler -----------------------------------------------------------------

const vcenterEndpoint = "vcenter"

func invalidLoginFault(w http.ResponseWriter) {
	writeSOAPFault(w, "InvalidLogin", "Cannot complete login due to an incorrect user name or password.", "")
}

// frontHandler wraps vcsim's handler of one endpoint: h is the host whose
// endpoint it is, nil for the vCenter.
func (x *Ext) frontHandler(next http.Handler, h *hostEP) http.Handler {
	epName := vcenterEndpoint
	if h != nil {
		epName = h.name
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		method, this := scanMethod(body)
		if method == "" {
			method = "(unparsable)"
		}
		x.stats.add(method)
		if s := x.endpointStats(epName); s != nil {
			s.add(method)
		}

		cookie := requestSessionCookie(r)
		if !publicMethods[method] && !x.sessions.valid(cookie, epName) {
			writeNotAuthenticated(w, this)
			return
		}

		user := ""
		if method == "Login" {
			if m, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
				if l, ok := m.Body.(*types.Login); ok {
					user = l.UserName
				}
			}
		}
		// Plain --mode esx: the one endpoint is the host, so it also takes the
		// host credentials every other host endpoint takes. vcsim checks one
		// user per Service: root logins go to a Service of their own (same
		// model and session manager).
		handler := next
		if h == nil && x.rootSvc != nil && method == "Login" && user == hostUser {
			handler = x.rootSvc.ServeMux
		}
		if h != nil {
			h.refresh()
			switch {
			case method == "RetrieveServiceContent":
				writeSOAPResponse(w, method, &types.RetrieveServiceContentResponse{Returnval: h.serviceContent()})
				return
			case method == "Login" && !h.loginAllowed(user):
				// Lockdown takes every permission away from users not in
				// the exception list; hostd then refuses their login as it
				// refuses a wrong password (see README).
				invalidLoginFault(w)
				return
			case loginMethods[method] && method != "Login":
				invalidLoginFault(w) // hosts here only know user/password logins
				return
			case this.Type == "VirtualMachine" && !h.owns(this), this.Type == "HostSystem" && this != h.ref:
				writeNotFound(w, this)
				return
			}
			if h.search(w, method, body) {
				return
			}
			if method == "RegisterVM_Task" {
				if body = x.hostRegister(w, h, body); body == nil {
					return
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))

		var unhide func()
		registering := ""
		if method == "RegisterVM_Task" {
			if x.preRegister(w, body, h != nil) {
				return
			}
			unhide, registering = x.allowDuplicate(body)
		}
		if (method == "ShutdownHost_Task" || method == "RebootHost_Task") && x.hostPower(w, method, body) {
			return
		}

		rec := newRecorder()
		handler.ServeHTTP(rec, r)
		if unhide != nil {
			unhide()
		}

		if loginMethods[method] && rec.code != http.StatusOK {
			// vcsim says "Login failure"; vCenter/ESXi send this text.
			b := bytes.Replace(rec.body.Bytes(),
				[]byte("<faultstring>Login failure</faultstring>"),
				[]byte("<faultstring>Cannot complete login due to an incorrect user name or password.</faultstring>"), 1)
			rec.body.Reset()
			rec.body.Write(b)
		}
		if rec.code == http.StatusOK {
			if loginMethods[method] {
				if key := rec.sessionCookie(); key != "" {
					x.sessions.add(key, epName, user)
				}
			}
			if method == "Logout" {
				x.sessions.remove(cookie)
			}
		}
		out := byteArrays(rec.body.Bytes())
		if h != nil {
			out = h.rewriteContainers(out)
		}
		if len(out) != rec.body.Len() || h != nil {
			rec.body.Reset()
			rec.body.Write(out)
		}
		x.ensureWrapped(false)
		if registering != "" {
			x.mu.Lock()
			delete(x.explicitHost, registering) // adopt has used it (or the call failed)
			x.mu.Unlock()
		}
		// Registrations and the like through any endpoint change what the
		// hosts' vm folders hold (a host endpoint also refreshes its own
		// before every call; migrations refresh in moveVM).
		if inventoryMethods[method] {
			x.refreshHosts()
		}
		rec.flushTo(w)
	})
}

// allowDuplicate lets RegisterVM_Task register a .vmx that is registered on
// ANOTHER host (vCenter shows both entries after an outage; vcsim refuses any
// registered path): those entries are hidden from vcsim's check during the
// call; the returned func shows them again. A path registered on the target
// host itself still fails with AlreadyExists, as on ESXi. It also returns
// the path when the call names its host (adopt must then keep the VM there).
func (x *Ext) allowDuplicate(body []byte) (func(), string) {
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return nil, ""
	}
	req, ok := m.Body.(*types.RegisterVM_Task)
	if !ok || req.Host == nil || req.Path == "" {
		return nil, ""
	}
	var others []types.ManagedObjectReference
	for _, vm := range allVMs() {
		if vm.vmxPath() != req.Path {
			continue
		}
		onTarget := false
		withVM(vm.Self, func(vm *VM) { onTarget = vm.Runtime.Host != nil && *vm.Runtime.Host == *req.Host })
		if onTarget {
			return nil, ""
		}
		others = append(others, vm.Self)
	}
	x.mu.Lock()
	x.explicitHost[req.Path] = true
	x.mu.Unlock()
	if len(others) == 0 {
		return nil, req.Path
	}
	hidden := req.Path + " (registered on another host)"
	for _, ref := range others {
		withVM(ref, func(vm *VM) { vm.Config.Files.VmPathName = hidden })
	}
	return func() {
		for _, ref := range others {
			withVM(ref, func(vm *VM) { vm.Config.Files.VmPathName = req.Path })
		}
	}, req.Path
}

// preRegister validates RegisterVM_Task arguments the way vCenter does. It
// returns true if it already answered the request.
func (x *Ext) preRegister(w http.ResponseWriter, body []byte, viaHost bool) bool {
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return false
	}
	req, ok := m.Body.(*types.RegisterVM_Task)
	if !ok {
		return false
	}

	if req.Host != nil && req.Pool != nil {
		if _, h := hostMO(*req.Host); h != nil && simulator.Map.Get(*req.Pool) != nil {
			a, b := computeResourceOf(*req.Host), computeResourceOf(*req.Pool)
			if a == nil || b == nil || *a != *b {
				_, msg := invalidArgument("host")
				writeSOAPFault(w, "InvalidArgument", msg, `<invalidProperty>host</invalidProperty>`)
				return true
			}
		}
	}
	if req.Host != nil {
		// Through the host's own endpoint the host is up whatever vCenter thinks.
		if _, h := hostMO(*req.Host); h != nil && !viaHost && !hostConnected(req.Host) {
			folder := simulator.Map.Get(req.This)
			if folder == nil {
				return false
			}
			name := ""
			if e, ok := folder.(mo.Entity); ok {
				name = e.Entity().Name
			}
			task := newTask(nil, folder, name, "registerVm", "RegisterVM_Task")
			host := *req.Host
			go func() {
				time.Sleep(x.getTaskDelay())
				f, msg := hostStateFault(&host)
				finishTask(task, nil, f, msg)
			}()
			writeTaskResponse(w, "RegisterVM_Task", task.Self)
			return true
		}
	}

	// vcsim opens "<dir>/<name>.nvram" when registering; with a new name that
	// file does not exist (a real ESXi would create it). Create it.
	if req.Name != "" && req.Path != "" {
		x.touchNvram(req.Path, req.Name)
	}
	return false
}

func (x *Ext) touchNvram(vmx, name string) {
	var p object.DatastorePath
	if !p.FromString(vmx) {
		return
	}
	for _, e := range simulator.Map.All("Datastore") {
		ds, ok := moOf(e).(*mo.Datastore)
		if !ok || ds.Name != p.Datastore || ds.Info == nil {
			continue
		}
		dir := filepath.Join(ds.Info.GetDatastoreInfo().Url, path.Dir(p.Path))
		file := filepath.Join(dir, name+".nvram")
		if _, err := os.Stat(dir); err != nil {
			return
		}
		if _, err := os.Stat(file); os.IsNotExist(err) {
			if f, err := os.Create(file); err == nil {
				_ = f.Close()
			}
		}
		return
	}
}
