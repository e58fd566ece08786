// Command vcsim serves a vCenter simulator (govmomi's simulator package) populated with the
// memory figures a test writes to a JSON file, for hvballoon's vSphere test peer.
//
// It is built in GOPATH mode against the distribution's govmomi source (see harness.py), and
// adds to the stock simulator what the ESXi backend's tests need:
//
//   - per-VM memory figures (memoryMB, memoryAllocation, quickStats, power state), which the
//     stock simulator leaves at zero, and the host each VM runs on;
//   - per-host memory figures (hardware.memorySize, summary.quickStats.overallMemoryUsage),
//     which the stock simulator sets to the same values on every host;
//   - PropertyCollector paging: RetrievePropertiesEx honours options.maxObjects (and an optional
//     server-side page size), ContinueRetrievePropertiesEx and CancelRetrievePropertiesEx work;
//   - a count of SOAP requests per method (GET /_counts, POST /_counts/reset);
//   - session expiry on demand (POST /_expire_sessions): every session issued so far is
//     terminated, so the next call fails with NotAuthenticated until the client logs in again;
//   - a read-back of a VM's memory configuration (GET /_vm?name=NAME) that bypasses SOAP and
//     the request counts;
//   - tasks that end after their call returns (-task-delay D), as on a real vCenter, where
//     ReconfigVM_Task answers with a task that is queued or running: the stock simulator runs a
//     reconfiguration before it answers, so its task has always ended. With the delay the task
//     reads as running for D, then takes back the state it ended in (the change itself is made
//     at once); clients waiting with WaitForUpdatesEx see the change of info.state.
//   - extraConfig changes as vSphere makes them: "If the key is already present, it will be
//     reset with the new value provided. Otherwise, a new option is added. Keys with empty
//     values will be removed." (VirtualMachineConfigSpec.extraConfig, vSphere API reference);
//     this govmomi's simulator only appends what a ReconfigVM_Task sends.
//   - memory hot-add as vSphere holds it, which this govmomi's simulator does not model (it
//     takes any memoryMB in any power state): a powered-on VM's memory size changes only with
//     config.memoryHotAddEnabled, and then only grows, to at most config.hotPlugMemoryLimit, by
//     whole config.hotPlugMemoryIncrementSize steps ("If the virtual machine is running, this
//     value may only be changed if Memory.Info.hot-add-enabled is true, and the new memory size
//     must satisfy the constraints specified by Memory.Info.hot-add-increment-size-mib and
//     Memory.Info.hot-add-limit-mib"; "the amount of memory added must be at least [the
//     increment] and the total memory size [...] a multiple of [it]": vSphere Automation API,
//     Vm.Hardware.Memory). Anything else is refused with MemoryHotPlugNotSupported ("Thrown
//     when memory cannot be hot-added or hot-removed from the virtual machine"), here at the
//     call rather than in the task, and nothing changes.
//
// When it is listening it prints one line of JSON to stdout ({"url": ..., "port": ..., ...}).
// It exits on SIGTERM/SIGINT, or when stdin reaches EOF if -exit-on-stdin-eof is given (so it
// never outlives the test process that started it), removing the simulator's datastore
// directories.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ---------------------------------------------------------------------------------------------
// The figures file

type figures struct {
	Hosts        int   `json:"hosts"`
	HostMemoryMB int64 `json:"hostMemoryMB"`
	// Per host, in moref order (the first is host 0); hosts beyond the list keep the defaults.
	HostFigures []hostFigures `json:"hostFigures"`
	VMs         []vmFigures   `json:"vms"`
	// A larger inventory than one cluster (unset: one datacenter, one cluster)
	Inventory *inventory `json:"inventory"`
}

// inventory shapes the model as vcsim's flags do (-dc -standalone-host -cluster -app -folder):
// per datacenter, standalone hosts and clusters (each cluster of the "hosts" count), vApps per
// cluster, and datacenters placed in folders. Every compute resource and vApp gets the VMs
// count of VMs: the figures' VMs are the first in moref order, the others keep the
// simulator's names (DC1_C0_RP0_VM0, DC0_H0_VM1, DC0_C0_APP0_VM0, ...).
type inventory struct {
	Datacenters     int `json:"datacenters"`
	StandaloneHosts int `json:"standaloneHosts"`
	Clusters        int `json:"clusters"`
	Apps            int `json:"apps"`
	Folders         int `json:"folders"`
}

