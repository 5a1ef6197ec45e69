package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Against a real QEMU: a rule reading a p99 metric turns histograms on
// (config unset) for the disk that had none, through the executor and
// its state store, a reload without it turns them off again, and a
// histogram another client set on the other disk keeps its boundaries
// throughout; with histograms { enabled = false } none is set.
func TestHistogramsFollowRulesOnQEMU(t *testing.T) {
	lab.NeedQEMU(t)
	dir := t.TempDir()
	var disks []lab.Disk
	for _, id := range []string{"disk0", "disk1"} {
		img := filepath.Join(dir, id+".qcow2")
		qemuImg(t, "create", "-q", "-f", "qcow2", img, "16M")
		disks = append(disks, lab.Disk{ID: id, Image: img})
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "hist", Paused: true, Disks: disks})
	socks := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(socks, "hist.sock")); err != nil {
		t.Fatal(err)
	}
	theirs := setForeignHistogram(t, vm.QMPPath(), "disk1")

	run := func(enabled *bool, rules ...string) map[string]*sample.Histogram {
		cfg := config.Defaults()
		cfg.QMPDir, cfg.CallTimeout, cfg.HistogramsEnabled = socks, 10*time.Second, enabled
		a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}))
		defer startQMPSource(t, cfg, a)()
		store, err := state.OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		a.store = store
		a.exec = tuning.NewExecutor(a.src.Backend(), store, tuning.Options{Identify: a.vmIdentity})
		a.eval = policy.NewEvaluator(&policy.Set{})
		sampled := func() []sample.Disk {
			disks, errs, gone := a.src.Sample(context.Background())
			for i := 0; len(errs) > 0 && i < 100; i++ { // busy: the runner has not taken the request yet
				time.Sleep(20 * time.Millisecond)
				disks, errs, gone = a.src.Sample(context.Background())
			}
			if len(errs) > 0 {
				t.Fatalf("sample: %v", errs)
			}
			a.reconcileOwned(context.Background(), time.Now(), disks, errs, gone)
			return disks
		}
		got := map[string]*sample.Histogram{}
		for _, r := range rules {
			a.setInForce(loadSet(t, r), api.PolicyFromFiles, time.Now())
			sampled() // the cycle that brings the histograms in line
			for _, d := range sampled() {
				got[d.Name+" after "+r[:10]] = d.ReadHist
			}
		}
		return got
	}
	got := run(nil, tailRule, avgRule)
	tail, avg := tailRule[:10], avgRule[:10]
	if h := got["disk0 after "+tail]; h == nil || fmt.Sprint(h.Boundaries) != fmt.Sprint(config.Defaults().Histograms) {
		t.Errorf("disk0 with a p99 rule: histogram %+v, want the configured boundaries", h)
	}
	if h := got["disk0 after "+avg]; h != nil {
		t.Errorf("disk0 after the p99 rule went: histogram %+v, want none", h)
	}
	for _, k := range []string{"disk1 after " + tail, "disk1 after " + avg} {
		if h := got[k]; h == nil || fmt.Sprint(h.Boundaries) != fmt.Sprint(theirs) {
			t.Errorf("%s: histogram %+v, want the other client's %v untouched", k, h, theirs)
		}
	}
	off := false
	if h := run(&off, tailRule)["disk0 after "+tail]; h != nil {
		t.Errorf("disk0 with histograms disabled by config: histogram %+v", h)
	}
}

// setForeignHistogram sets a histogram on a disk as another tool would,
// over its own QMP connection, and returns its boundaries.
func setForeignHistogram(t *testing.T, sock, disk string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := qmp.DialVM(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := qmp.NewBlock(c)
	infos, err := b.QueryBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bounds := []uint64{2000, 3000}
	for _, bi := range infos {
		if filepath.Base(filepath.Dir(bi.QDev)) == disk {
			if err := b.SetLatencyHistogram(ctx, qmp.DiskID{QOMPath: bi.QDev}, qmp.HistogramBoundaries{All: bounds}); err != nil {
				t.Fatal(err)
			}
			return bounds
		}
	}
	t.Fatalf("no disk %s in %+v", disk, infos)
	return nil
}
