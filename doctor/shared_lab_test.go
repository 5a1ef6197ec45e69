package doctor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// An image a running QEMU holds is locked: the doctor reads it with
// force-share, says its figures may be stale, and still runs every check.
func TestImageHeldByRunningQEMU(t *testing.T) {
	lab.NeedQEMU(t)
	img := filepath.Join(t.TempDir(), "held.qcow2")
	qimg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, "32G")
	lab.StartVMT(t, lab.VMConfig{Name: "doctor-held", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: img}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := (QemuImg{}).Info(ctx, img, false); err == nil {
		t.Fatal("qemu-img info without -U read an image QEMU holds: the lock test proves nothing")
	}
	f, err := QemuImg{}.Gather(ctx, img, 32<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	r := CheckImage(f)
	if !f.Shared || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "stale") {
		t.Fatalf("shared %v notes %q", f.Shared, r.Notes)
	}
	if f.Check == nil || f.CheckErr != nil {
		t.Fatalf("qemu-img check -U: %+v %v", f.Check, f.CheckErr)
	}
	assertOnly(t, r, "l2_coverage", Warn)
}