type hostFigures struct {
	MemoryMB int64 `json:"memoryMB"`
	// MB, summary.quickStats; 0 as a disconnected host reports it (absent: the default 1404)
	OverallMemoryUsage *int32 `json:"overallMemoryUsage"`
	// A host vCenter lost touch with: runtime.connectionState disconnected, and neither its
	// memory size nor its usage reported (hardware.memorySize and overallMemoryUsage 0)
	Disconnected bool `json:"disconnected"`
}

type vmFigures struct {
	Name             string                        `json:"name"`
	PowerState       string                        `json:"powerState"`
	MemoryMB         int32                         `json:"memoryMB"`
	MemoryAllocation *types.ResourceAllocationInfo `json:"memoryAllocation"`
	// Decoded field by field (case-insensitively) onto govmomi's VirtualMachineQuickStats, so
	// every field this govmomi version knows is accepted and an unknown one is an error.
	QuickStats          json.RawMessage `json:"quickStats"`
	MemoryHotAddEnabled *bool           `json:"memoryHotAddEnabled"`
	// config.hotPlugMemoryLimit and config.hotPlugMemoryIncrementSize (MB; 0: unset)
	HotPlugMemoryLimit         int64             `json:"hotPlugMemoryLimit"`
	HotPlugMemoryIncrementSize int64             `json:"hotPlugMemoryIncrementSize"`
	ExtraConfig                map[string]string `json:"extraConfig"`
	// The index (moref order) of the host the VM runs on; unset: where the model put it.
	Host *int `json:"host"`
	// config.template: a template, which the simulator refuses to reconfigure (but for its
	// name and annotation) and to power on, as vSphere does
	Template bool `json:"template"`
	// runtime.connectionState (VirtualMachineConnectionState): connected (default),
	// disconnected, inaccessible, invalid or orphaned
	ConnectionState string `json:"connectionState"`
	// Property paths the account may not read on this VM: answered in the object's missingSet
	// with a NoPermission fault, as vSphere answers properties it does not let a user read
	Unreadable []string `json:"unreadable"`
}

func loadFigures(path string) (*figures, error) {
	f := &figures{}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, vm := range f.VMs {
		if vm.Name == "" {
			return nil, fmt.Errorf("%s: vms[%d] has no name", path, i)
		}
		if seen[vm.Name] {
			return nil, fmt.Errorf("%s: duplicate VM name %q", path, vm.Name)
		}
		seen[vm.Name] = true
		switch vm.ConnectionState {
		case "", "connected", "disconnected", "inaccessible", "invalid", "orphaned":
		default:
			return nil, fmt.Errorf("%s: vms[%d] has connectionState %q", path, i, vm.ConnectionState)
		}
		if vm.Host != nil && *vm.Host < 0 {
			return nil, fmt.Errorf("%s: vms[%d] names host %d", path, i, *vm.Host)
		}
	}
	return f, nil
}

var powerStates = map[string]types.VirtualMachinePowerState{
	"":           types.VirtualMachinePowerStatePoweredOn,
	"poweredOn":  types.VirtualMachinePowerStatePoweredOn,
	"poweredOff": types.VirtualMachinePowerStatePoweredOff,
	"suspended":  types.VirtualMachinePowerStateSuspended,
}

