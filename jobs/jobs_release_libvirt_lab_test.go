package jobs

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Under libvirt, DomainBlockJobAbort(PIVOT) has libvirt delete the old
// source's nodes itself: QEMU lets go of the source with no help from
// qtune, which only looks (/proc/<pid>/fd) and says so.
func TestRealLibvirtMirrorLetsGoOfSource(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx := context.Background()
	dir := lab.TmpfsT(t, "256m") // before the daemon: its mount namespace copies the host's
	fast := t.TempDir()
	var quiet atomic.Bool
	lj := startLibvirtJobs(t, Options{MirrorDirs: []string{fast}, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	d, l := lj.d, lj.labJobs

	src := filepath.Join(dir, "lvletgo.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	dom := d.DefineDomainT(t, lab.DomainSpec{Name: "lvletgo", Disks: []lab.DomainDisk{{Target: "vda", Image: src}},
		Workload: lab.Stamper(loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 200, Duration: 3 * time.Second},
			loadgen.Phase{Pattern: loadgen.Idle, Duration: 20 * time.Second}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})})
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := dom.WaitSerial(wctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	j := l.pivotedCopy(t, wctx, dom, &quiet, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "lvletgo", Disk: "vda"}, TargetDir: fast, Speed: 8 << 20}, time.Minute)
	if len(j.Kept) != 1 || j.Kept[0].Path != src {
		t.Fatalf("kept %+v, want the source %s", j.Kept, src)
	}
	held := filepath.Join(t.TempDir(), "held.qcow2")
	if out, err := exec.Command("cp", "--sparse=always", src, held).CombinedOutput(); err != nil {
		t.Fatalf("copy of the source: %v %s", err, out)
	}
	checkStamps(t, held)
	pid := lj.b.QEMUPID("lvletgo")
	if pid <= 0 {
		t.Fatal("no pid for the domain's QEMU")
	}
	provesReleased(t, pid, j.Kept, dir)
	if err := dom.WaitSerial(wctx, "qtune-verify"); err != nil {
		t.Fatal(err)
	}
	d.Virsh(ctx, "destroy", "lvletgo")
	if same, err := lab.Compare(ctx, held, j.Dest); err != nil || !same {
		t.Fatalf("the source as held at the pivot and the copy differ: %v %v", same, err)
	}
}
