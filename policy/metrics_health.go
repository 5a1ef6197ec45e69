package policy

import (
	"math"

	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// The disk-check metrics read what the agent's slower disk checks (qtune
// doctor) found last: unknown until they have run on the disk, so a rule
// on them waits rather than fires on a guess.

// healthOf gives a point's Health for a policy test to write into,
// creating one whose measures are all unknown.
func healthOf(p *sample.Point) *sample.Health {
	if p.Disk.Health == nil {
		p.Disk.Health = &sample.Health{At: p.Disk.Time, Fragmentation: math.NaN(), LeakedClusters: -1, FileExtents: -1, FSFreeRatio: math.NaN(), CompressedRatio: math.NaN()}
	}
	return p.Disk.Health
}

// hnum is a number read from the disk's Health; get returns NaN or a
// negative number for unknown.
func hnum(name, unit, help string, get func(h *sample.Health) float64, set func(h *sample.Health, v float64)) Metric {
	return Metric{Name: name, Type: cty.Number, Unit: unit, Help: help,
		get: func(in input) cty.Value {
			if in.p.Disk.Health == nil {
				return cty.UnknownVal(cty.Number)
			}
			v := get(in.p.Disk.Health)
			if v < 0 {
				return cty.UnknownVal(cty.Number)
			}
			return num(v)
		},
		set: func(p *sample.Point, v float64) { set(healthOf(p), v) }}
}

var (
	diskCorrupt = Metric{Name: "disk.corrupt", Type: cty.Bool,
		Help: "the image is marked corrupt or qemu-img check found corruptions (disk checks); unknown until they ran",
		get: func(in input) cty.Value {
			if in.p.Disk.Health == nil {
				return cty.UnknownVal(cty.Bool)
			}
			return cty.BoolVal(in.p.Disk.Health.Corrupt)
		},
		set: func(p *sample.Point, v float64) { healthOf(p).Corrupt = v != 0 }}
	diskEncrypted = Metric{Name: "disk.encrypted", Type: cty.Bool,
		Help: "the image's header says its guest data is encrypted, LUKS or qcow2's old AES (disk checks); unknown until they ran",
		get: func(in input) cty.Value {
			if in.p.Disk.Health == nil {
				return cty.UnknownVal(cty.Bool)
			}
			return cty.BoolVal(in.p.Disk.Health.Encrypted)
		},
		set: func(p *sample.Point, v float64) { healthOf(p).Encrypted = v != 0 }}
	diskCompressed = hnum("disk.compressed_ratio", "ratio",
		"qcow2 clusters stored compressed ÷ allocated clusters (qemu-img check, run rarely; not on an encrypted image)",
		func(h *sample.Health) float64 { return h.CompressedRatio }, func(h *sample.Health, v float64) { h.CompressedRatio = v })
	diskIOStatus = Metric{Name: "disk.io_status", Type: cty.String,
		Help: "QEMU's io-status of the disk: ok, failed or nospace (under libvirt read with the domain XML, and again while the domain is paused on an I/O error); unknown when it cannot be read",
		get: func(in input) cty.Value {
			if in.p.Disk.IOStatus == "" {
				return cty.UnknownVal(cty.String)
			}
			return cty.StringVal(in.p.Disk.IOStatus)
		}}
	diskFragmentation = hnum("disk.fragmentation", "ratio",
		"qcow2 clusters not next to the one before them in the file ÷ allocated clusters (qemu-img check, run rarely)",
		func(h *sample.Health) float64 { return h.Fragmentation }, func(h *sample.Health, v float64) { h.Fragmentation = v })
	diskLeaked = hnum("disk.leaked_clusters", "clusters", "clusters allocated but referenced by nothing (qemu-img check)",
		func(h *sample.Health) float64 { return float64(h.LeakedClusters) }, func(h *sample.Health, v float64) { h.LeakedClusters = int(v) })
	diskExtents = hnum("disk.file_extents", "extents", "extents of the image file on the host filesystem (FIEMAP; disk checks)",
		func(h *sample.Health) float64 { return float64(h.FileExtents) }, func(h *sample.Health, v float64) { h.FileExtents = int64(v) })
	diskSnapshots = hnum("disk.snapshot_count", "snapshots", "internal snapshots in the image (disk checks)",
		func(h *sample.Health) float64 { return float64(h.SnapshotCount) }, func(h *sample.Health, v float64) { h.SnapshotCount = int(v) })
	diskFSFree = hnum("disk.fs_free_ratio", "ratio", "free share (0-1) of the filesystem under the image (disk checks)",
		func(h *sample.Health) float64 { return h.FSFreeRatio }, func(h *sample.Health, v float64) { h.FSFreeRatio = v })
	diskSeverity = hnum("disk.doctor_severity", "0-3", "worst finding of the disk checks: 0 ok, 1 info, 2 warn, 3 critical (docs/doctor.md)",
		func(h *sample.Health) float64 { return float64(h.Worst) }, func(h *sample.Health, v float64) { h.Worst = int(v) })
	diskChecked = Metric{Name: "disk.checked_age_s", Type: cty.Number, Unit: "s",
		Help: "seconds since the disk checks last ran on the disk (as of the sample); unknown before",
		get: func(in input) cty.Value {
			h := in.p.Disk.Health
			if h == nil || h.At.IsZero() {
				return cty.UnknownVal(cty.Number)
			}
			return num(math.Max(0, in.p.Disk.Time.Sub(h.At).Seconds()))
		}}
)
