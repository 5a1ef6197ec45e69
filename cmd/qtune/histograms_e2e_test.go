package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
)

const (
	tailPolicy = "rule \"tail\" {\n  when = disk.read_latency_p99_ms > 50\n  throttle { read_iops = 100 }\n}\n"
	diskQOM    = "/machine/peripheral/disk0/virtio-backend"
)

// A p99 rule has the agent turn latency histograms on for a's disk; the
// agent is SIGKILLed, the rule removed, and the agent started again: it
// finds the histogram it turned on in its state store and turns it off
// within a few intervals. b's disk had a histogram another client set
// before the agent came: qtune never owns it, and its boundaries stay as
// they were throughout. QEMU is read over a second QMP socket of each
// VM, the agent holding the first.
func TestHistogramReleasedAfterRestartWithoutTheRule(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	dir, side := t.TempDir(), t.TempDir()
	for _, name := range []string{"a", "b"} {
		img := filepath.Join(t.TempDir(), name+".qcow2")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := lab.CreateImage(ctx, img, "qcow2", 16<<20, lab.ImageOpts{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		vm := lab.StartVMT(t, lab.VMConfig{Name: name, Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: img}},
			Extra: []string{"-qmp", "unix:" + filepath.Join(side, name+".sock") + ",server=on,wait=off"}})
		if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, name+".sock")); err != nil {
			t.Fatal(err)
		}
	}
	theirs := []uint64{2000, 3000}
	setHistogramByHand(t, filepath.Join(side, "b.sock"), theirs)
	readA := func() []uint64 { return histogramOf(t, filepath.Join(side, "a.sock")) }
	checkB := func(when string) {
		t.Helper()
		if got := histogramOf(t, filepath.Join(side, "b.sock")); fmt.Sprint(got) != fmt.Sprint(theirs) {
			t.Fatalf("%s: b's histogram %v, want the other client's %v untouched", when, got, theirs)
		}
	}

	ag := startAgentWith(t, bin, tailPolicy, "--qmp-dir", dir, "--disk-checks=false")
	ag.waitFor(t, 10*e2eInterval, "a's histogram held", func(s api.Status) bool {
		return ownedHistogram(s, "a") == api.OwnedHeld
	})
	if got, want := readA(), config.Defaults().Histograms; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a's histogram %v, want the configured %v", got, want)
	}
	st := ag.status(t)
	if s := ownedHistogram(st, "b"); s != "" {
		t.Fatalf("b's histogram, someone else's, is owned (%s)", s)
	}
	if !st.Histograms.On || st.Histograms.Why != "rule tail" {
		t.Fatalf("histogram status %+v", st.Histograms)
	}
	if v := metricValue(ag.metrics(t), `qtune_owned_knobs{knob="histogram",state="held"}`); v != 1 {
		t.Errorf(`qtune_owned_knobs{knob="histogram",state="held"} = %v, want 1`, v)
	}
	if out, _ := qtuneCmd(t, bin, "status", "--addr", ag.addr); !strings.Contains(out, "a/disk0 histogram by tail") {
		t.Errorf("qtune status does not list a's histogram:\n%s", out)
	}
	checkB("with the rule")

	ag.cmd.Process.Signal(syscall.SIGKILL)
	ag.done <- <-ag.done
	if got := readA(); got == nil {
		t.Fatal("a's histogram went with the agent's SIGKILL")
	}
	if err := os.WriteFile(filepath.Join(ag.policy, "noisy.hcl"), []byte("# the rule is gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	ag = ag.start(t, bin, "--qmp-dir", dir, "--disk-checks=false") // returns after the first cycle
	for readA() != nil {
		if time.Since(restarted) > 20*time.Second { // start, then a few intervals on a loaded host
			t.Fatalf("a's histogram still on %v after the restart without the rule", time.Since(restarted))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("a's histogram off %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	st = ag.waitFor(t, 5*e2eInterval, "no histogram owned", func(s api.Status) bool { return len(s.Owned) == 0 })
	if st.Histograms.On {
		t.Errorf("histogram status %+v, want off", st.Histograms)
	}
	if !lineWith(ag.log.String(), "vm=a", "knob=histogram", "result=reverted") {
		t.Errorf("the log does not say a's histogram was turned off:\n%s", ag.log.String())
	}
	checkB("after the restart")
}

func ownedHistogram(s api.Status, vm string) string {
	for _, o := range s.Owned {
		if o.VM == vm && o.Knob == policy.KnobHistogram {
			return o.State
		}
	}
	return ""
}

// setHistogramByHand gives disk0 a latency histogram, as another tool
// would.
func setHistogramByHand(t *testing.T, sock string, bounds []uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := qmp.NewBlock(c).SetLatencyHistogram(ctx, qmp.DiskID{QOMPath: diskQOM}, qmp.HistogramBoundaries{All: bounds}); err != nil {
		t.Fatal(err)
	}
}

// histogramOf is the boundaries of disk0's read histogram, nil when it
// has none.
func histogramOf(t *testing.T, sock string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stats, err := qmp.NewBlock(c).QueryBlockstats(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.QDev == diskQOM {
			if h := st.Stats.RdLatencyHist; h != nil {
				return h.Boundaries
			}
			return nil
		}
	}
	t.Fatalf("no %s in query-blockstats", diskQOM)
	return nil
}
