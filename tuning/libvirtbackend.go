package tuning

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// DefaultLibvirtPidDir is where libvirt keeps its QEMU pid files.
const DefaultLibvirtPidDir = "/run/libvirt/qemu"

// LibvirtBackend tunes libvirt domains. Throttles go through libvirt's own
// API, so the domain XML stays true. Cache flags and qcow2 cache sizes
// cannot be changed live through libvirt: they need blockdev-reopen sent
// as QMP through libvirt, which marks the domain "tainted: custom-monitor"
// and makes the live VM differ from its XML; that is done only when
// AllowPassthrough is set, and every domain so touched is reported by
// Tainted. With persist, the change is also written into the persistent
// definition (<iotune>, <driver cache=...>, <metadata_cache>) so that it
// survives a restart of the domain.
type LibvirtBackend struct {
	v                *virt.Libvirt
	defs             domainDefs // b.v; a fake in tests
	allowPassthrough bool
	pidDir           string
	log              hclog.Logger

	mu        sync.Mutex
	reopeners map[string]*VMHandle
	tainted   map[string]bool
	throttles throttleCache
	jobEvent  func(domain, path string, state int32) // the job driver's, when there is one
}

// domainDefs reads and writes domain definitions.
type domainDefs interface {
	DomainXML(ctx context.Context, domain string, inactive bool) (string, error)
	DefineXML(ctx context.Context, doc string) error
}

// LibvirtBackendOptions configure a LibvirtBackend.
type LibvirtBackendOptions struct {
	AllowPassthrough bool
	PidDir           string // default DefaultLibvirtPidDir
	Log              hclog.Logger
}

// NewLibvirtBackend returns a backend over v.
func NewLibvirtBackend(v *virt.Libvirt, o LibvirtBackendOptions) *LibvirtBackend {
	if o.PidDir == "" {
		o.PidDir = DefaultLibvirtPidDir
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	return &LibvirtBackend{v: v, defs: v, allowPassthrough: o.AllowPassthrough, pidDir: o.PidDir, log: o.Log,
		reopeners: map[string]*VMHandle{}, tainted: map[string]bool{}}
}

// Libvirt is the connection the backend works through (for the block
// job driver, which uses libvirt's own job API).
func (b *LibvirtBackend) Libvirt() *virt.Libvirt { return b.v }

// NoteJobEvent passes a libvirt block-job event (the sampler receives
// them) on to the job driver, if one listens.
func (b *LibvirtBackend) NoteJobEvent(domain, path string, state int32) {
	b.mu.Lock()
	f := b.jobEvent
	b.mu.Unlock()
	if f != nil {
		f(domain, path, state)
	}
}

// SetJobEventSink sets the function NoteJobEvent calls.
func (b *LibvirtBackend) SetJobEventSink(f func(domain, path string, state int32)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.jobEvent = f
}

// Tainted lists the domains qtune sent QMP to through libvirt.
func (b *LibvirtBackend) Tainted() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.tainted))
	for d := range b.tainted {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Forget drops what the backend knows of a domain (it stopped; a new
// QEMU has new options).
func (b *LibvirtBackend) Forget(domain string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.reopeners, domain)
	b.throttlesChangedLocked(domain)
}

// Read implements Backend.
func (b *LibvirtBackend) Read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	kind, err := knobKindOf(k)
	if err != nil {
		return state.KnobState{}, err
	}
	if kind.LibvirtRead != nil {
		return kind.LibvirtRead(ctx, b, t)
	}
	r, qname, err := b.reopener(ctx, t)
	if err != nil {
		return state.KnobState{}, err
	}
	s, err := r.read(ctx, qname, k)
	if err != nil || kind.Defined == nil {
		return s, err
	}
	return b.defined(ctx, t, s, kind.Defined)
}