// escapeName stores a name as vCenter does: "Any / (slash), \ (backslash), character used in
// this name element will be escaped. Similarly, any % (percent) character used in this name
// element will be escaped, unless it is used to start an escape sequence. A slash is escaped as
// %2F or %2f. A backslash is escaped as %5C or %5c, and a percent is escaped as %25." (vSphere
// API, ManagedEntity.name). govmomi 0.24's simulator keeps names as given.
func escapeName(name string) string {
	var b bytes.Buffer
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '/':
			b.WriteString("%2f")
		case '\\':
			b.WriteString("%5c")
		case '%':
			if escapeSequence.MatchString(name[i:]) {
				b.WriteByte(c)
			} else {
				b.WriteString("%25")
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var escapeSequence = regexp.MustCompile(`^%(2[fF]|5[cC]|25)`)

// applyVM writes one VM's figures onto the simulator's object. Config and Runtime have copies
// under Summary that the simulator does not keep in step: both are set.
func applyVM(vm *simulator.VirtualMachine, f *vmFigures, hosts []*simulator.HostSystem) error {
	state, ok := powerStates[f.PowerState]
	if !ok {
		return fmt.Errorf("VM %q: unknown powerState %q", f.Name, f.PowerState)
	}

	name := escapeName(f.Name)
	vm.Name = name
	vm.Config.Name = name
	vm.Summary.Config.Name = name

	if f.MemoryMB != 0 {
		vm.Config.Hardware.MemoryMB = f.MemoryMB
		vm.Summary.Config.MemorySizeMB = f.MemoryMB
	}
	if f.MemoryAllocation != nil {
		alloc := *f.MemoryAllocation
		vm.Config.MemoryAllocation = &alloc
		if alloc.Reservation != nil {
			vm.Summary.Config.MemoryReservation = int32(*alloc.Reservation)
		}
	}
	if f.MemoryHotAddEnabled != nil {
		v := *f.MemoryHotAddEnabled
		vm.Config.MemoryHotAddEnabled = &v
	}
	vm.Config.HotPlugMemoryLimit = f.HotPlugMemoryLimit
	vm.Config.HotPlugMemoryIncrementSize = f.HotPlugMemoryIncrementSize
	keys := make([]string, 0, len(f.ExtraConfig))
	for k := range f.ExtraConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vm.Config.ExtraConfig = append(vm.Config.ExtraConfig,
			&types.OptionValue{Key: k, Value: f.ExtraConfig[k]})
	}

	if f.Host != nil {
		if *f.Host >= len(hosts) {
			return fmt.Errorf("VM %q: host %d does not exist (%d hosts)", f.Name, *f.Host, len(hosts))
		}
		target := hosts[*f.Host]
		if vm.Runtime.Host != nil && *vm.Runtime.Host != target.Self {
			if old, ok := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem); ok {
				simulator.Map.RemoveReference(old, &old.Vm, vm.Self)
			}
			simulator.Map.AppendReference(target, &target.Vm, vm.Self)
		}
		ref := target.Self
		vm.Runtime.Host = &ref
	}

	if f.Template {
		vm.Config.Template = true
		vm.Summary.Config.Template = true
	}
	if len(f.Unreadable) > 0 {
		unreadable[vm.Self] = append([]string(nil), f.Unreadable...)
	}
	if f.ConnectionState != "" {
		vm.Runtime.ConnectionState = types.VirtualMachineConnectionState(f.ConnectionState)
	}
	vm.Runtime.PowerState = state
	if state == types.VirtualMachinePowerStatePoweredOn {
		now := time.Now()
		vm.Runtime.BootTime = &now
		vm.Runtime.MaxMemoryUsage = vm.Config.Hardware.MemoryMB
	} else {
		vm.Runtime.BootTime = nil
		vm.Runtime.MaxMemoryUsage = 0
	}
	vm.Summary.Runtime = vm.Runtime

	if len(f.QuickStats) > 0 {
		qs := vm.Summary.QuickStats
		dec := json.NewDecoder(bytes.NewReader(f.QuickStats))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&qs); err != nil {
			return fmt.Errorf("VM %q: quickStats: %w", f.Name, err)
		}
		vm.Summary.QuickStats = qs
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// PropertyCollector paging

// pagedCollector stands in for the simulator's PropertyCollector under the same moref. The
// simulator creates one per session with reflect.New, so its zero value must work: the paging
// state lives in the package-level store, not in the object.
type pagedCollector struct {
	simulator.PropertyCollector
}

// serverPageSize caps every page when > 0, as a real vCenter may return fewer objects than
// asked for; 0 means "only options.maxObjects limits a page".
var serverPageSize int

type pendingResult struct {
	session  string
	pageSize int
	objects  []types.ObjectContent
}

var pages = struct {
	sync.Mutex
	m map[string]*pendingResult
}{m: map[string]*pendingResult{}}

func newToken() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func notAuthenticated(this types.ManagedObjectReference) *soap.Fault {
	return simulator.Fault("The session is not authenticated.", &types.NotAuthenticated{
		NoPermission: types.NoPermission{Object: this, PrivilegeId: "System.View"},
	})
}

func sessionKey(ctx *simulator.Context) string {
	if ctx.Session == nil {
		return ""
	}
	return ctx.Session.Key
}

// unreadable holds, per VM, the property paths (and their sub-paths) the account may not read.
var unreadable = map[types.ManagedObjectReference][]string{}

// hideUnreadable moves the properties the account may not read into each object's missingSet.
func hideUnreadable(objects []types.ObjectContent) {
	for i := range objects {
		paths, ok := unreadable[objects[i].Obj]
		if !ok {
			continue
		}
		kept := objects[i].PropSet[:0]
		for _, prop := range objects[i].PropSet {
			hidden := false
			for _, path := range paths {
				if prop.Name == path || strings.HasPrefix(prop.Name, path+".") || strings.HasPrefix(path, prop.Name+".") {
					hidden = true
				}
			}
			if !hidden {
				kept = append(kept, prop)
				continue
			}
			objects[i].MissingSet = append(objects[i].MissingSet, types.MissingProperty{
				Path: prop.Name,
				Fault: types.LocalizedMethodFault{
					Fault:            &types.NoPermission{Object: objects[i].Obj, PrivilegeId: "System.Read"},
					LocalizedMessage: "Permission to perform this operation was denied.",
				},
			})
		}
		objects[i].PropSet = kept
	}
}

// page returns the first pageSize objects as a RetrieveResult, storing the rest under a token.
func page(ctx *simulator.Context, objects []types.ObjectContent, pageSize int) types.RetrieveResult {
	if pageSize <= 0 || len(objects) <= pageSize {
		return types.RetrieveResult{Objects: objects}
	}
	token := newToken()
	pages.Lock()
	pages.m[token] = &pendingResult{
		session:  sessionKey(ctx),
		pageSize: pageSize,
		objects:  objects[pageSize:],
	}
	pages.Unlock()
	return types.RetrieveResult{Token: token, Objects: objects[:pageSize]}
}

func (pc *pagedCollector) RetrievePropertiesEx(ctx *simulator.Context, req *types.RetrievePropertiesEx) soap.HasFault {
	if ctx.Session == nil {
		// The stock simulator answers an unauthenticated call with per-property faults; a
		// real vCenter (and an expired session) fails the whole call.
		return &methods.RetrievePropertiesExBody{Fault_: notAuthenticated(req.This)}
	}
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, req)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Fault_ != nil || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	hideUnreadable(body.Res.Returnval.Objects)
	size := int(req.Options.MaxObjects)
	if serverPageSize > 0 && (size <= 0 || serverPageSize < size) {
		size = serverPageSize
	}
	result := page(ctx, body.Res.Returnval.Objects, size)
	body.Res.Returnval = &result
	return body
}

