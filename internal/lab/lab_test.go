package lab

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

func TestChainAndInfo(t *testing.T) {
	NeedQEMU(t)
	ctx := context.Background()
	chain, err := Chain(ctx, t.TempDir(), 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Info(ctx, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(info) != 3 {
		t.Fatalf("chain of %d layers, want 3", len(info))
	}
	for i, l := range info {
		if l.Filename != chain[i] || l.VirtualSize != 64<<20 || l.ClusterSize != 64<<10 {
			t.Errorf("layer %d: %+v (want %s)", i, l, chain[i])
		}
	}
	if info[2].BackingFilename != "" {
		t.Errorf("base has a backing file: %q", info[2].BackingFilename)
	}
}

func TestGuestDoesIO(t *testing.T) {
	NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := CreateImage(ctx, img, "qcow2", 64<<20, ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 100, Duration: 4 * time.Second}}
	vm := StartVMT(t, VMConfig{Name: "io", Disks: []Disk{{ID: "disk0", Image: img}}, Workload: &w})
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitSerial(ctx, "qtune-load done"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("guest did not power off after its workload")
	}
	if err := vm.ExitErr(); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
	m := regexp.MustCompile(`writes=(\d+) errors=0`).FindAllStringSubmatch(vm.Serial(), -1)
	if len(m) == 0 {
		t.Fatalf("no progress lines:\n%s", vm.Serial())
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	if n < 300 || n > 450 {
		t.Errorf("guest wrote %d blocks in 4 s at 100/s", n)
	}
	dir := vm.Dir
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("VM directory %s left behind", dir)
	}
}

func TestPausedVMWithLegacyAndBlockdevDisks(t *testing.T) {
	NeedQEMU(t)
	ctx := context.Background()
	dir := t.TempDir()
	chain, err := Chain(ctx, dir, 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "legacy.raw")
	if err := CreateImage(ctx, raw, "raw", 16<<20, ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := StartVMT(t, VMConfig{Name: "paused", Paused: true, Disks: []Disk{
		{ID: "disk0", Image: chain[0], CacheDirect: true},
		{ID: "drive1", Image: raw, Format: "raw", Legacy: true},
	}})
	for _, node := range []string{"disk0-file", "disk0-fmt", "disk0-b1-fmt", "disk0-b2-fmt"} {
		if vm.Blockdevs[node] == "" {
			t.Errorf("no -blockdev recorded for %s", node)
		}
	}
	pid := vm.PID()
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscallKill0(pid); err == nil {
		t.Errorf("qemu pid %d still alive after Stop", pid)
	}
}
