package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// A finished job lets go of the images it took the disk off: QEMU holds
// no file descriptor on them, they are intact, and deleting them frees
// their space at once (on a tmpfs of the test's own, where an image
// still open would keep its space until the VM stops).

// copyOffTmpfs runs a copy of a disk whose image lies on a tmpfs while the
// guest writes stamped blocks, pivots once the guest is quiet, and returns
// the job with a byte copy of the source as it was at the pivot.
func copyOffTmpfs(t *testing.T, name string, req func(dir string) Request, cluster uint64) (*labJobs, *state.Job, string) {
	t.Helper()
	src := filepath.Join(lab.TmpfsT(t, "256m"), name+".qcow2")
	ctx := context.Background()
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{ClusterSize: cluster}); err != nil {
		t.Fatal(err)
	}
	vm := stampVM(t, name, src, loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 300, Duration: 4 * time.Second},
		loadgen.Phase{Pattern: loadgen.Idle, Duration: 6 * time.Second}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	var quiet atomic.Bool
	fast := t.TempDir()
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{fast}, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	p, err := l.m.Plan(ctx, req(fast), "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	if j := l.waitState(t, p.Job.ID, state.JobReady, time.Minute); j.State != state.JobReady {
		t.Fatalf("copy ended %s before ready: %s", j.State, j.Error)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "phase=1"); err != nil {
		t.Fatal(err)
	}
	quiet.Store(true)
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone || !j.Pivoted {
		t.Fatalf("copy ended %s: %s", j.State, j.Error)
	}
	if len(j.Kept) != 1 || j.Kept[0].Path != src {
		t.Fatalf("kept %+v, want the source %s", j.Kept, src)
	}
	held := filepath.Join(t.TempDir(), "held.qcow2")
	if out, err := exec.Command("cp", "--sparse=always", src, held).CombinedOutput(); err != nil {
		t.Fatalf("copy of the source: %v %s", err, out)
	}
	return l, j, held
}

// provesReleased checks that QEMU let go of every kept image, that each
// is intact, and that deleting them frees their space on dir's filesystem.
func provesReleased(t *testing.T, pid int, kept []state.Kept, dir string) {
	t.Helper()
	if len(kept) == 0 {
		t.Fatal("nothing kept")
	}
	var bytes uint64
	for _, k := range kept {
		open, err := holdsOpen(pid, k.Path)
		if err != nil || open || k.Open {
			t.Fatalf("%s: QEMU (pid %d) holds it open=%v (recorded %v) %v", k.Path, pid, open, k.Open, err)
		}
		// Without -U: an image QEMU still held would be locked.
		if out := qemuImgOut(t, "check", k.Path); !strings.Contains(out, "No errors were found") {
			t.Fatalf("qemu-img check %s:\n%s", k.Path, out)
		}
		if k.Bytes == 0 {
			t.Fatalf("%s: no size recorded", k.Path)
		}
		bytes += k.Bytes
	}
	before, err := hoststat.StatFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kept {
		if err := os.Remove(k.Path); err != nil {
			t.Fatal(err)
		}
	}
	after, err := hoststat.StatFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deleting %d kept images (%d bytes) freed %d bytes of %s", len(kept), bytes, int64(after.Free)-int64(before.Free), dir)
	if after.Free < before.Free+bytes*9/10 {
		t.Fatalf("deleting the kept images freed %d bytes, they took %d", int64(after.Free)-int64(before.Free), bytes)
	}
}

func TestRealJobMirrorLetsGoOfSource(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	l, j, held := copyOffTmpfs(t, "letgo", func(dir string) Request {
		return Request{Kind: policy.KnobMirror, Target: state.Target{VM: "letgo", Disk: "disk0"}, TargetDir: dir, Speed: 8 << 20}
	}, 0)
	checkStamps(t, held)
	provesReleased(t, l.vm.PID(), j.Kept, filepath.Dir(j.Source))
	waitVerified(t, l.vm) // the guest reads its data back, through the copy only
	l.vm.Stop()
	if same, err := lab.Compare(context.Background(), held, j.Dest); err != nil || !same {
		t.Fatalf("the source as held at the pivot and the copy differ: %v %v", same, err)
	}
}

func TestRealJobConvertLetsGoOfSource(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	l, j, held := copyOffTmpfs(t, "letgoconv", func(string) Request {
		return Request{Kind: policy.KnobConvert, Target: state.Target{VM: "letgoconv", Disk: "disk0"}, Layout: policy.Layout{ClusterSize: 64 << 10}, Speed: 8 << 20}
	}, 4096)
	provesReleased(t, l.vm.PID(), j.Kept, filepath.Dir(j.Source))
	waitVerified(t, l.vm)
	l.vm.Stop()
	if same, err := lab.Compare(context.Background(), held, j.Dest); err != nil || !same {
		t.Fatalf("the source as held at the pivot and the copy differ: %v %v", same, err)
	}
}

func TestRealJobStreamLetsGoOfBackingFiles(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir := lab.TmpfsT(t, "256m")
	ctx := context.Background()
	chain, err := lab.Chain(ctx, dir, 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range chain {
		if err := lab.WritePattern(ctx, img, "qcow2", byte(0x20+i), uint64(i)<<20, 4<<20); err != nil {
			t.Fatal(err)
		}
	}
	vm := stampVM(t, "letgostream", chain[0], loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 200, Duration: 3 * time.Second},
		loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	l := startLabJobs(t, vm, Options{})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobStream, Target: state.Target{VM: "letgostream", Disk: "disk0"}, Speed: 8 << 20}, "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone {
		t.Fatalf("stream %s: %s", j.State, j.Error)
	}
	if len(j.Kept) != 2 || j.Kept[0].Path != chain[1] || j.Kept[1].Path != chain[2] {
		t.Fatalf("kept %+v, want the backing files %v", j.Kept, chain[1:])
	}
	nodes, err := l.block.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.File != chain[0] {
			t.Errorf("node %s (%s) left after the stream", n.NodeName, n.File)
		}
	}
	provesReleased(t, vm.PID(), j.Kept, dir)
	waitVerified(t, vm)
}