func (pc *pagedCollector) RetrieveProperties(ctx *simulator.Context, req *types.RetrieveProperties) soap.HasFault {
	if ctx.Session == nil {
		return &methods.RetrievePropertiesBody{Fault_: notAuthenticated(req.This)}
	}
	res := pc.PropertyCollector.RetrieveProperties(ctx, req)
	if body, ok := res.(*methods.RetrievePropertiesBody); ok && body.Fault_ == nil && body.Res != nil {
		hideUnreadable(body.Res.Returnval)
	}
	return res
}

// takePage hands over (and forgets) the pending page a token names, if this session asked for it;
// otherwise the fault vSphere answers for an unknown token.
func takePage(ctx *simulator.Context, token string) (*pendingResult, *soap.Fault) {
	pages.Lock()
	defer pages.Unlock()
	pending, ok := pages.m[token]
	if !ok || pending.session != sessionKey(ctx) {
		return nil, simulator.Fault("invalid or expired token", &types.InvalidArgument{InvalidProperty: "token"})
	}
	delete(pages.m, token)
	return pending, nil
}

func (pc *pagedCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, req *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	pending, fault := takePage(ctx, req.Token)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{
		Returnval: page(ctx, pending.objects, pending.pageSize),
	}
	return body
}

func (pc *pagedCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, req *types.CancelRetrievePropertiesEx) soap.HasFault {
	body := &methods.CancelRetrievePropertiesExBody{}
	_, fault := takePage(ctx, req.Token)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	body.Res = &types.CancelRetrievePropertiesExResponse{}
	return body
}

