package doctor

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
)

// LiveDisk is what a running VM shows about one disk over two samples an
// interval apart: the state the checks of a live VM read. Unknown
// strings are empty; unknown numbers NaN.
type LiveDisk struct {
	VM, Disk string
	Image    string
	Format   string
	// RunState is QEMU's run state of the VM: running, paused, io-error.
	RunState string
	// IOStatus is the disk's io-status: ok, failed, nospace.
	IOStatus string
	// Cache is known when CacheKnown: Writeback is the guest-visible
	// write cache, Direct and NoFlush the host side.
	CacheKnown                                bool
	CacheWriteback, CacheDirect, CacheNoFlush bool
	AIO, Discard, DetectZeroes                string
	Throttle                                  sample.Throttle
	VirtualSize, Allocation                   uint64
	// L2Cache is the qcow2 metadata cache in force (bytes), 0 unknown.
	L2Cache uint64
	// Rates are the disk's I/O between the samples (Interval 0: one
	// sample only).
	Rates sample.Rates
	// Errors are the failed and invalid operation counters at the two
	// samples; nil when the backend does not report them.
	Errors *OpErrors
	// Host is the block device under the image over the same interval.
	HostDevice string
	Host       hoststat.Device
}

// OpErrors are failed and invalid operations so far, at the first and
// the second sample.
type OpErrors struct {
	Failed, Invalid [2]uint64
}

// Thresholds of the live checks.
const (
	writeHeavyIOPS = 20  // writes per second that make a write-through cache costly
	pinnedShare    = 0.9 // at or above this share of a limit, the throttle holds the disk down (policy.PinnedShare)
	overheadFactor = 3   // disk latency over host device latency that counts as format overhead
	overheadMinMs  = 1.0
	minLatencyOps  = 10 // operations in the interval for a latency to be worth comparing
)

// CacheMode names the cache mode the way libvirt's <driver cache=...>
// does.
func (l LiveDisk) CacheMode() string {
	return sample.Cache{Writeback: l.CacheWriteback, Direct: l.CacheDirect, NoFlush: l.CacheNoFlush}.CacheMode()
}

// Thin reports whether the image may still grow on the host.
func (l LiveDisk) Thin() bool {
	return l.Format == "qcow2" || (l.VirtualSize > 0 && l.Allocation < l.VirtualSize)
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// CheckLive runs every live check on a disk and, when img is not nil,
// every image check on the facts of its image.
func CheckLive(l LiveDisk, img *ImageFacts) Report {
	r := Report{Target: l.VM + "/" + l.Disk}
	if l.Image != "" {
		r.Target += " (" + l.Image + ")"
	}
	if img != nil && img.Shared {
		r.Notes = append(r.Notes, "image is in use: read with force-share (-U), figures may be stale")
	}
	if l.Errors == nil {
		r.Notes = append(r.Notes, "failed and invalid operation counters are not available from this backend")
	}
	for _, c := range Checks {
		var fd *Finding
		switch {
		case c.Live != nil:
			fd = c.Live(l)
		case c.Image != nil && img != nil:
			f := *img
			if l.Rates.Interval > 0 {
				w := l.Rates.WriteIOPS
				f.LiveWriteIOPS = &w
			}
			fd = c.Image(f)
		}
		if fd == nil {
			continue
		}
		fd.Check = c.Name
		if fd.Severity > OK {
			fd.Fix, fd.Repair, fd.Automate = c.Fix, c.Repair, c.Automate
		}
		r.Findings = append(r.Findings, *fd)
	}
	return r
}

// pinnedAt names the limit a disk runs at (within pinnedShare), or "".
func pinnedAt(t sample.Throttle, r sample.Rates) string {
	for _, c := range []struct {
		name  string
		seen  float64
		limit uint64
	}{
		{"iops", r.ReadIOPS + r.WriteIOPS, t.IOPS}, {"iops_rd", r.ReadIOPS, t.IOPSRead}, {"iops_wr", r.WriteIOPS, t.IOPSWrite},
		{"bps", r.ReadBPS + r.WriteBPS, t.BPS}, {"bps_rd", r.ReadBPS, t.BPSRead}, {"bps_wr", r.WriteBPS, t.BPSWrite},
	} {
		if c.limit > 0 && c.seen >= pinnedShare*float64(c.limit) {
			return fmt.Sprintf("%s=%d (seen %.0f)", c.name, c.limit, c.seen)
		}
	}
	return ""
}

// overhead compares a disk's average latency with the host device's; ok
// is false when either is unknown or there were too few operations.
func overhead(disk, host, ops float64) (ratio float64, ok bool) {
	if math.IsNaN(disk) || math.IsNaN(host) || ops < minLatencyOps {
		return 0, false
	}
	// diskstats counts whole milliseconds: a fast device reads as 0.
	return disk / math.Max(host, 0.1), true
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
