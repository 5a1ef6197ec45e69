package facts

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// qcow2Header writes the first bytes of a qcow2 image of size bytes
// with 64 KiB clusters: all that is read of it.
func qcow2Header(t *testing.T, size uint64) string {
	t.Helper()
	b := make([]byte, 104)
	be := binary.BigEndian
	be.PutUint32(b[0:], 0x514649fb)
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], size)
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func qcow2DomXML(path, metadataCache string) string {
	return fmt.Sprintf(`<domain><devices><disk type='file' device='disk'><driver type='qcow2' cache='writethrough' io='native'>%s</driver>
<source file='%s'/><target dev='vda'/><alias name='virtio-disk0'/></disk></devices></domain>`, metadataCache, path)
}

// The L2 cache of a libvirt disk is what covers the whole disk, at most
// its <metadata_cache><max_size> (QEMU's default cap without one): the
// figure the agent's policies, qtune stats and qtune doctor all read.
// (doctor once took the max_size itself, or 32 MiB.)
func TestLibvirtL2CacheIsNeededCappedByMetadataCache(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name  string
		size  uint64
		cache string
		want  uint64
	}{
		{"small disk, large cap", 8 * gib, `<metadata_cache><max_size unit='MiB'>64</max_size></metadata_cache>`, 1 << 20},
		{"large disk, small cap", 512 * gib, `<metadata_cache><max_size unit='MiB'>4</max_size></metadata_cache>`, 4 << 20},
		{"small disk, no cap", 8 * gib, "", 1 << 20},
		{"large disk, no cap", 1024 * gib, "", qmp.DefaultL2CacheMax},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, f, _ := newFakeSource(t, "a")
			f.setXML("a", qcow2DomXML(qcow2Header(t, c.size), c.cache))
			f.stats["a"] = virt.DomainStat{State: "running", Disks: []sample.Disk{{VM: "a", Name: "vda", VirtualSize: c.size}}}
			disks, errs, _ := s.sample(context.Background())
			if len(disks) != 1 || len(errs) != 0 {
				t.Fatalf("disks %+v errs %v", disks, errs)
			}
			if got := disks[0].L2CacheSize; got != c.want {
				t.Errorf("L2 cache %d, want %d (needed %d)", got, c.want, disks[0].L2Needed())
			}
		})
	}
}

// What a report reads of a libvirt domain beyond its samples comes from
// the same XML read and bulk call: run state as QEMU names it, the cache
// mode with the guest's write cache, aio as set, QEMU's defaults for
// discard and detect-zeroes, and no error counters (libvirt has none).
func TestLibvirtDetails(t *testing.T) {
	s, f, _ := newFakeSource(t, "a")
	f.setXML("a", qcow2DomXML(qcow2Header(t, 1<<30), ""))
	f.stats["a"] = virt.DomainStat{State: "paused", Reason: "ioerror", Disks: []sample.Disk{{VM: "a", Name: "vda"}}}
	if _, ok := s.details("a"); ok {
		t.Fatal("details before any sample")
	}
	s.sample(context.Background())
	d, ok := s.details("a")
	want := DiskDetails{Cache: sample.Cache{}, AIO: "native", Discard: "ignore", DetectZeroes: "off"}
	if !ok || d.RunState != "io-error" || d.Disks["vda"] != want {
		t.Fatalf("details %+v (ok %v), want io-error and vda %+v", d, ok, want)
	}
}