// defined adds to s what the persistent definition holds of the knob. A
// disk the definition does not have (hot-plugged) adds nothing: no
// change of it can be persisted either.
func (b *LibvirtBackend) defined(ctx context.Context, t state.Target, s state.KnobState, add func(string, state.KnobState) state.KnobState) (state.KnobState, error) {
	doc, err := b.defs.DomainXML(ctx, t.VM, true)
	if err != nil {
		return state.KnobState{}, fmt.Errorf("read the persistent definition of %s: %w", t.VM, err)
	}
	out := s
	_, err = editDiskDriver(doc, t.Disk, func(d string) string {
		out = add(d, s)
		return d
	})
	if err != nil {
		return s, nil
	}
	return out, nil
}

// Apply implements Backend.
func (b *LibvirtBackend) Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, persist bool) error {
	kind, err := knobKindOf(k)
	if err != nil {
		return err
	}
	if kind.LibvirtApply != nil {
		return kind.LibvirtApply(ctx, b, t, s, persist)
	}
	r, qname, err := b.reopener(ctx, t)
	if err != nil {
		return err
	}
	b.mu.Lock()
	first := !b.tainted[t.VM]
	b.tainted[t.VM] = true
	b.mu.Unlock()
	if first {
		b.log.Warn("sending QMP through libvirt: the domain is now tainted (custom-monitor) and its live disk settings differ from its XML",
			"vm", t.VM, "knob", string(k))
	}
	if err := r.apply(ctx, qname, k, s); err != nil {
		return err
	}
	if persist && kind.Persist != nil {
		return b.persist(ctx, t, s, kind.Persist)
	}
	return nil
}

// reopener returns the passthrough reopener of a domain and the QMP name
// (device alias) of the disk.
func (b *LibvirtBackend) reopener(ctx context.Context, t state.Target) (*VMHandle, string, error) {
	if !b.allowPassthrough {
		return nil, "", &Refusal{Code: RefusePassthrough, Reason: "changing cache mode or qcow2 cache live under libvirt needs QMP passthrough (it taints the domain); the agent config does not allow it"}
	}
	doc, err := b.v.DomainXML(ctx, t.VM, false)
	if err != nil {
		return nil, "", err
	}
	disks, err := virt.ParseDomainDisks(doc)
	if err != nil {
		return nil, "", err
	}
	qname := ""
	for _, d := range disks {
		if d.Target == t.Disk {
			qname = d.Alias
		}
	}
	if qname == "" {
		return nil, "", fmt.Errorf("domain %s has no disk %s with a device alias", t.VM, t.Disk)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.reopeners[t.VM]
	if !ok {
		r = newVMHandle(t.VM, qmp.NewBlock(b.v.Monitor(t.VM)), b.qemuPID(t.VM))
		b.reopeners[t.VM] = r
	}
	return r, qname, nil
}

// QEMUPID is the pid of a running domain's QEMU, from libvirt's pid
// file; 0 when it cannot be read.
func (b *LibvirtBackend) QEMUPID(domain string) int { return b.qemuPID(domain) }

func (b *LibvirtBackend) qemuPID(domain string) int {
	raw, err := os.ReadFile(filepath.Join(b.pidDir, domain+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid
}

// persist writes a passthrough change into the persistent definition,
// by the kind's edit of the disk's <driver> element.
func (b *LibvirtBackend) persist(ctx context.Context, t state.Target, s state.KnobState, edit func(string, state.KnobState) (string, string, error)) error {
	doc, err := b.defs.DomainXML(ctx, t.VM, true)
	if err != nil {
		return err
	}
	var editErr error
	note := ""
	out, err := editDiskDriver(doc, t.Disk, func(d string) string {
		e, n, err := edit(d, s)
		if err != nil {
			editErr = err
			return d
		}
		note = n
		return e
	})
	if err == nil {
		err = editErr
	}
	if err != nil {
		return fmt.Errorf("persist %s: %w", t, err)
	}
	if note != "" {
		b.log.Warn("persist: "+note, "vm", t.VM, "disk", t.Disk)
	}
	return b.defs.DefineXML(ctx, out)
}
