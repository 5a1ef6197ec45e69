package lab

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

func TestLibvirtdRunsAGuest(t *testing.T) {
	NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := StartLibvirtdT(t)
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := CreateImage(ctx, img, "qcow2", 64<<20, ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops = 0
	dom := d.DefineDomainT(t, DomainSpec{Name: "labdom", Workload: &w, Disks: []DomainDisk{{Target: "vda", Image: img}}})
	if err := dom.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	out, err := d.Virsh(ctx, "domblkstat", "labdom", "vda")
	if err != nil || !strings.Contains(out, "wr_req") {
		t.Fatalf("domblkstat: %s %v", out, err)
	}
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Virsh(ctx, "domstate", "labdom"); err != nil || !strings.Contains(out, "running") {
		t.Fatalf("after restart the domain is %q (%v)", out, err)
	}
}
