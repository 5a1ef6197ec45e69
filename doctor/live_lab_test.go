package doctor

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// liveDisksOf waits for vm's guest to start its load and reads its disks
// as the live doctor does, over a second, the VM named name by its socket
// as the agent names it, whatever its -name.
func liveDisksOf(t *testing.T, ctx context.Context, vm *lab.VM, name string) ([]LiveDisk, []error) {
	t.Helper()
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), name+".sock")
	if err := os.Symlink(vm.QMPPath(), sock); err != nil {
		t.Fatal(err)
	}
	src, err := facts.OpenSampler(ctx, facts.Options{QMPSockets: []string{sock}, Interval: time.Second, CallTimeout: 5 * time.Second, Details: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return Live(ctx, src, time.Second)
}

// A VM whose disk runs with the guest's write cache off (writethrough)
// while the guest writes: every write is flushed, and the doctor says so
// from two live samples; the rest of the disk is healthy.
func TestLiveWritethroughDisk(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// On tmpfs: a flush there costs nothing, so the guest keeps its rate
	// on a busy host. Preallocated: the guest's writes then change no
	// metadata, so the force-shared qemu-img check reads a consistent
	// image.
	img := filepath.Join(lab.TmpfsT(t, "256m"), "wt.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 128<<20, lab.ImageOpts{Preallocation: "falloc"}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops, w.Span = 0, 32<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 100, Duration: time.Hour}}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "wt", Workload: &w,
		Disks: []lab.Disk{{ID: "disk0", Image: img, WriteThrough: true, Discard: "ignore"}}})
	disks, errs := liveDisksOf(t, ctx, vm, "web-1")
	if len(errs) > 0 || len(disks) != 1 {
		t.Fatalf("%d disks, errors %v", len(disks), errs)
	}
	l := disks[0]
	if l.VM != "web-1" || l.Disk != "disk0" || l.Image != img || l.RunState != "running" || l.IOStatus != "ok" || l.AIO != "threads" {
		t.Fatalf("live disk: %+v", l)
	}
	imgFacts, err := QemuImg{}.Gather(ctx, img, l.L2Cache, false)
	if err != nil {
		t.Fatal(err)
	}
	// The filesystem under the image is the test's tmpfs, no property of
	// the VM (the image and host tests cover those checks).
	imgFacts.QueueErr, imgFacts.ExtentsErr, imgFacts.FSErr = errLeftOut, errLeftOut, errLeftOut
	r := CheckLive(l, &imgFacts)
	assertOnly(t, r, "cache_mode", Warn)
	want := map[string]Severity{"vm_io_error": OK, "io_status": OK, "failed_ops": OK, "throttle": OK, "discard": Info, "l2_coverage": OK}
	for _, f := range r.Findings {
		if s, ok := want[f.Check]; ok && s != f.Severity {
			t.Errorf("%s: %s (%s), want %s", f.Check, f.Severity, f.Summary, s)
		}
		delete(want, f.Check)
		if f.Check == "cache_mode" && !strings.Contains(f.Summary, "writethrough") {
			t.Errorf("cache_mode: %q", f.Summary)
		}
	}
	if len(want) > 0 {
		t.Errorf("checks missing from the report: %v\n%+v", want, r)
	}
	if !imgFacts.Shared || len(r.Notes) != 1 {
		t.Errorf("the image a running VM holds is read with force-share: shared %v, notes %q", imgFacts.Shared, r.Notes)
	}
}

// A VM running on a compressed qcow2 image (zstd) while its guest writes:
// each write to a compressed cluster allocates a new one, and the live
// doctor warns of it with the guest's write rate; the same image offline
// is only info. Its second disk is a raw node opened with an offset, which
// QEMU names json:{...}: the doctor reads its image file from the node's
// options and diagnoses it like any other.
func TestLiveCompressedDiskWrittenTo(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	plain, img := filepath.Join(dir, "plain.qcow2"), filepath.Join(dir, "zstd.qcow2")
	if err := lab.CreateImage(ctx, plain, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, plain, "qcow2", 0x5a, 0, 16<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.QemuImg(ctx, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", plain, img); err != nil {
		t.Fatal(err)
	}
	offline, err := QemuImg{}.Gather(ctx, img, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops, w.Span = 0, 16<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 50, Duration: time.Hour}}
	raw := filepath.Join(dir, "offset.raw")
	if _, err := lab.QemuImg(ctx, "create", "-q", "-f", "raw", raw, "64M"); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "z", Workload: &w, Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true},
		{ID: "disk1", Image: raw, Format: "raw", FormatOpts: map[string]any{"offset": 1 << 20, "size": 32 << 20}}}})
	disks, errs := liveDisksOf(t, ctx, vm, "z")
	sort.Slice(disks, func(i, j int) bool { return disks[i].Disk < disks[j].Disk })
	if len(errs) > 0 || len(disks) != 2 || disks[0].Rates.WriteIOPS <= 0 {
		t.Fatalf("%d disks %+v, errors %v", len(disks), disks, errs)
	}
	if d := disks[1]; d.Disk != "disk1" || d.Image != raw || d.Format != "raw" {
		t.Errorf("the json:{...} node's disk: %+v", d)
	} else {
		rawFacts, err := QemuImg{}.Gather(ctx, raw, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if r := CheckLive(d, &rawFacts); r.Worst() >= Critical || len(r.Findings) == 0 {
			t.Errorf("the json:{...} node's report: %+v", r)
		}
	}
	find := func(r Report) Finding {
		for _, f := range r.Findings {
			if f.Check == "compressed_clusters" {
				return f
			}
		}
		t.Fatalf("no compressed_clusters finding: %+v", r)
		return Finding{}
	}
	if f := find(CheckImage(offline)); f.Severity != Info || f.Evidence["compression_type"] != "zstd" {
		t.Errorf("offline: %s %q %v", f.Severity, f.Summary, f.Evidence)
	}
	live, err := QemuImg{}.Gather(ctx, img, disks[0].L2Cache, false)
	if err != nil {
		t.Fatal(err)
	}
	f := find(CheckLive(disks[0], &live))
	if f.Severity != Warn || !strings.Contains(f.Summary, "the guest writes to it") || f.Evidence["compression_type"] != "zstd" || f.Fix == "" {
		t.Errorf("live, written to: %s %q %v", f.Severity, f.Summary, f.Evidence)
	}
	t.Logf("live: %s: %s", f.Severity, f.Summary)
}
