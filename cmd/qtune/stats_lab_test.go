package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/internal/qmpfake"
	"github.com/qtune/qtune/qmp"
)

func TestStatsAgainstRealGuest(t *testing.T) {
	lab.NeedQEMU(t) // not in parallel: its guest's rates need the host to itself
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 128<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops = 0
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 300, Duration: time.Hour}}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "statsvm", Workload: &w,
		Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true, L2CacheSize: 1 << 20}}})
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	// The VM is named by its socket, as the agent names it.
	sock := filepath.Join(t.TempDir(), "statsvm.sock")
	if err := os.Symlink(vm.QMPPath(), sock); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"stats", "--qmp", sock, "--json", "--count", "3", "--interval", "1s"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rows []jsonRow
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r jsonRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(rows), out.String())
	}
	sum := 0.0
	for i, r := range rows {
		if r.VM != "statsvm" || r.Disk != "disk0" || r.Format != "qcow2" || r.Cache != "none" || r.VirtualSize != 128<<20 {
			t.Errorf("row %d identity: %+v", i, r)
		}
		// The guest writes 300 blocks/s; one second of a TCG guest on a
		// busy host may lag or catch up, the three together may not.
		if r.WriteIOPS < 150 || r.WriteIOPS > 450 {
			t.Errorf("row %d: write IOPS %.0f, guest runs at 300", i, r.WriteIOPS)
		}
		sum += r.WriteIOPS
		if i == 0 {
			continue
		}
		// The printed rate is the counter delta over the interval (the rate
		// uses the monotonic clock, the printed time the wall clock).
		p := rows[i-1]
		dt := r.Time.Sub(p.Time).Seconds()
		want := float64(r.Counters.WriteOps-p.Counters.WriteOps) / dt
		if math.Abs(r.WriteIOPS-want) > want*1e-4 {
			t.Errorf("row %d: write IOPS %.3f, counters say %.3f", i, r.WriteIOPS, want)
		}
		wantBps := float64(r.Counters.WriteBytes-p.Counters.WriteBytes) / dt
		if math.Abs(r.WriteBPS-wantBps) > wantBps*1e-4 || r.WriteBPS < 200*4096 {
			t.Errorf("row %d: write B/s %.0f, counters say %.0f", i, r.WriteBPS, wantBps)
		}
		if r.WriteLatencyMs == nil || *r.WriteLatencyMs <= 0 {
			t.Errorf("row %d: no write latency", i)
		}
	}
	if mean := sum / float64(len(rows)); mean < 240 || mean > 360 {
		t.Errorf("write IOPS %.0f over the three rows, guest runs at 300", mean)
	}
}

// --qmp-dir reads every VM of a directory as the agent finds them: named
// by their sockets, each on its own, and one socket that is not QEMU
// said on stderr while the others are printed.
func TestStatsQMPDir(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, vm := range []struct{ name, disk string }{{"web-1", "root"}, {"db-1", "data"}} {
		img := filepath.Join(t.TempDir(), vm.disk+".qcow2")
		if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			t.Fatal(err)
		}
		v := lab.StartVMT(t, lab.VMConfig{Name: vm.name + "-qemu", Paused: true, Disks: []lab.Disk{{ID: vm.disk, Image: img}}})
		if err := os.Symlink(v.QMPPath(), filepath.Join(dir, vm.name+".sock")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.sock"), []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"stats", "--qmp-dir", dir, "--json", "--count", "2", "--interval", "500ms"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r jsonRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		seen[r.VM+"/"+r.Disk]++
		if r.Format != "qcow2" || r.VirtualSize != 64<<20 {
			t.Errorf("row %+v", r)
		}
	}
	if seen["web-1/root"] != 2 || seen["db-1/data"] != 2 || len(seen) != 2 {
		t.Errorf("rows per disk %v, want web-1/root and db-1/data twice each:\n%s", seen, out.String())
	}
	if n := strings.Count(errOut.String(), "qtune stats: junk: "); n != 1 || !strings.Contains(errOut.String(), "junk.sock is not a socket (a regular file)") {
		t.Errorf("stderr should say once what is wrong with junk.sock:\n%s", errOut.String())
	}
}

func TestStatsErrors(t *testing.T) {
	busy := qmpfake.New(t)
	ctx := context.Background()
	holder, err := qmp.Dial(ctx, busy.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	old := qmpfake.New(t)
	old.SetVersion(2, 11, 0)
	missing := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"missing socket", []string{"--qmp", missing}, []string{missing, "does not exist"}},
		{"held by another client", []string{"--qmp", busy.Path, "--timeout", "3s"}, []string{busy.Path, "held by another client"}},
		{"QEMU too old", []string{"--qmp", old.Path}, []string{"QEMU 2.11.0", "too old", "3.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(ctx, append([]string{"stats"}, tc.args...), &bytes.Buffer{}, &stderr)
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestStatsThroughLibvirt(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "t1", 200)
	img := filepath.Join(t.TempDir(), "t2.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	d.DefineDomainT(t, lab.DomainSpec{Name: "t2", Paused: true, Disks: []lab.DomainDisk{{Target: "vdb", Image: img}}})
	// A limit well below the guest's 200/s: a guest slowed by a busy
	// host still runs into it.
	if _, err := d.Virsh(ctx, "blkdeviotune", "t1", "vda", "--write-iops-sec", "60", "--live"); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"stats", "--libvirt", "--socket", d.SocketPath(), "--json", "--count", "2"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// Two samples of two domains, the paused one included, in VM order.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
	var r, paused jsonRow
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[3]), &paused); err != nil {
		t.Fatal(err)
	}
	if paused.VM != "t2" || paused.Disk != "vdb" || paused.Format != "qcow2" || paused.VirtualSize != 64<<20 || paused.WriteIOPS != 0 {
		t.Errorf("paused domain's row %+v", paused)
	}
	if r.VM != "t1" || r.Disk != "vda" || r.Format != "qcow2" || r.Cache != "none" || r.Throttle == nil || r.Throttle.IOPSWrite != 60 {
		t.Errorf("row %+v (throttle %+v)", r, r.Throttle)
	}
	if r.WriteIOPS < 52 || r.WriteIOPS > 68 {
		t.Errorf("write IOPS %.0f, guest runs at 200 under a limit of 60", r.WriteIOPS)
	}

	// --domain reads that domain only.
	out.Reset()
	if code := run(ctx, []string{"stats", "--libvirt", "--socket", d.SocketPath(), "--domain", "t2", "--json", "--count", "1"}, &out, &errOut); code != exitOK {
		t.Fatalf("--domain t2: exit %d: %s", code, errOut.String())
	}
	if rows := strings.Split(strings.TrimSpace(out.String()), "\n"); len(rows) != 1 || !strings.Contains(rows[0], `"vm":"t2"`) {
		t.Errorf("--domain t2 printed:\n%s", out.String())
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"domain not found", []string{"--libvirt", "--socket", d.SocketPath(), "--domain", "nope"}, `domain "nope"`},
		{"libvirtd not running", []string{"--libvirt", "--socket", filepath.Join(t.TempDir(), "sock")}, "libvirtd is not running"},
	} {
		var stderr bytes.Buffer
		if code := run(ctx, append([]string{"stats"}, tc.args...), &bytes.Buffer{}, &stderr); code != exitFailure || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q", tc.name, code, stderr.String())
		}
	}
}