// CreatePropertyCollector hands out paging collectors too, typed PropertyCollector on the wire
// as vSphere's are (left to the simulator, the type would be the Go struct's name).
func (pc *pagedCollector) CreatePropertyCollector(ctx *simulator.Context, req *types.CreatePropertyCollector) soap.HasFault {
	collector := &pagedCollector{}
	collector.Self.Type = "PropertyCollector"
	return &methods.CreatePropertyCollectorBody{
		Res: &types.CreatePropertyCollectorResponse{
			Returnval: ctx.Session.Put(collector).Reference(),
		},
	}
}

// ---------------------------------------------------------------------------------------------
// The HTTP front: request counts, issued sessions, harness endpoints

type front struct {
	sdk       http.Handler
	sm        *simulator.SessionManager
	taskDelay time.Duration

	mu       sync.Mutex
	counts   map[string]int
	sessions map[string]bool // session keys issued so far (from Set-Cookie)
}

// soapMethod returns the local name of the first element inside the SOAP Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return "?"
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			if se.Name.Local == "Body" {
				inBody = true
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_counts" && r.Method == http.MethodGet:
		f.mu.Lock()
		out := make(map[string]int, len(f.counts))
		for k, v := range f.counts {
			out[k] = v
		}
		f.mu.Unlock()
		writeJSON(w, out)
		return
	case r.URL.Path == "/_counts/reset" && r.Method == http.MethodPost:
		f.mu.Lock()
		f.counts = map[string]int{}
		f.mu.Unlock()
		writeJSON(w, map[string]int{})
		return
	case r.URL.Path == "/_expire_sessions" && r.Method == http.MethodPost:
		writeJSON(w, map[string]int{"expired": f.expireSessions()})
		return
	case r.URL.Path == "/_vm" && r.Method == http.MethodGet:
		f.serveVM(w, r)
		return
	}

	var reqBody []byte
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		name := soapMethod(body)
		f.mu.Lock()
		f.counts[name]++
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		reqBody = body
		if f.taskDelay > 0 && taskMethods[name] {
			f.serveDelayed(w, r)
			settleExtraConfig(reqBody)
			f.rememberSessions(w)
			return
		}
	}

	if msg := hotAddRefusal(reqBody); msg != "" {
		writeFault(w, "MemoryHotPlugNotSupported", msg)
		return
	}
	f.sdk.ServeHTTP(w, r)
	settleExtraConfig(reqBody)
	f.rememberSessions(w)
}

var reconfigMemoryMB = regexp.MustCompile(`<memoryMB>(\d+)</memoryMB>`)

// hotAddRefusal says why vSphere would refuse the memory size a ReconfigVM_Task asks of a
// powered-on VM (see the header), or "" when it would not.
func hotAddRefusal(body []byte) string {
	m, size := reconfigThis.FindSubmatch(body), reconfigMemoryMB.FindSubmatch(body)
	if m == nil || size == nil {
		return ""
	}
	asked, err := strconv.ParseInt(string(size[1]), 10, 64)
	if err != nil {
		return ""
	}
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: string(m[1])}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return ""
	}
	why := ""
	simulator.Map.WithLock(vm, func() {
		now := int64(vm.Config.Hardware.MemoryMB)
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || asked == now {
			return
		}
		limit, step := vm.Config.HotPlugMemoryLimit, vm.Config.HotPlugMemoryIncrementSize
		switch {
		case vm.Config.MemoryHotAddEnabled == nil || !*vm.Config.MemoryHotAddEnabled:
			why = "memory hot-add is not enabled on this powered-on virtual machine"
		case asked < now:
			why = "memory cannot be hot-removed from a powered-on virtual machine"
		case limit > 0 && asked > limit:
			why = fmt.Sprintf("the memory size %d MB is above the hot-add limit %d MB", asked, limit)
		case step > 0 && (asked%step != 0 || asked-now < step):
			why = fmt.Sprintf("memory is hot-added in increments of %d MB", step)
		}
	})
	return why
}

// writeFault answers a SOAP call with a fault of type kind, as vSphere does.
func writeFault(w http.ResponseWriter, kind, msg string) {
	var text bytes.Buffer
	_ = xml.EscapeText(&text, []byte(msg))
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" `+
		`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>`+
		`<faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring>`+
		`<detail><%sFault xmlns="urn:vim25" xsi:type="%s"></%sFault></detail>`+
		`</soapenv:Fault></soapenv:Body></soapenv:Envelope>`, text.String(), kind, kind, kind)
}

