package tuning

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// ErrUnknownVM is returned for a VM the backend has not been given.
var ErrUnknownVM = errors.New("tuning: unknown VM")

// ErrVMGone means the VM (its QEMU) is no longer there: its block jobs
// died with it.
var ErrVMGone = errors.New("tuning: VM is gone")

// QMPBackend tunes plain QEMU VMs over their QMP monitors: throttles with
// block_set_io_throttle, cache flags and qcow2 cache sizes with
// blockdev-reopen, rebuilt from the -blockdev options on QEMU's command
// line so that nothing else is reset.
type QMPBackend struct {
	mu      sync.Mutex
	vms     map[string]*VMHandle
	removed map[string]bool // VMs whose socket went away: their jobs are gone
	onJob   func()          // called on every job event
}

// NewQMPBackend returns a backend with no VMs.
func NewQMPBackend() *QMPBackend {
	return &QMPBackend{vms: map[string]*VMHandle{}, removed: map[string]bool{}}
}

// AddVM registers a VM: its monitor, and the pid of its QEMU for the
// -blockdev options (0 when unknown: reopen is then refused).
func (b *QMPBackend) AddVM(name string, ex qmp.Executor, pid int) {
	r := newVMHandle(name, qmp.NewBlock(ex), pid)
	if c, ok := ex.(interface{ Done() <-chan struct{} }); ok {
		r.done = c.Done()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vms[name] = r
	delete(b.removed, name)
	if m, ok := ex.(interface{ Subscribe(int) *qmp.Subscription }); ok && b.onJob != nil {
		go forwardJobEvents(m.Subscribe(32), b.onJob)
	}
}

// VMs names the VMs the backend has, sorted.
func (b *QMPBackend) VMs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.vms))
	for n := range b.vms {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// RemoveVM forgets a VM.
func (b *QMPBackend) RemoveVM(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.vms, name)
	b.removed[name] = true
}

func (b *QMPBackend) vm(name string) (*VMHandle, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.vms[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrUnknownVM)
	}
	return r, nil
}

// VM is the handle of a VM for its block jobs: a VM whose monitor
// closed or whose socket went away is gone (ErrVMGone), one not
// connected yet is not (ErrUnknownVM: after a restart the jobs are
// looked at before the runners have connected).
func (b *QMPBackend) VM(name string) (*VMHandle, error) {
	b.mu.Lock()
	r, ok := b.vms[name]
	removed := b.removed[name]
	b.mu.Unlock()
	if !ok {
		if removed {
			return nil, fmt.Errorf("%s: socket removed: %w", name, ErrVMGone)
		}
		return nil, fmt.Errorf("%s: not connected (yet): %w", name, ErrUnknownVM)
	}
	if r.done != nil {
		select {
		case <-r.done:
			return nil, fmt.Errorf("%s: monitor connection closed: %w", name, ErrVMGone)
		default:
		}
	}
	return r, nil
}

// SetJobNotify sets the function called on every job event of a VM added
// afterwards (the job manager's Notify).
func (b *QMPBackend) SetJobNotify(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onJob = f
}

func forwardJobEvents(sub *qmp.Subscription, notify func()) {
	for ev := range sub.C() {
		if _, ok := qmp.DecodeJobEvent(ev); ok {
			notify()
		}
	}
}

// Read implements Backend.
func (b *QMPBackend) Read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	r, err := b.vm(t.VM)
	if err != nil {
		return state.KnobState{}, err
	}
	return r.read(ctx, t.Disk, k)
}

// Apply implements Backend. Plain QEMU has no persistent definition, so
// persist is ignored.
func (b *QMPBackend) Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, _ bool) error {
	r, err := b.vm(t.VM)
	if err != nil {
		return err
	}
	return r.apply(ctx, t.Disk, k, s)
}

// VMHandle tunes one VM through a typed block API. It keeps the nodes'
// option sets up to date with what it changed, because blockdev-reopen
// must always be given them whole. The knob kinds and the block job
// driver work on a VM through it.
type VMHandle struct {
	vm    string
	block *qmp.Block
	pid   int

	done <-chan struct{} // closed when the monitor connection ends

	mu      sync.Mutex
	opts    map[string]qmp.NodeOptions
	optsErr error
	caps    *qmp.Capabilities // read once per connection
}

// ErrNoReopen is returned by Reopen on a QEMU whose schema has no
// blockdev-reopen of any name.
var ErrNoReopen = errors.New("no blockdev-reopen")

func newVMHandle(vm string, block *qmp.Block, pid int) *VMHandle {
	r := &VMHandle{vm: vm, block: block, pid: pid}
	if pid > 0 {
		r.opts, r.optsErr = qmp.CommandLineBlockdevs(pid)
	} else {
		r.optsErr = fmt.Errorf("QEMU's pid is unknown, so are its -blockdev options: %w", qmp.ErrOptionsUnknown)
	}
	return r
}

// Name is the VM's name.
func (r *VMHandle) Name() string { return r.vm }

// Block is the VM's typed QMP block API.
func (r *VMHandle) Block() *qmp.Block { return r.block }

// PID is the VM's QEMU process id, 0 when unknown.
func (r *VMHandle) PID() int { return r.pid }

