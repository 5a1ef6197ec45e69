package qmp_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

// Integration tests against a real QEMU 7.2 (TCG).

const disk0 = "/machine/peripheral/disk0/virtio-backend"

func connect(t *testing.T, vm *lab.VM) (*qmp.Conn, *qmp.Block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, vm.QMPPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, qmp.NewBlock(c)
}

// writeRate measures the guest's write IOPS on disk0 over d from counter
// deltas.
func writeRate(t *testing.T, b *qmp.Block, d time.Duration) float64 {
	t.Helper()
	ctx := context.Background()
	first := diskNamed(t, b, "disk0")
	time.Sleep(d)
	r, err := sample.Derive(first, diskNamed(t, b, "disk0"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ctx
	return r.WriteIOPS
}

func diskNamed(t *testing.T, b *qmp.Block, name string) sample.Disk {
	t.Helper()
	disks, err := b.SampleDisks(context.Background(), "vm", qmp.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no disk %s in %+v", name, disks)
	return sample.Disk{}
}

func TestRealThrottleHoldsGuestIOPS(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := lab.WriterVMT(t, "throttle", 0)
	_, b := connect(t, vm)
	free := writeRate(t, b, 2*time.Second)
	t.Logf("unthrottled: %.0f write IOPS", free)
	const limit = 100
	if free < 3*limit {
		t.Fatalf("guest too slow (%.0f IOPS) to show a throttle of %d", free, limit)
	}
	if err := b.SetIOThrottle(ctx, qmp.DiskID{QOMPath: disk0}, qmp.IOThrottle{IOPSWrite: limit}); err != nil {
		t.Fatal(err)
	}
	if got := diskNamed(t, b, "disk0").Throttle; got.IOPSWrite != limit {
		t.Fatalf("throttle read back as %+v", got)
	}
	time.Sleep(time.Second) // let the queue drain into the new limit
	held := writeRate(t, b, 3*time.Second)
	t.Logf("throttled at %d: %.0f write IOPS", limit, held)
	if held < limit*0.9 || held > limit*1.1 {
		t.Errorf("throttled rate %.0f IOPS, want %d ±10%%", held, limit)
	}
	if err := b.SetIOThrottle(ctx, qmp.DiskID{QOMPath: disk0}, qmp.IOThrottle{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	back := writeRate(t, b, 2*time.Second)
	t.Logf("after clearing: %.0f write IOPS", back)
	if back < free*0.5 {
		t.Errorf("rate after clearing the throttle %.0f, want near the unthrottled %.0f", back, free)
	}
}

func allEqual(v []bool, want bool) bool {
	for _, x := range v {
		if x != want {
			return false
		}
	}
	return true
}

func TestRealReopenKeepsEveryOtherOption(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	chain, err := lab.Chain(ctx, t.TempDir(), 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "reopen", Paused: true, Disks: []lab.Disk{
		{ID: "disk0", Image: chain[0], CacheDirect: true, AIO: "threads", Discard: "unmap", L2CacheSize: 256 << 10},
	}})
	_, b := connect(t, vm)
	opts, err := qmp.CommandLineBlockdevs(vm.PID())
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 6 {
		t.Fatalf("read %d -blockdev nodes from /proc/%d/cmdline, want 6", len(opts), vm.PID())
	}
	before, err := b.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !allEqual(lab.ODirectT(t, vm.PID(), chain[0]), true) {
		t.Fatal("image not opened O_DIRECT at start")
	}

	// qcow2 L2 cache on the format node: nothing observable may change.
	fmtOpts, err := qmp.ReopenOptions(opts, "disk0-fmt", map[string]any{"l2-cache-size": 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.BlockdevReopen(ctx, []map[string]any{fmtOpts}); err != nil {
		t.Fatal(err)
	}
	after, _ := b.QueryNamedBlockNodes(ctx, true)
	if d := qmp.DiffNodes(before, after); len(d) != 0 {
		t.Errorf("l2-cache-size reopen changed other things:\n%s", strings.Join(d, "\n"))
	}

	// cache.direct off on the file node, then on again.
	for _, direct := range []bool{false, true} {
		fileOpts, err := qmp.ReopenOptions(opts, "disk0-file", map[string]any{"cache.direct": direct})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.BlockdevReopen(ctx, []map[string]any{fileOpts}); err != nil {
			t.Fatal(err)
		}
		now, _ := b.QueryNamedBlockNodes(ctx, true)
		var allow []string
		if !direct {
			allow = []string{"disk0-file.cache.direct"}
		}
		if !direct && len(qmp.DiffNodes(before, now)) == 0 {
			t.Error("DiffNodes does not see the cache.direct change it is meant to allow")
		}
		if d := qmp.DiffNodes(before, now, allow...); len(d) != 0 {
			t.Errorf("cache.direct=%v changed other things:\n%s", direct, strings.Join(d, "\n"))
		}
		if got := lab.ODirectT(t, vm.PID(), chain[0]); !allEqual(got, direct) {
			t.Errorf("cache.direct=%v: O_DIRECT on QEMU's fds = %v", direct, got)
		}
	}
	// The chain is still whole.
	info, _ := b.QueryBlock(ctx)
	if info[0].Inserted.BackingFileDepth != 2 {
		t.Errorf("backing depth after reopens = %d, want 2", info[0].Inserted.BackingFileDepth)
	}
}

// waitJob waits for a job event of the given name for job id.
func waitJob(t *testing.T, sub *qmp.Subscription, id, name string) qmp.JobEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-sub.C():
			je, ok := qmp.DecodeJobEvent(ev)
			if !ok || je.ID != id {
				continue
			}
			if je.Name == name {
				return je
			}
			if je.Name == "BLOCK_JOB_COMPLETED" || je.Name == "BLOCK_JOB_CANCELLED" {
				t.Fatalf("job %s ended with %s (error %q) while waiting for %s", id, je.Name, je.Error, name)
			}
		case <-timeout:
			t.Fatalf("no %s for job %s", name, id)
		}
	}
}

func TestRealStreamFlattensChain(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	chain, err := lab.Chain(ctx, dir, 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range chain {
		if err := lab.WritePattern(ctx, l, "qcow2", byte(0x10+i), uint64(i)<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	reference := filepath.Join(dir, "reference.raw")
	if out, err := exec(ctx, "qemu-img", "convert", "-O", "raw", chain[0], reference); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "stream", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: chain[0]}}})
	c, b := connect(t, vm)
	sub := c.Subscribe(64)
	defer sub.Close()
	if err := b.BlockStream(ctx, qmp.StreamArgs{JobID: "flatten", Device: "disk0-fmt"}); err != nil {
		t.Fatal(err)
	}
	if je := waitJob(t, sub, "flatten", "BLOCK_JOB_COMPLETED"); je.Error != "" {
		t.Fatalf("stream failed: %s", je.Error)
	}
	info, _ := b.QueryBlock(ctx)
	if d := info[0].Inserted.BackingFileDepth; d != 0 {
		t.Fatalf("backing depth after stream = %d, want 0", d)
	}
	if jobs, _ := b.QueryJobs(ctx); len(jobs) != 0 {
		t.Errorf("jobs left: %+v", jobs)
	}
	vm.Stop()
	same, err := lab.Compare(ctx, chain[0], reference)
	if err != nil || !same {
		t.Fatalf("flattened image differs from the chain's content (%v)", err)
	}
	layers, _ := lab.Info(ctx, chain[0])
	if len(layers) != 1 {
		t.Errorf("image still has %d layers", len(layers))
	}
}

func TestRealMirrorPivots(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0xab, 3<<20, 2<<20); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst.qcow2")
	if err := lab.CreateImage(ctx, dst, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "mirror", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}})
	c, b := connect(t, vm)
	sub := c.Subscribe(64)
	defer sub.Close()
	if err := b.BlockdevAdd(ctx, map[string]any{"driver": "file", "filename": dst, "node-name": "dst-file"}); err != nil {
		t.Fatal(err)
	}
	if err := b.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "file": "dst-file", "node-name": "dst-fmt"}); err != nil {
		t.Fatal(err)
	}
	if err := b.BlockdevMirror(ctx, qmp.MirrorArgs{JobID: "move", Device: "disk0-fmt", Target: "dst-fmt", Sync: "full"}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, sub, "move", "BLOCK_JOB_READY")
	if err := b.BlockJobComplete(ctx, "move"); err != nil {
		t.Fatal(err)
	}
	if je := waitJob(t, sub, "move", "BLOCK_JOB_COMPLETED"); je.Error != "" {
		t.Fatalf("mirror failed: %s", je.Error)
	}
	info, _ := b.QueryBlock(ctx)
	if n := info[0].Inserted.NodeName; n != "dst-fmt" || info[0].Inserted.Image.Filename != dst {
		t.Fatalf("after pivot the disk is on %s (%s), want dst-fmt", n, info[0].Inserted.Image.Filename)
	}
	vm.Stop()
	same, err := lab.Compare(ctx, src, dst)
	if err != nil || !same {
		t.Fatalf("qemu-img compare: identical=%v err=%v", same, err)
	}
}
