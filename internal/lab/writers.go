package lab

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

// writer is a guest that writes 4 KiB blocks at random over the first 16
// MiB of its disk at rate per second (0: as fast as it can), forever.
func writer(rate int) *loadgen.Params {
	w := loadgen.Defaults()
	w.Loops, w.Span = 0, 16<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: rate, Duration: time.Hour}}
	return &w
}

// WriterVMT starts a VM named name whose guest writes at rate to disk0 (a
// 64 MiB qcow2 image, cache=none), and waits for its first write. Extra
// QEMU arguments (another -qmp socket, say) go last.
func WriterVMT(t testing.TB, name string, rate int, extra ...string) *VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), name+".qcow2")
	if err := CreateImage(ctx, img, "qcow2", 64<<20, ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := StartVMT(t, VMConfig{Name: name, Workload: writer(rate), Disks: []Disk{{ID: "disk0", Image: img, CacheDirect: true}}, Extra: extra})
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	return vm
}

// WriterDomainT is WriterVMT as a libvirt domain of d, its disk vda.
func (d *Libvirtd) WriterDomainT(t testing.TB, name string, rate int) *Domain {
	t.Helper()
	return d.WriterDomainDiskT(t, name, rate, DomainDisk{})
}

// WriterDomainDiskT is WriterDomainT with disk's options (its target and
// image are the writer's own).
func (d *Libvirtd) WriterDomainDiskT(t testing.TB, name string, rate int, disk DomainDisk) *Domain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), name+".qcow2")
	if err := CreateImage(ctx, img, "qcow2", 64<<20, ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	disk.Target, disk.Image = "vda", img
	dom := d.DefineDomainT(t, DomainSpec{Name: name, Workload: writer(rate), Disks: []DomainDisk{disk}})
	if err := dom.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	return dom
}

// StampSpan is how much of its disk a stamping guest writes.
const StampSpan = 16 << 20

// Stamper is a workload of stamped writes over the first StampSpan bytes
// of /dev/vda in the given phases (see loadgen.StampWrite and Verify),
// then idling until the VM is stopped.
func Stamper(phases ...loadgen.Phase) *loadgen.Params {
	w := loadgen.Defaults()
	w.Loops, w.Span = 1, StampSpan
	w.Phases = append(phases, loadgen.Phase{Pattern: loadgen.Idle, Duration: time.Hour})
	return &w
}