// Capabilities is what the VM's QEMU can do, from its QMP schema, read
// once per connection; the handle's Block then sends the commands this
// QEMU has (its reopen). Under libvirt this is passthrough, which taints
// the domain: it is read only where passthrough is in use already.
func (r *VMHandle) Capabilities(ctx context.Context) (qmp.Capabilities, error) {
	r.mu.Lock()
	c := r.caps
	r.mu.Unlock()
	if c != nil {
		return *c, nil
	}
	got, err := r.block.QueryCapabilities(ctx)
	if err != nil {
		return qmp.Capabilities{}, fmt.Errorf("capabilities of %s: %w", r.vm, err)
	}
	r.mu.Lock()
	r.caps = &got
	r.mu.Unlock()
	return got, nil
}

// KnownCapabilities is what Capabilities found, if it was read.
func (r *VMHandle) KnownCapabilities() (qmp.Capabilities, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.caps == nil {
		return qmp.Capabilities{}, false
	}
	return *r.caps, true
}

// Disk finds a disk by name (device id, or the QMP name mapped by the
// caller).
func (r *VMHandle) Disk(ctx context.Context, name string) (sample.Disk, error) {
	r.mu.Lock()
	l2 := qmp.L2CacheSizes(r.opts)
	r.mu.Unlock()
	disks, err := r.block.SampleDisks(ctx, r.vm, qmp.SampleOptions{L2CacheSize: l2})
	if err != nil {
		return sample.Disk{}, err
	}
	for _, d := range disks {
		if d.Name == name {
			return d, nil
		}
	}
	return sample.Disk{}, fmt.Errorf("%s has no disk %q", r.vm, name)
}

func (r *VMHandle) read(ctx context.Context, name string, k policy.Knob) (state.KnobState, error) {
	kind, err := knobKindOf(k)
	if err != nil {
		return state.KnobState{}, err
	}
	d, err := r.Disk(ctx, name)
	if err != nil {
		return state.KnobState{}, err
	}
	return kind.QMPRead(ctx, r, d)
}

// NodeOption is a numeric option of a node as QEMU holds it (command
// line, then qtune's reopens).
func (r *VMHandle) NodeOption(node, key string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return qmp.OptionUint(r.opts[node], key)
}

// FileNode is the protocol node under a disk's format node, named in the
// format node's options.
func (r *VMHandle) FileNode(d sample.Disk) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if qmp.IsAutoNodeName(d.Node) {
		return "", fmt.Errorf("%s/%s: node %s: %w (%s)", r.vm, d.Name, d.Node, qmp.ErrAutoNode, qmp.AutoNodeAdvice)
	}
	o, ok := r.opts[d.Node]
	if !ok {
		if r.optsErr != nil {
			return "", fmt.Errorf("%s/%s: %w", r.vm, d.Name, r.optsErr)
		}
		return "", fmt.Errorf("%s/%s: no options for node %s (%s): %w", r.vm, d.Name, d.Node, qmp.NotOnCommandLineAdvice, qmp.ErrOptionsUnknown)
	}
	f, ok := o["file"].(string)
	if !ok {
		return "", fmt.Errorf("%s/%s: node %s has an inline file child: %w", r.vm, d.Name, d.Node, qmp.ErrOptionsUnknown)
	}
	return f, nil
}

func (r *VMHandle) apply(ctx context.Context, name string, k policy.Knob, s state.KnobState) error {
	kind, err := knobKindOf(k)
	if err != nil {
		return err
	}
	d, err := r.Disk(ctx, name)
	if err != nil {
		return err
	}
	return kind.QMPApply(ctx, r, d, s)
}

func errNothingToApply(k policy.Knob) error { return fmt.Errorf("knob %s: nothing to apply", k) }

// legacyDevice is the -drive name when the disk has no QOM path.
func legacyDevice(d sample.Disk) string {
	if d.QOMPath == "" {
		return d.Name
	}
	return ""
}

// Reopen reopens node with changes and checks that the node graph did not
// change anywhere else; if it did, it reopens with the old options.
func (r *VMHandle) Reopen(ctx context.Context, node string, changes map[string]any, allow ...string) error {
	r.mu.Lock()
	opts, caps := r.opts, r.caps
	r.mu.Unlock()
	if caps != nil && caps.Reopen == "" {
		return fmt.Errorf("reopen %s: this QEMU has no blockdev-reopen (its QMP schema lacks it): %w", node, ErrNoReopen)
	}
	entry, err := qmp.ReopenOptions(opts, node, changes)
	if err != nil {
		return err
	}
	before, err := r.block.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return err
	}
	if err := r.block.BlockdevReopen(ctx, []map[string]any{entry}); err != nil {
		return fmt.Errorf("reopen %s: %w", node, err)
	}
	after, err := r.block.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return err
	}
	if diffs := qmp.DiffNodes(before, after, allow...); len(diffs) > 0 {
		old, _ := qmp.ReopenOptions(opts, node, nil)
		rollback := r.block.BlockdevReopen(ctx, []map[string]any{old})
		return fmt.Errorf("reopen %s changed more than asked (%s); rolled back (%v)", node, strings.Join(diffs, "; "), rollback)
	}
	r.mu.Lock()
	r.opts[node] = entry
	r.mu.Unlock()
	return nil
}
