package agent

import (
	"context"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
)

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v %s", args, err, out)
	}
}

// The disk checks run on the images of the last cycle's points: their
// findings become metrics and status, their figures the policy's
// disk.* health metrics; qemu-img check runs once per check_interval.
func TestDiskChecksFindingsAndHealth(t *testing.T) {
	lab.NeedQEMU(t)
	dir := t.TempDir()
	snaps, clean := filepath.Join(dir, "snaps.qcow2"), filepath.Join(dir, "clean.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", snaps, "64M")
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write 0 1M", snaps).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	for i := 0; i < 6; i++ {
		qemuImg(t, "snapshot", "-c", "s"+strconv.Itoa(i), snaps)
	}
	qemuImg(t, "create", "-q", "-f", "qcow2", clean, "64M")
	point := func(vm, path string) sample.Point {
		return sample.Point{Disk: sample.Disk{VM: vm, Name: "vda", Path: path, Format: "qcow2", VirtualSize: 64 << 20,
			ClusterSize: 64 << 10, L2CacheSize: 1 << 20, IOStatus: "ok", Time: time.Now(),
			HostDevReadLatencyMs: math.NaN(), HostDevWriteLatencyMs: math.NaN()}}
	}
	points := []sample.Point{point("a", snaps), point("b", clean)}
	now := time.Now()
	cfg := config.Defaults().Doctor
	states := map[string]vmState{"a": {State: "running"}, "b": {State: "paused", Reason: "ioerror"}}
	last := func() *cycleSnapshot { return &cycleSnapshot{points: points, vmStates: states} }
	c := newDiskChecks(cfg, hclog.NewNullLogger(), last, func() time.Time { return now })
	c.pass(context.Background())

	h := c.health("a/vda")
	if h == nil || h.SnapshotCount != 6 || h.Corrupt || h.LeakedClusters != 0 || math.IsNaN(h.Fragmentation) || h.Worst != 2 {
		t.Fatalf("health of the snapshot image: %+v", h)
	}
	if hb := c.health("b/vda"); hb == nil || hb.SnapshotCount != 0 || hb.Worst != 3 {
		t.Errorf("health of the clean image of the VM paused on an I/O error: %+v", hb)
	}
	fs := c.findings()
	if len(fs) < 2 || fs[0].VM != "b" || fs[0].Check != "vm_io_error" || fs[0].Severity != "critical" ||
		fs[1].VM != "a" || fs[1].Check != "internal_snapshots" || fs[1].Severity != "warn" {
		t.Fatalf("findings, worst first: %+v", fs)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `# HELP qtune_disk_finding 1 for each finding of the disk checks worse than ok (docs/doctor.md names every check).
# TYPE qtune_disk_finding gauge
qtune_disk_finding{check="internal_snapshots",disk="vda",severity="warn",vm="a"} 1
qtune_disk_finding{check="vm_io_error",disk="vda",severity="critical",vm="b"} 1
`
	if got := filterWarn(t, reg); got != want {
		t.Errorf("warn and critical findings:\n%s\nwant:\n%s", got, want)
	}

	// Within check_interval the next pass reuses the last qemu-img check.
	c.pass(context.Background())
	checks := func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return c.runs["qemu-img-check"] }
	if n := checks(); n != 2 {
		t.Errorf("%v qemu-img checks over two passes of two images, want 2 (one each)", n)
	}
	if h := c.health("a/vda"); h.LeakedClusters != 0 || math.IsNaN(h.Fragmentation) {
		t.Errorf("the last check's figures are kept between checks: %+v", h)
	}
	now = now.Add(cfg.CheckInterval)
	c.pass(context.Background())
	if n := checks(); n != 4 {
		t.Errorf("%v qemu-img checks after check_interval, want 4", n)
	}
}

// filterWarn gathers qtune_disk_finding and keeps the warn and critical
// series (info findings depend on this machine's disk).
func filterWarn(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if mf.GetName() != "qtune_disk_finding" {
			continue
		}
		b.WriteString("# HELP qtune_disk_finding " + mf.GetHelp() + "\n# TYPE qtune_disk_finding gauge\n")
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["severity"] == "warn" || l["severity"] == "critical" {
				b.WriteString(`qtune_disk_finding{check="` + l["check"] + `",disk="` + l["disk"] + `",severity="` + l["severity"] + `",vm="` + l["vm"] + `"} 1` + "\n")
			}
		}
	}
	return b.String()
}
