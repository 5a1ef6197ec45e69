package tuning

import (
	"context"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// labExecutor connects to a lab VM and returns an executor on it.
func labExecutor(t *testing.T, vm *lab.VM, o Options) (*Executor, *qmp.Block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, vm.QMPPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b := NewQMPBackend()
	b.AddVM(vm.Name, c, c.PeerPID())
	s, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return NewExecutor(b, s, o), qmp.NewBlock(c)
}

func guestWriteIOPS(t *testing.T, b *qmp.Block, vm string, d time.Duration) float64 {
	t.Helper()
	read := func() sample.Disk {
		disks, err := b.SampleDisks(context.Background(), vm, qmp.SampleOptions{})
		if err != nil || len(disks) == 0 {
			t.Fatalf("sample: %v", err)
		}
		return disks[0]
	}
	a := read()
	time.Sleep(d)
	r, err := sample.Derive(a, read())
	if err != nil {
		t.Fatal(err)
	}
	return r.WriteIOPS
}

func TestRealThrottleThroughExecutor(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := lab.WriterVMT(t, "noisy", 0)
	e, b := labExecutor(t, vm, Options{})
	free := guestWriteIOPS(t, b, "noisy", 2*time.Second)
	const limit = 150
	d := policy.Decision{Rule: "calm", VM: "noisy", Disk: "disk0", Knob: policy.KnobThrottle, Mode: policy.ModeEnforce,
		Action: policy.Action{Throttle: &sample.Throttle{IOPSWrite: limit}}}
	if out, err := e.Execute(ctx, d); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("%+v %v", out, err)
	}
	time.Sleep(time.Second)
	held := guestWriteIOPS(t, b, "noisy", 3*time.Second)
	t.Logf("unthrottled %.0f, throttled at %d: %.0f write IOPS", free, limit, held)
	if held < limit*0.9 || held > limit*1.1 {
		t.Errorf("throttled %.0f, want %d ±10%%", held, limit)
	}
	d.Revert, d.Action = true, policy.Action{}
	if out, err := e.Execute(ctx, d); err != nil || out.Result != state.ResultReverted {
		t.Fatalf("revert %+v %v", out, err)
	}
	time.Sleep(500 * time.Millisecond)
	back := guestWriteIOPS(t, b, "noisy", 2*time.Second)
	t.Logf("after revert: %.0f write IOPS", back)
	if back < free*0.5 || back < 3*limit {
		t.Errorf("after revert %.0f, unthrottled was %.0f", back, free)
	}
}

func TestRealReopenThroughExecutor(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	chain, err := lab.Chain(ctx, t.TempDir(), 2, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "reopen", Paused: true, Disks: []lab.Disk{
		{ID: "disk0", Image: chain[0], CacheDirect: true, Discard: "unmap"}}})
	e, b := labExecutor(t, vm, Options{Limits: Limits{L2Min: 64 << 10}})
	before, _ := b.QueryNamedBlockNodes(ctx, true)

	t.Run("l2 cache on a 2-deep chain", func(t *testing.T) {
		d := policy.Decision{Rule: "l2", VM: "reopen", Disk: "disk0", Knob: policy.KnobL2Cache,
			Action: policy.Action{L2Cache: &policy.L2Spec{Auto: true}}}
		out, err := e.Execute(ctx, d)
		// 1 GiB at 64 KiB clusters: 128 KiB of L2 covers it; QEMU's default
		// already does, so auto sizing is a no-op...
		if err != nil || out.Result != state.ResultNoOp {
			t.Fatalf("%+v %v", out, err)
		}
		// ...while an explicit size is applied by reopen.
		d.Action.L2Cache = &policy.L2Spec{Size: 4 << 20}
		out, err = e.Execute(ctx, d)
		if err != nil || out.Result != state.ResultApplied || out.After.L2().Size != 4<<20 {
			t.Fatalf("%+v %v", out, err)
		}
		after, _ := b.QueryNamedBlockNodes(ctx, true)
		if diffs := qmp.DiffNodes(before, after); len(diffs) != 0 {
			t.Errorf("the reopen changed the node graph: %v", diffs)
		}
		info, _ := b.QueryBlock(ctx)
		if info[0].Inserted.BackingFileDepth != 2 {
			t.Errorf("backing chain depth %d after reopen", info[0].Inserted.BackingFileDepth)
		}
		d.Revert, d.Action = true, policy.Action{}
		if out, err := e.Execute(ctx, d); err != nil || out.Result != state.ResultReverted || out.After.L2().Size != 128<<10 {
			t.Fatalf("revert %+v %v", out, err)
		}
	})

	t.Run("cache.direct off and back", func(t *testing.T) {
		d := policy.Decision{Rule: "cache", VM: "reopen", Disk: "disk0", Knob: policy.KnobCache,
			Action: policy.Action{Cache: &policy.CacheSpec{Direct: false}}}
		if out, err := e.Execute(ctx, d); err != nil || out.Result != state.ResultApplied {
			t.Fatalf("%+v %v", out, err)
		}
		for _, direct := range lab.ODirectT(t, vm.PID(), chain[0]) {
			if direct {
				t.Fatal("image still open with O_DIRECT after cache.direct=off")
			}
		}
		d.Revert, d.Action = true, policy.Action{}
		if out, err := e.Execute(ctx, d); err != nil || out.Result != state.ResultReverted {
			t.Fatalf("revert %+v %v", out, err)
		}
		flags := lab.ODirectT(t, vm.PID(), chain[0])
		if len(flags) == 0 {
			t.Fatal("no fd on the image")
		}
		for _, direct := range flags {
			if !direct {
				t.Fatal("O_DIRECT not back after the revert")
			}
		}
		after, _ := b.QueryNamedBlockNodes(ctx, true)
		if diffs := qmp.DiffNodes(before, after); len(diffs) != 0 {
			t.Errorf("node graph differs after flip and revert: %v", diffs)
		}
	})
}