// Methods whose task is made to end after the call returns (with -task-delay).
var taskMethods = map[string]bool{"ReconfigVM_Task": true}

var taskRef = regexp.MustCompile(`<returnval type="Task">([^<]+)</returnval>`)

// serveDelayed answers a *_Task call, then shows its task as running for taskDelay before it
// takes back the state it ended in.
func (f *front) serveDelayed(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	f.sdk.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if m := taskRef.FindSubmatch(body); m != nil {
		ref := types.ManagedObjectReference{Type: "Task", Value: string(m[1])}
		if task, ok := simulator.Map.Get(ref).(*simulator.Task); ok {
			var final types.TaskInfoState
			simulator.Map.WithLock(task, func() { final = task.Info.State })
			running := []types.PropertyChange{{Name: "info.state", Val: types.TaskInfoStateRunning}}
			simulator.Map.WithLock(task, func() { simulator.Map.Update(task, running) })
			time.AfterFunc(f.taskDelay, func() {
				ended := []types.PropertyChange{{Name: "info.state", Val: final}}
				simulator.Map.WithLock(task, func() { simulator.Map.Update(task, ended) })
			})
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// rememberSessions notes every session handed out (Login, CloneSession...), so that they can
// be expired.
func (f *front) rememberSessions(w http.ResponseWriter) {

	for _, c := range (&http.Response{Header: w.Header()}).Cookies() {
		if c.Name == soap.SessionCookieName && c.Value != "" {
			f.mu.Lock()
			f.sessions[c.Value] = true
			f.mu.Unlock()
		}
	}
}

// expireSessions terminates every session issued so far, through the simulator's own
// SessionManager.TerminateSession (which only needs a caller session with another key).
func (f *front) expireSessions() int {
	f.mu.Lock()
	keys := make([]string, 0, len(f.sessions))
	for k := range f.sessions {
		keys = append(keys, k)
	}
	f.sessions = map[string]bool{}
	f.mu.Unlock()

	caller := &simulator.Context{
		Context: context.Background(),
		Session: &simulator.Session{UserSession: types.UserSession{Key: "harness-" + newToken()}},
		Map:     simulator.Map,
	}
	n := 0
	for _, key := range keys {
		res := f.sm.TerminateSession(caller, &types.TerminateSession{SessionId: []string{key}})
		if res.Fault() == nil {
			n++
		}
	}
	return n
}

var reconfigThis = regexp.MustCompile(`<ReconfigVM_Task[^>]*>\s*<_this[^>]*>([^<]+)</_this>`)

// settleExtraConfig gives a VM's extraConfig the state vSphere leaves after a ReconfigVM_Task
// (see the header): the last value sent for a key replaces the earlier ones, in place, and an
// empty value removes the key.
func settleExtraConfig(body []byte) {
	m := reconfigThis.FindSubmatch(body)
	if m == nil {
		return
	}
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: string(m[1])}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		last := map[string]string{}
		for _, o := range vm.Config.ExtraConfig {
			v := o.GetOptionValue()
			last[v.Key] = fmt.Sprint(v.Value)
		}
		var kept []types.BaseOptionValue
		seen := map[string]bool{}
		for _, o := range vm.Config.ExtraConfig {
			v := o.GetOptionValue()
			if seen[v.Key] || last[v.Key] == "" {
				continue
			}
			seen[v.Key] = true
			kept = append(kept, &types.OptionValue{Key: v.Key, Value: last[v.Key]})
		}
		vm.Config.ExtraConfig = kept
	})
}

type sharesJSON struct {
	Level  string `json:"level"`
	Shares int32  `json:"shares"`
}

type allocationJSON struct {
	Reservation *int64      `json:"reservation"`
	Limit       *int64      `json:"limit"`
	Shares      *sharesJSON `json:"shares"`
}

type vmStateJSON struct {
	Name             string            `json:"name"`
	Moref            string            `json:"moref"`
	PowerState       string            `json:"powerState"`
	MemoryMB         int32             `json:"memoryMB"`
	MemoryAllocation *allocationJSON   `json:"memoryAllocation"`
	ExtraConfig      map[string]string `json:"extraConfig"`
}

