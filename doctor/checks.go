package doctor

import (
	"fmt"
	"strconv"
)

// Check is one entry of the handbook: the text docs/doctor.md prints and
// the function that decides it. Image returns nil when the check does
// not apply (say, a raw image and a qcow2-only check). Live checks read
// a running VM's disk instead (Live); a check has one or the other.
type Check struct {
	Name     string
	Title    string
	Means    string
	Matters  string
	Fix      string
	Severity string // the severity rules, in words
	Repair   string // a repair command with its warning, if any
	Automate string // a qtune policy or command, if any
	Image    func(f ImageFacts) *Finding
	Live     func(l LiveDisk) *Finding
}

// Default thresholds.
const (
	chainWarnDepth    = 4
	snapshotsWarn     = 5
	smallClusterBytes = 64 << 10
)

func u(v uint64) string { return strconv.FormatUint(v, 10) }

// Checks is the table; order is the order of reports and the handbook.
var Checks = []Check{
	{
		Name:     "corrupt_bit",
		Title:    "qcow2 corrupt bit set",
		Means:    "QEMU found inconsistent metadata while the image was in use and marked it corrupt; it will only open it read-only.",
		Matters:  "The VM cannot write to the disk; guest data may already be damaged.",
		Fix:      "Stop the VM, back up the image, then repair it; qemu-img check -r all clears the bit when the repair succeeds.",
		Severity: "critical when the bit is set.",
		Repair:   "qemu-img check -r all IMAGE  # WARNING: VM stopped and a backup first; -r all may discard data it cannot place",
		Image: func(f ImageFacts) *Finding {
			d := f.Info.FormatSpecific.Data
			if f.Info.Format != "qcow2" {
				return nil
			}
			if !d.Corrupt {
				return ok("corrupt_bit", "corrupt bit clear")
			}
			return &Finding{Severity: Critical, Summary: "image is marked corrupt", Evidence: map[string]string{"corrupt": "true"}}
		},
	},
	{
		Name:     "check_corruptions",
		Title:    "qemu-img check finds corruptions",
		Means:    "qemu-img check finds the image's metadata inconsistent (qcow2: a refcount, L1 or L2 entry; clusters referenced but not counted, or counted wrongly). It runs on every format that has a check: qcow2, qed, vdi, vhdx, parallels, vmdk.",
		Matters:  "Writes can overwrite live data; QEMU marks the image corrupt when it trips over it.",
		Fix:      "Stop the VM, back up the image, then repair it.",
		Severity: "critical when check reports corruptions or could not complete; warn when the image is in use (read with force-share, a write in flight looks like a corruption); ok otherwise.",
		Repair:   "qemu-img check -r all IMAGE  # WARNING: VM stopped and a backup first",
		Image: func(f ImageFacts) *Finding {
			if f.Check == nil && f.CheckErr == nil {
				return nil
			}
			if f.CheckErr != nil {
				return &Finding{Severity: Critical, Summary: "qemu-img check failed", Evidence: map[string]string{"error": f.CheckErr.Error()}}
			}
			c := f.Check
			if c.Corruptions == 0 && c.CheckErrors == 0 {
				return ok("check_corruptions", "no corruptions")
			}
			sum := fmt.Sprintf("%d corruptions, %d check errors", c.Corruptions, c.CheckErrors)
			ev := map[string]string{"corruptions": strconv.Itoa(c.Corruptions), "check_errors": strconv.Itoa(c.CheckErrors)}
			if f.Shared {
				// Read under a VM that writes: metadata in flight looks
				// inconsistent. Only a check with the VM stopped can tell.
				return &Finding{Severity: Warn, Summary: sum + " in an image in use (may be writes in flight: check again with the VM stopped)", Evidence: ev}
			}
			return &Finding{Severity: Critical, Summary: sum, Evidence: ev}
		},
	},
	{
		Name:     "check_leaks",
		Title:    "leaked clusters",
		Means:    "Clusters are allocated in the file but referenced by nothing, usually after a crash or a killed QEMU.",
		Matters:  "Wasted host space only; guest data is safe.",
		Fix:      "Reclaim them while the VM is stopped.",
		Severity: "warn when check reports leaks; info when the image is in use (clusters being allocated look leaked).",
		Repair:   "qemu-img check -r leaks IMAGE  # WARNING: only with the VM stopped",
		Image: func(f ImageFacts) *Finding {
			if f.Check == nil {
				return nil
			}
			if f.Check.Leaks == 0 {
				return ok("check_leaks", "no leaked clusters")
			}
			sev := Warn
			if f.Shared {
				sev = Info // clusters being allocated by the running VM count as leaked
			}
			return &Finding{Severity: sev, Summary: fmt.Sprintf("%d leaked clusters", f.Check.Leaks),
				Evidence: map[string]string{"leaks": strconv.Itoa(f.Check.Leaks), "cluster_size": u(f.Info.ClusterSize)}}
		},
	},
	{
		Name:     "compressed_clusters",
		Title:    "compressed clusters",
		Means:    "Clusters stored compressed (qemu-img convert -c, or a compressed backup); qemu-img check counts them.",
		Matters:  "Every read of one decompresses it and every write to one allocates a new, uncompressed cluster: slow on a write path, and the image grows as the guest writes.",
		Fix:      "Keep compressed images as read-only bases or backups; convert a disk that is written to without -c.",
		Severity: "info when any cluster is compressed; warn when the image is a running VM's disk that the guest writes to.",
		Repair:   "qemu-img convert -O qcow2 IMAGE NEW  # WARNING: offline; needs the space of a second, uncompressed copy",
		Automate: "qtune jobs start convert VM DISK",
		Image: func(f ImageFacts) *Finding {
			if f.Check == nil {
				return nil
			}
			c := f.Check
			if c.CompressedClusters == 0 {
				return ok("compressed_clusters", "no compressed clusters")
			}
			share := float64(c.CompressedClusters) / float64(max(c.AllocatedClusters, 1))
			ct := orText(f.Info.FormatSpecific.Data.CompressionType, "zlib") // QEMU before 5.1 names none: zlib
			fd := &Finding{Severity: Info, Summary: fmt.Sprintf("%d compressed clusters (%.0f%% of those allocated, %s)", c.CompressedClusters, share*100, ct),
				Evidence: map[string]string{"compressed_clusters": u(c.CompressedClusters), "allocated_clusters": u(c.AllocatedClusters),
					"compressed_ratio": strconv.FormatFloat(share, 'f', 3, 64), "compression_type": ct}}
			if w := f.LiveWriteIOPS; w != nil {
				fd.Evidence["write_iops"] = f1(*w)
				if *w > 0 {
					fd.Severity = Warn
					fd.Summary += fmt.Sprintf(", and the guest writes to it (%.1f writes/s): each write to a compressed cluster allocates a new one", *w)
				}
			}
			return fd
		},
	},
	{
		Name:     "dirty_bit",
		Title:    "dirty bit set (lazy refcounts)",
		Means:    "The image uses lazy refcounts and was not closed cleanly: its refcounts are stale until QEMU rebuilds them at the next open.",
		Matters:  "The next open scans the whole image (slow start); a qemu-img check now reports the stale refcounts as errors.",
		Fix:      "Open it once with QEMU or run a repair with the VM stopped; consider turning lazy refcounts off.",
		Severity: "warn when set.",
		Repair:   "qemu-img check -r all IMAGE  # WARNING: only with the VM stopped",
		Image: func(f ImageFacts) *Finding {
			if f.Info.Format != "qcow2" {
				return nil
			}
			if !f.Info.DirtyFlag {
				return ok("dirty_bit", "dirty bit clear")
			}
			return &Finding{Severity: Warn, Summary: "image was not closed cleanly", Evidence: map[string]string{"dirty": "true"}}
		},
	},
	{
		Name:     "backing_missing",
		Title:    "missing or unreadable backing file",
		Means:    "An image of the backing chain cannot be found or opened.",
		Matters:  "The VM cannot start from this image; reads of clusters not in the top image fail.",
		Fix:      "Restore the backing file at the recorded path, or point the image at it with qemu-img rebase -u.",
		Severity: "critical.",
		Repair:   "qemu-img rebase -u -b BACKING -F FORMAT IMAGE  # WARNING: -u trusts you that BACKING holds the same data",
		Image: func(f ImageFacts) *Finding {
			for _, l := range f.Chain {
				if l.Err != nil {
					return &Finding{Severity: Critical, Summary: "backing file " + l.Path + " unreadable",
						Evidence: map[string]string{"path": l.Path, "error": l.Err.Error()}}
				}
			}
			if len(f.Chain) == 0 {
				return nil
			}
			return ok("backing_missing", "every backing file readable")
		},
	},
	{
		Name:     "backing_depth",
		Title:    "deep backing chain",
		Means:    "Reads of clusters not in the top image walk down the chain, one metadata lookup per level.",
		Matters:  "Each level adds L2 cache pressure and read latency; long chains also make snapshots and backups slower.",
		Fix:      "Flatten the chain into the top image with a block stream (live) or qemu-img convert (offline).",
		Severity: fmt.Sprintf("info from depth 2, warn from depth %d (images below the top one).", chainWarnDepth),
		Automate: "rule \"flatten-long-chains\" {\n  when   = disk.backing_depth > 3\n  window = \"01:00-05:00\"\n  stream { speed = \"50MiB\" }\n}",
		Image: func(f ImageFacts) *Finding {
			d := len(f.Chain)
			ev := map[string]string{"depth": strconv.Itoa(d)}
			switch {
			case d >= chainWarnDepth:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("%d images below the top one", d), Evidence: ev}
			case d >= 2:
				return &Finding{Severity: Info, Summary: fmt.Sprintf("%d images below the top one", d), Evidence: ev}
			}
			return ok("backing_depth", fmt.Sprintf("chain depth %d", d))
		},
	},
	{
		Name:     "internal_snapshots",
		Title:    "internal snapshots",
		Means:    "Snapshots stored inside the qcow2 file share clusters with the active layer through refcounts.",
		Matters:  "Every write to a shared cluster copies it first (COW), refcount updates multiply, and space is never returned.",
		Fix:      "Delete the snapshots that are no longer needed (qemu-img snapshot -d, or virsh snapshot-delete); prefer external snapshots.",
		Severity: fmt.Sprintf("info from one snapshot, warn from %d.", snapshotsWarn),
		Repair:   "qemu-img snapshot -d NAME IMAGE  # WARNING: only with the VM stopped; the snapshot's data is gone",
		Image: func(f ImageFacts) *Finding {
			n := len(f.Info.Snapshots)
			var vmstate uint64
			for _, s := range f.Info.Snapshots {
				vmstate += s.VMStateSize
			}
			ev := map[string]string{"count": strconv.Itoa(n), "vm_state_bytes": u(vmstate)}
			switch {
			case n >= snapshotsWarn:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("%d internal snapshots", n), Evidence: ev}
			case n > 0:
				return &Finding{Severity: Info, Summary: fmt.Sprintf("%d internal snapshots", n), Evidence: ev}
			}
			if f.Info.Format != "qcow2" {
				return nil
			}
			return ok("internal_snapshots", "no internal snapshots")
		},
	},
	{
		Name:     "l2_coverage",
		Title:    "L2 cache does not cover the image",
		Means:    "The qcow2 L2 tables that map the whole virtual disk (virtual size x 8 / cluster size, x16 with extended L2) are larger than the metadata cache.",
		Matters:  "Random reads over more than the covered part miss the cache and cost an extra metadata read each: often half the IOPS.",
		Fix:      "Raise l2-cache-size (QEMU -blockdev l2-cache-size, libvirt <metadata_cache><max_size>) to the full size, or convert to 64 KiB+ clusters.",
		Severity: "warn when the cache covers less than the whole image.",
		Automate: "rule \"l2-cache-covers-disk\" {\n  match { format = \"qcow2\" }\n  when = disk.l2_coverage < 1 && disk.read_iops > 50\n  l2_cache {\n    size = \"auto\"\n    max  = \"64MiB\"\n  }\n}",
		Image: func(f ImageFacts) *Finding {
			need := L2Full(f.Info)
			if need == 0 || f.L2Cache == 0 {
				return nil
			}
			cov := float64(f.L2Cache) / float64(need)
			ev := map[string]string{"l2_full_bytes": u(need), "l2_cache_bytes": u(f.L2Cache), "coverage": strconv.FormatFloat(min(cov, 1), 'f', 2, 64)}
			if cov >= 1 {
				return &Finding{Severity: OK, Summary: "cache covers the whole image", Evidence: ev}
			}
			return &Finding{Severity: Warn, Summary: fmt.Sprintf("cache covers %.0f%% of the image; %s would cover it all", cov*100, u(need)), Evidence: ev}
		},
	},
	{
		Name:     "cluster_size",
		Title:    "small clusters",
		Means:    "The image has clusters below 64 KiB.",
		Matters:  "Smaller clusters mean more L2 metadata per GiB (a larger cache for the same coverage) and more allocations.",
		Fix:      "Convert to 64 KiB clusters (or larger with extended L2).",
		Severity: "info below 64 KiB.",
		Repair:   "qemu-img convert -O qcow2 -o cluster_size=64k IMAGE NEW  # WARNING: offline; needs the space of a second copy",
		Automate: "qtune jobs start convert VM DISK --cluster-size 64KiB",
		Image: func(f ImageFacts) *Finding {
			cs := f.Info.ClusterSize
			if f.Info.Format != "qcow2" || cs == 0 {
				return nil
			}
			ev := map[string]string{"cluster_size": u(cs)}
			if cs < smallClusterBytes {
				return &Finding{Severity: Info, Summary: fmt.Sprintf("%d-byte clusters", cs), Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: fmt.Sprintf("%d-byte clusters", cs), Evidence: ev}
		},
	},
	{
		Name:     "layout",
		Title:    "image layout",
		Means:    "The format options of the image: compat level, lazy refcounts, extended L2, compression type, and its preallocation as far as it shows (full: every cluster allocated and on disk; metadata: every cluster mapped, the file sparse; none: thin).",
		Matters:  "compat 0.10 lacks zero clusters and lazy refcounts; lazy refcounts trade crash recovery time for write speed.",
		Fix:      "qemu-img amend -o compat=1.1 upgrades in place (offline).",
		Severity: "info for compat 0.10; ok otherwise (the options are in the evidence).",
		Repair:   "qemu-img amend -o compat=1.1 IMAGE  # WARNING: only with the VM stopped",
		Image: func(f ImageFacts) *Finding {
			d := f.Info.FormatSpecific.Data
			if f.Info.Format != "qcow2" {
				return nil
			}
			ev := map[string]string{"compat": d.Compat, "lazy_refcounts": strconv.FormatBool(d.LazyRefcounts),
				"extended_l2": strconv.FormatBool(d.ExtendedL2), "compression_type": d.CompressionType,
				"preallocation": Preallocation(f)}
			if d.Compat == "0.10" {
				return &Finding{Severity: Info, Summary: "old compat level 0.10", Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: "compat " + d.Compat, Evidence: ev}
		},
	},
}

// Preallocation infers how an image was preallocated from what it shows:
// qemu-img check's allocated clusters (every one mapped: metadata or
// more) and the file's allocation against the virtual size.
func Preallocation(f ImageFacts) string {
	full := f.Info.VirtualSize > 0 && f.Info.ActualSize >= f.Info.VirtualSize
	switch {
	case f.Info.Format == "qcow2" && f.Check != nil && f.Check.TotalClusters > 0 && f.Check.AllocatedClusters == f.Check.TotalClusters:
		if full {
			return "full"
		}
		return "metadata"
	case full:
		return "full"
	}
	return "none"
}

func ok(_ string, summary string) *Finding { return &Finding{Severity: OK, Summary: summary} }

// L2Full is the L2 cache size that maps the whole virtual disk.
func L2Full(i ImageInfo) uint64 {
	if i.Format != "qcow2" || i.ClusterSize == 0 {
		return 0
	}
	per := uint64(8)
	if i.FormatSpecific.Data.ExtendedL2 {
		per = 16
	}
	return i.VirtualSize / i.ClusterSize * per
}

// CheckImage runs every table check on an image's facts.
func CheckImage(f ImageFacts) Report {
	r := Report{Target: f.Path}
	if f.Shared {
		r.Notes = append(r.Notes, "image is in use: read with force-share (-U), figures may be stale")
	}
	for _, c := range Checks {
		if c.Image == nil {
			continue
		}
		fd := c.Image(f)
		if fd == nil {
			continue
		}
		fd.Check = c.Name
		if fd.Severity > OK && fd.Fix == "" {
			fd.Fix, fd.Repair, fd.Automate = c.Fix, c.Repair, c.Automate
		}
		r.Findings = append(r.Findings, *fd)
	}
	r.NotRun = notRun(f)
	return r
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
