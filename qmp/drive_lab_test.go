package qmp_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/qmp"
)

// A disk given as -drive if=virtio,id=X has an anonymous device model
// (/machine/peripheral-anon/...): it is named X, as the SRE wrote it.
func TestRealDriveIfVirtioNamedByDriveID(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	image := filepath.Join(t.TempDir(), "data.raw")
	if err := lab.CreateImage(ctx, image, "raw", 16<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "drive", Paused: true,
		Extra: []string{"-drive", "file=" + image + ",format=raw,if=virtio,id=data"}})
	_, b := connect(t, vm)
	disks, err := b.SampleDisks(ctx, "drive", qmp.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 1 || disks[0].Name != "data" {
		t.Fatalf("disks %+v, want one named data", disks)
	}
	t.Logf("disk %q at %s", disks[0].Name, disks[0].QOMPath)
}

func TestShortID(t *testing.T) {
	for _, tc := range []struct {
		id   qmp.DiskID
		want string
	}{
		{qmp.DiskID{QOMPath: "/machine/peripheral/disk0/virtio-backend"}, "disk0"},
		{qmp.DiskID{QOMPath: "/machine/peripheral/disk0/virtio-backend", Device: "drive0"}, "disk0"},
		{qmp.DiskID{QOMPath: "/machine/peripheral-anon/device[0]/virtio-backend", Device: "data"}, "data"},
		{qmp.DiskID{QOMPath: "/machine/peripheral-anon/device[0]/virtio-backend"}, "/machine/peripheral-anon/device[0]/virtio-backend"},
		{qmp.DiskID{Device: "ide0-hd0"}, "ide0-hd0"},
	} {
		if got := tc.id.ShortID(); got != tc.want {
			t.Errorf("%+v: ShortID = %q, want %q", tc.id, got, tc.want)
		}
	}
}
