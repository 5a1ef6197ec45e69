package tuning

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
)

// ErrUnknownVM is returned for a VM the backend has not been given.
var ErrUnknownVM = errors.New("tuning: unknown VM")

// QMPBackend tunes plain QEMU VMs over their QMP monitors: throttles with
// block_set_io_throttle, cache flags and qcow2 cache sizes with
// blockdev-reopen, rebuilt from the -blockdev options on QEMU's command
// line so that nothing else is reset.
type QMPBackend struct {
	mu      sync.Mutex
	vms     map[string]*reopener
	removed map[string]bool // VMs whose socket went away: their jobs are gone
	onJob   func()          // called on every job event
}

// NewQMPBackend returns a backend with no VMs.
func NewQMPBackend() *QMPBackend {
	return &QMPBackend{vms: map[string]*reopener{}, removed: map[string]bool{}}
}

// AddVM registers a VM: its monitor, and the pid of its QEMU for the
// -blockdev options (0 when unknown: reopen is then refused).
func (b *QMPBackend) AddVM(name string, ex qmp.Executor, pid int) {
	r := newReopener(name, qmp.NewBlock(ex), pid)
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

// RemoveVM forgets a VM.
func (b *QMPBackend) RemoveVM(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.vms, name)
	b.removed[name] = true
}

func (b *QMPBackend) vm(name string) (*reopener, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.vms[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrUnknownVM)
	}
	return r, nil
}

// Read implements Backend.
func (b *QMPBackend) Read(ctx context.Context, t Target, k policy.Knob) (KnobState, error) {
	r, err := b.vm(t.VM)
	if err != nil {
		return KnobState{}, err
	}
	return r.read(ctx, t.Disk, k)
}

// Apply implements Backend. Plain QEMU has no persistent definition, so
// persist is ignored.
func (b *QMPBackend) Apply(ctx context.Context, t Target, k policy.Knob, s KnobState, _ bool) error {
	r, err := b.vm(t.VM)
	if err != nil {
		return err
	}
	return r.apply(ctx, t.Disk, k, s)
}

// reopener tunes one VM through a typed block API. It keeps the nodes'
// option sets up to date with what it changed, because blockdev-reopen
// must always be given them whole.
type reopener struct {
	vm    string
	block *qmp.Block
	pid   int

	done <-chan struct{} // closed when the monitor connection ends

	mu      sync.Mutex
	opts    map[string]qmp.NodeOptions
	optsErr error
}

func newReopener(vm string, block *qmp.Block, pid int) *reopener {
	r := &reopener{vm: vm, block: block, pid: pid}
	if pid > 0 {
		r.opts, r.optsErr = qmp.CommandLineBlockdevs(pid)
	} else {
		r.optsErr = fmt.Errorf("QEMU's pid is unknown, so are its -blockdev options: %w", qmp.ErrOptionsUnknown)
	}
	return r
}

// disk finds a disk by name (device id, or the QMP name mapped by the
// caller).
func (r *reopener) disk(ctx context.Context, name string) (sample.Disk, error) {
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

func (r *reopener) read(ctx context.Context, name string, k policy.Knob) (KnobState, error) {
	kind, err := knobKindOf(k)
	if err != nil {
		return KnobState{}, err
	}
	d, err := r.disk(ctx, name)
	if err != nil {
		return KnobState{}, err
	}
	return kind.qmpRead(ctx, r, d)
}

// nodeOption is a numeric option of a node as QEMU holds it (command
// line, then qtune's reopens).
func (r *reopener) nodeOption(node, key string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return qmp.OptionUint(r.opts[node], key)
}

// fileNode is the protocol node under a disk's format node, named in the
// format node's options.
func (r *reopener) fileNode(d sample.Disk) (string, error) {
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

func (r *reopener) apply(ctx context.Context, name string, k policy.Knob, s KnobState) error {
	kind, err := knobKindOf(k)
	if err != nil {
		return err
	}
	d, err := r.disk(ctx, name)
	if err != nil {
		return err
	}
	return kind.qmpApply(ctx, r, d, s)
}

func errNothingToApply(k policy.Knob) error { return fmt.Errorf("knob %s: nothing to apply", k) }

// legacyDevice is the -drive name when the disk has no QOM path.
func legacyDevice(d sample.Disk) string {
	if d.QOMPath == "" {
		return d.Name
	}
	return ""
}

// reopen reopens node with changes and checks that the node graph did not
// change anywhere else; if it did, it reopens with the old options.
func (r *reopener) reopen(ctx context.Context, node string, changes map[string]any, allow ...string) error {
	r.mu.Lock()
	opts := r.opts
	r.mu.Unlock()
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