func vmState(vm *simulator.VirtualMachine) vmStateJSON {
	out := vmStateJSON{
		Name:       vm.Name,
		Moref:      vm.Self.Value,
		PowerState: string(vm.Runtime.PowerState),
	}
	if vm.Config != nil {
		out.ExtraConfig = map[string]string{}
		for _, o := range vm.Config.ExtraConfig {
			v := o.GetOptionValue()
			out.ExtraConfig[v.Key] = fmt.Sprint(v.Value)
		}
		out.MemoryMB = vm.Config.Hardware.MemoryMB
		if a := vm.Config.MemoryAllocation; a != nil {
			alloc := &allocationJSON{Reservation: a.Reservation, Limit: a.Limit}
			if a.Shares != nil {
				alloc.Shares = &sharesJSON{Level: string(a.Shares.Level), Shares: a.Shares.Shares}
			}
			out.MemoryAllocation = alloc
		}
	}
	return out
}

func (f *front) serveVM(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	var states []vmStateJSON
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() {
			if name == "" || vm.Name == escapeName(name) {
				states = append(states, vmState(vm))
			}
		})
	}
	if name == "" {
		sort.Slice(states, func(i, j int) bool { return states[i].Name < states[j].Name })
		writeJSON(w, states)
		return
	}
	if len(states) != 1 {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]string{"error": fmt.Sprintf("%d VMs named %q", len(states), name)})
		return
	}
	writeJSON(w, states[0])
}

// ---------------------------------------------------------------------------------------------

var stop = make(chan os.Signal, 2)

