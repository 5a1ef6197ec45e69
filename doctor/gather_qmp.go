package doctor

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

// LiveOptions say how the live checks sample.
type LiveOptions struct {
	// Interval between the two samples (rates, growing error counters).
	Interval time.Duration
	// CallTimeout bounds each call to QEMU or libvirt.
	CallTimeout time.Duration
}

// pass is one sample of one VM's disks.
type pass struct {
	state  string
	disks  map[string]sample.Disk
	health map[string]qmp.DiskHealth
	host   map[string]hoststat.Image
}

// qmpVM is one plain QEMU VM's connection for the live checks.
type qmpVM struct {
	path  string
	conn  *qmp.Conn
	block *qmp.Block
	name  string
	opts  map[string]qmp.NodeOptions // -blockdev options from its command line
	l2    map[string]uint64
}

func openQMPVM(ctx context.Context, path string) (*qmpVM, error) {
	// Found, checked and named as the agent and qtune stats do, so that
	// a report names a VM the way the agent's metrics and status do.
	c, err := qmp.DialVM(ctx, path)
	if err != nil {
		return nil, err
	}
	vm := &qmpVM{path: path, conn: c, block: qmp.NewBlock(c), name: qmp.VMName(path)}
	if pid := c.PeerPID(); pid > 0 {
		if opts, err := qmp.CommandLineBlockdevs(pid); err == nil || len(opts) > 0 {
			vm.opts, vm.l2 = opts, qmp.L2CacheSizes(opts)
		}
	}
	return vm, nil
}

func (vm *qmpVM) read(ctx context.Context, hr *hoststat.Reader) (pass, error) {
	st, err := vm.block.QueryStatus(ctx)
	if err != nil {
		return pass{}, fmt.Errorf("%s: query-status: %w", vm.path, err)
	}
	disks, health, err := vm.block.SampleDisksHealth(ctx, vm.name, qmp.SampleOptions{L2CacheSize: vm.l2})
	if err != nil {
		return pass{}, fmt.Errorf("%s: %w", vm.path, err)
	}
	p := pass{state: st.Status, disks: map[string]sample.Disk{}, health: health, host: map[string]hoststat.Image{}}
	for _, d := range disks {
		p.disks[d.Name] = d
	}
	p.host = hostPass(hr, disks)
	return p, nil
}

// hostPass reads the host device under every disk's image at one instant,
// so disks on the same device share one reading.
func hostPass(hr *hoststat.Reader, disks []sample.Disk) map[string]hoststat.Image {
	now := time.Now()
	out := map[string]hoststat.Image{}
	for _, d := range disks {
		if d.Path == "" {
			continue
		}
		if img, err := hr.ForImage(d.Path, now); err == nil {
			out[d.Name] = img
		}
	}
	return out
}

// nodeOption is a string option of the node, or of the node's file child.
func (vm *qmpVM) nodeOption(node, key string, child bool) string {
	o := vm.opts[node]
	if child {
		name, _ := o["file"].(string)
		o = vm.opts[name]
	}
	s, _ := o[key].(string)
	return s
}

// LiveQMP samples the plain QEMU VMs behind the given QMP sockets twice,
// o.Interval apart, and returns every disk's live state. A socket that
// cannot be read is an error of its own; the others still count.
func LiveQMP(ctx context.Context, sockets []string, o LiveOptions) ([]LiveDisk, []error) {
	var vms []*qmpVM
	var errs []error
	for _, s := range sockets {
		cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
		vm, err := openQMPVM(cctx, s)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		defer vm.conn.Close()
		vms = append(vms, vm)
	}
	hr := hoststat.NewReader()
	failed := make([]error, len(vms))
	readAll := func() []*pass {
		into := make([]*pass, len(vms))
		for i, vm := range vms {
			cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
			p, err := vm.read(cctx, hr)
			cancel()
			if err != nil {
				failed[i] = err
				continue
			}
			into[i] = &p
		}
		return into
	}
	first := readAll()
	if err := sleep(ctx, o.Interval); err != nil {
		return nil, append(errs, err)
	}
	second := readAll()
	var out []LiveDisk
	for i, vm := range vms {
		if first[i] == nil || second[i] == nil {
			errs = append(errs, failed[i])
			continue
		}
		out = append(out, vm.combine(*first[i], *second[i])...)
	}
	return out, errs
}

func (vm *qmpVM) combine(a, b pass) []LiveDisk {
	var out []LiveDisk
	for _, name := range sortedKeys(b.disks) {
		d := b.disks[name]
		l := liveFromSample(a.disks[name], d, b.host[name])
		l.RunState = b.state
		h0, h1 := a.health[name], b.health[name]
		l.IOStatus, l.DetectZeroes = h1.IOStatus, h1.DetectZeroes
		l.CacheKnown, l.CacheWriteback = true, h1.Writeback
		l.Errors = &OpErrors{Failed: [2]uint64{h0.Failed, h1.Failed}, Invalid: [2]uint64{h0.Invalid, h1.Invalid}}
		if _, ok := a.disks[name]; !ok {
			l.Errors.Failed[0], l.Errors.Invalid[0] = h1.Failed, h1.Invalid
		}
		l.AIO = vm.nodeOption(d.Node, "aio", true)
		if vm.opts[d.Node] != nil {
			l.AIO = orDefault(l.AIO, "threads") // QEMU's default
			l.Discard = orDefault(vm.nodeOption(d.Node, "discard", false), "ignore")
		}
		out = append(out, l)
	}
	return out
}

// liveFromSample fills what a sample.Disk pair says.
func liveFromSample(a, b sample.Disk, host hoststat.Image) LiveDisk {
	l := LiveDisk{
		VM: b.VM, Disk: b.Name, Image: b.Path, Format: b.Format,
		CacheDirect: b.CacheDirect, CacheNoFlush: b.CacheNoFlush, Throttle: b.Throttle,
		VirtualSize: b.VirtualSize, Allocation: b.Allocation, L2Cache: b.L2CacheSize,
		HostDevice: host.Device, Host: host.Dev,
	}
	if host.Device == "" {
		l.Host = hoststat.Device{ReadLatencyMs: math.NaN(), WriteLatencyMs: math.NaN()}
	}
	if r, err := sample.Derive(a, b); err == nil {
		l.Rates = r
	}
	return l
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
