package tuning

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// A disk hot-plugged with blockdev-add and device_add is on no command
// line, and QEMU 7.2 reports neither its aio, its discard nor its qcow2
// cache options (query-named-block-nodes gives the plain file name and the
// cache flags only), so a reopen could silently reset them: the cache and
// L2 changes are refused with what to do, while the disk is sampled and
// throttled like any other.
func TestRealHotPluggedDisk(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	base, hot := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "hot.qcow2")
	for _, img := range []string{base, hot} {
		if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "hotplug", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: base}},
		Extra: []string{"-device", "pcie-root-port,id=rp1,chassis=1"}})
	c, err := qmp.Dial(ctx, vm.QMPPath())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	backend := NewQMPBackend()
	backend.AddVM(vm.Name, c, c.PeerPID())
	store, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e, b := NewExecutor(backend, store, Options{}), qmp.NewBlock(c)
	sampler := qmp.NewDiskSampler(b)
	if disks, _, err := sampler.Sample(ctx, "hotplug", qmp.SampleOptions{}); err != nil || len(disks) != 1 {
		t.Fatalf("before the hot-plug: %+v %v", disks, err)
	}
	for _, cmd := range []struct {
		cmd  string
		args map[string]any
	}{
		{"blockdev-add", map[string]any{"driver": "file", "filename": hot, "node-name": "hotf", "aio": "native", "cache": map[string]any{"direct": true}}},
		{"blockdev-add", map[string]any{"driver": "qcow2", "file": "hotf", "node-name": "hotq", "l2-cache-size": 1 << 20}},
		{"device_add", map[string]any{"driver": "virtio-blk-pci", "drive": "hotq", "id": "hot0", "bus": "rp1"}},
	} {
		if _, err := c.Execute(ctx, cmd.cmd, cmd.args); err != nil {
			t.Fatalf("%s: %v", cmd.cmd, err)
		}
	}
	disks, _, err := sampler.Sample(ctx, "hotplug", qmp.SampleOptions{})
	if err != nil || len(disks) != 2 || disks[1].Name != "hot0" || disks[1].Format != "qcow2" {
		t.Fatalf("the next sample after the hot-plug: %+v %v", disks, err)
	}

	thr := policy.Decision{Rule: "calm", VM: "hotplug", Disk: "hot0", Knob: policy.KnobThrottle,
		Action: policy.Action{Throttle: &sample.Throttle{IOPSWrite: 150}}}
	if out, err := e.Execute(ctx, thr); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("throttle on the hot-plugged disk: %+v %v", out, err)
	}
	for _, d := range []policy.Decision{
		{Rule: "cache", VM: "hotplug", Disk: "hot0", Knob: policy.KnobCache, Action: policy.Action{Cache: &policy.CacheSpec{Direct: false}}},
		{Rule: "l2", VM: "hotplug", Disk: "hot0", Knob: policy.KnobL2Cache, Action: policy.Action{L2Cache: &policy.L2Spec{Size: 4 << 20}}},
	} {
		out, err := e.Execute(ctx, d)
		if err == nil || out.Result == state.ResultApplied || !strings.Contains(err.Error(), "blockdev-add") || !strings.Contains(err.Error(), "restarted") {
			t.Errorf("%s on a hot-plugged disk: %+v %v", d.Knob, out, err)
		}
		t.Logf("%s refused: %v", d.Knob, err)
	}
	// Nothing about the node changed.
	nodes, err := b.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.NodeName == "hotf" && !n.Cache.Direct {
			t.Errorf("the hot-plugged file node lost cache.direct: %+v", n.Cache)
		}
	}
}