func main() {
	config := flag.String("config", "", "JSON file with hosts and per-VM memory figures")
	hosts := flag.Int("hosts", 0, "number of hosts (default: the file's, else 1)")
	nvms := flag.Int("vms", 0, "number of VMs (default: the file's; more are created with default names)")
	listen := flag.String("listen", "127.0.0.2:0", "address:port to listen on (port 0: any free port)")
	certFile := flag.String("cert", "", "PEM certificate: serve https (with -key)")
	keyFile := flag.String("key", "", "PEM private key for -cert")
	username := flag.String("username", "user", "login user name")
	password := flag.String("password", "pass", "login password")
	pageSize := flag.Int("page-size", 0, "cap every PropertyCollector page at this many objects (0: no cap)")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin is closed")
	taskDelay := flag.Duration("task-delay", 0, "tasks read as running this long after their call returns (0: they have ended)")
	flag.Parse()

	started := time.Now()
	log.SetPrefix("vcsim: ")

	figs, err := loadFigures(*config)
	if err != nil {
		log.Fatal(err)
	}
	nh := *hosts
	if nh <= 0 {
		nh = figs.Hosts
	}
	if nh < len(figs.HostFigures) {
		nh = len(figs.HostFigures)
	}
	if nh <= 0 {
		nh = 1
	}
	nv := len(figs.VMs)
	if *nvms > nv {
		nv = *nvms
	}
	serverPageSize = *pageSize

	// One datacenter, one cluster of nh hosts, nv VMs in the cluster's root pool.
	model := simulator.VPX()
	model.Host = 0
	model.Cluster = 1
	model.ClusterHost = nh
	model.Machine = nv
	model.Autostart = false // power states come from the figures
	if inv := figs.Inventory; inv != nil {
		model.Datacenter = max1(inv.Datacenters)
		model.Host = inv.StandaloneHosts
		model.Cluster = inv.Clusters
		model.App = inv.Apps
		model.Folder = inv.Folders
	}
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	// Hosts in moref order, so that the figures' host indexes are stable.
	var hostList []*simulator.HostSystem
	for _, e := range simulator.Map.All("HostSystem") {
		hostList = append(hostList, e.(*simulator.HostSystem))
	}
	sort.Slice(hostList, func(i, j int) bool { return morefLess(hostList[i].Self.Value, hostList[j].Self.Value) })
	if len(figs.HostFigures) > len(hostList) {
		log.Fatalf("figures for %d hosts, the model has %d", len(figs.HostFigures), len(hostList))
	}
	for i, host := range hostList {
		memoryMB := figs.HostMemoryMB
		if i < len(figs.HostFigures) && figs.HostFigures[i].MemoryMB > 0 {
			memoryMB = figs.HostFigures[i].MemoryMB
		}
		if memoryMB > 0 {
			host.Hardware.MemorySize = memoryMB << 20
			host.Summary.Hardware.MemorySize = memoryMB << 20
		}
		if i < len(figs.HostFigures) && figs.HostFigures[i].OverallMemoryUsage != nil {
			host.Summary.QuickStats.OverallMemoryUsage = *figs.HostFigures[i].OverallMemoryUsage
		}
		if i < len(figs.HostFigures) && figs.HostFigures[i].Disconnected {
			host.Runtime.ConnectionState = types.HostSystemConnectionStateDisconnected
			if host.Summary.Runtime != nil {
				host.Summary.Runtime.ConnectionState = types.HostSystemConnectionStateDisconnected
			}
			host.Hardware.MemorySize = 0
			host.Summary.Hardware.MemorySize = 0
			host.Summary.QuickStats.OverallMemoryUsage = 0
		}
	}

	// Model VMs come out of a map: order them by moref number so names are assigned stably.
	var vms []*simulator.VirtualMachine
	for _, e := range simulator.Map.All("VirtualMachine") {
		vms = append(vms, e.(*simulator.VirtualMachine))
	}
	sort.Slice(vms, func(i, j int) bool { return morefLess(vms[i].Self.Value, vms[j].Self.Value) })
	if len(vms) < nv || (figs.Inventory == nil && len(vms) != nv) {
		log.Fatalf("the model created %d VMs, expected %d", len(vms), nv)
	}
	for i := range figs.VMs {
		if err := applyVM(vms[i], &figs.VMs[i], hostList); err != nil {
			log.Fatal(err)
		}
	}
	for _, vm := range vms[len(figs.VMs):] {
		if err := applyVM(vm, &vmFigures{Name: vm.Name}, hostList); err != nil {
			log.Fatal(err)
		}
	}

	// The paging collector replaces the stock one under the same moref.
	pcRef := simulator.Map.Get(model.ServiceContent.PropertyCollector).Reference()
	paged := &pagedCollector{}
	paged.Self = pcRef
	simulator.Map.Put(paged)

	// Serve the SDK through our own front and listener (instead of Service.NewServer) so that
	// every request can be counted and the harness endpoints live beside /sdk.
	svc := model.Service
	svc.ServeMux = http.NewServeMux()
	svc.RegisterSDK(simulator.Map)
	svc.ServeMux.HandleFunc(simulator.Map.Path+"/vimServiceVersions.xml", svc.ServiceVersions)
	svc.ServeMux.HandleFunc("/about", svc.About)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	scheme := "http"
	if *certFile != "" {
		scheme = "https"
	}
	u := &url.URL{
		Scheme: scheme,
		Host:   net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port)),
		Path:   simulator.Map.Path,
		User:   url.UserPassword(*username, *password),
	}
	svc.Listen = u // the simulator checks Login against Listen.User
	simulator.Map.SessionManager().ServiceHostName = u.Host

	fr := &front{
		sdk:       svc.ServeMux,
		sm:        simulator.Map.SessionManager(),
		taskDelay: *taskDelay,
		counts:    map[string]int{},
		sessions:  map[string]bool{},
	}
	srv := &http.Server{Handler: fr, ErrorLog: log.New(io.Discard, "", 0)}
	serveErr := make(chan error, 1)
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(ln) }()
	}

	ready := map[string]interface{}{
		"url":           (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
		"scheme":        scheme,
		"host":          addr.IP.String(),
		"port":          addr.Port,
		"hosts":         nh,
		"vms":           nv,
		"page_size":     serverPageSize,
		"setup_seconds": time.Since(started).Seconds(),
		"go":            runtime.Version(),
		"pid":           os.Getpid(),
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))

	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}

	select {
	case <-stop:
	case err := <-serveErr:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// morefLess orders "vm-12" before "vm-100".
func morefLess(a, b string) bool {
	na, ea := strconv.Atoi(trimPrefix(a))
	nb, eb := strconv.Atoi(trimPrefix(b))
	if ea == nil && eb == nil {
		return na < nb
	}
	return a < b
}

func trimPrefix(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < '0' || s[i] > '9' {
			return s[i+1:]
		}
	}
	return s
}

var _ mo.Reference = (*pagedCollector)(nil)
