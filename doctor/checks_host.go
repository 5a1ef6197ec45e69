package doctor

import (
	"fmt"
	"strconv"
	"strings"
)

// Thresholds of the host checks.
const (
	fragWarnAvgExtent = 1 << 20 // average extent below this, with fragWarnExtents or more: warn
	fragWarnExtents   = 128
	fsFreeWarn        = 0.10
	fsFreeCritical    = 0.05
)

// hostChecks are the checks of the file and filesystem under an image;
// they join the table in init so checks.go stays about the image.
var hostChecks = []Check{
	{
		Name:     "fragmentation",
		Title:    "fragmented image file",
		Means:    "The image file is spread over many small extents on the host filesystem (FIEMAP).",
		Matters:  "Sequential guest I/O becomes random host I/O: more seeks on disks, more requests everywhere.",
		Fix:      "Copy the image to a fresh file (qemu-img convert, or a live mirror/convert job), preferably with preallocation.",
		Severity: fmt.Sprintf("warn with %d extents or more averaging under 1 MiB; info from 32 extents averaging under 8 MiB.", fragWarnExtents),
		Repair:   "qemu-img convert -O qcow2 -o preallocation=metadata IMAGE NEW  # WARNING: offline; needs the space of a second copy",
		Automate: "qtune jobs start convert VM DISK --preallocation falloc",
		Image: func(f ImageFacts) *Finding {
			if f.ExtentsErr != nil || f.Info.ActualSize == 0 {
				return nil
			}
			n := f.Extents
			avg := f.Info.ActualSize / max(n, 1)
			ev := map[string]string{"extents": u(n), "allocated_bytes": u(f.Info.ActualSize), "avg_extent_bytes": u(avg)}
			sum := fmt.Sprintf("%d extents, %d bytes on average", n, avg)
			switch {
			case n >= fragWarnExtents && avg < fragWarnAvgExtent:
				return &Finding{Severity: Warn, Summary: sum, Evidence: ev}
			case n >= 32 && avg < 8<<20:
				return &Finding{Severity: Info, Summary: sum, Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: sum, Evidence: ev}
		},
	},
	{
		Name:     "fs_space",
		Title:    "filesystem space and thin-provisioning overcommit",
		Means:    "The free space of the filesystem under the image, against how much more the images on it may still grow (virtual size minus allocation, summed over every image checked in the same run that sits on that filesystem: all disks of the host with --libvirt or --qmp-dir).",
		Matters:  "Thin images that grow into a full filesystem fail the guest's writes with ENOSPC; with werror=stop (or virtio's default enospc) the VM pauses.",
		Fix:      "Free space or grow the filesystem; move disks to roomier storage; preallocate images that must not fail.",
		Severity: "critical below 5% free; warn below 10% free or when the images on the filesystem can grow past its free space (overcommitted).",
		Automate: "rule \"move-off-full-filesystem\" {\n  when = disk.fs_free_bytes < 20000000000\n  mirror { target_dir = \"/srv/roomy\" }\n}",
		Image: func(f ImageFacts) *Finding {
			if f.FSErr != nil || f.FS.Size == 0 {
				return nil
			}
			ratio := float64(f.FS.Free) / float64(f.FS.Size)
			growth, images := f.Growth(), max(f.FSImages, 1)
			all := max(f.FSGrowth, growth)
			ev := map[string]string{"fs_free_bytes": u(f.FS.Free), "fs_size_bytes": u(f.FS.Size),
				"free_ratio": strconv.FormatFloat(ratio, 'f', 3, 64), "may_grow_bytes": u(growth), "mount": f.FS.Mount,
				"images_on_fs": strconv.Itoa(images), "fs_may_grow_bytes": u(all)}
			switch {
			case ratio < fsFreeCritical:
				return &Finding{Severity: Critical, Summary: fmt.Sprintf("%.1f%% free on %s", ratio*100, f.FS.Mount), Evidence: ev}
			case ratio < fsFreeWarn:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("%.1f%% free on %s", ratio*100, f.FS.Mount), Evidence: ev}
			case all > f.FS.Free:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("%d image(s) on %s may grow by %d bytes, %d free (overcommit %.1fx)",
					images, f.FS.Mount, all, f.FS.Free, float64(all)/float64(max(f.FS.Free, 1))), Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: fmt.Sprintf("%.0f%% free on %s", ratio*100, f.FS.Mount)}
		},
	},
	{
		Name:     "filesystem",
		Title:    "host filesystem and mount options",
		Means:    "The type and mount options of the filesystem that holds the image.",
		Matters:  "nobarrier (or barrier=0) loses flushed guest data on power loss; tmpfs loses everything at reboot and has no FIEMAP.",
		Fix:      "Mount with barriers; keep images on persistent storage.",
		Severity: "critical with nobarrier or barrier=0; warn on tmpfs; ok otherwise (type and options in the evidence).",
		Image: func(f ImageFacts) *Finding {
			if f.FSErr != nil || f.FS.Type == "" {
				return nil
			}
			ev := map[string]string{"type": f.FS.Type, "options": f.FS.Options, "mount": f.FS.Mount}
			opts := "," + f.FS.Options + ","
			switch {
			case strings.Contains(opts, ",nobarrier,") || strings.Contains(opts, ",barrier=0,"):
				return &Finding{Severity: Critical, Summary: f.FS.Type + " mounted without write barriers", Evidence: ev}
			case f.FS.Type == "tmpfs":
				return &Finding{Severity: Warn, Summary: "image on tmpfs (lost at reboot)", Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: f.FS.Type + " on " + f.FS.Mount}
		},
	},
	{
		Name:     "io_scheduler",
		Title:    "host I/O scheduler and queue",
		Means:    "The block-layer scheduler and queue settings of the host device under the image.",
		Matters:  "bfq spends CPU on every request and caps IOPS on fast non-rotational devices; a rotational disk without a scheduler (none) lets one VM's stream starve the others' reads.",
		Fix:      "echo mq-deadline (or none on NVMe) > /sys/block/DEV/queue/scheduler, and make it stick with a udev rule.",
		Severity: "info for bfq on a non-rotational device and for none on a rotational one; ok otherwise (settings in the evidence).",
		Image: func(f ImageFacts) *Finding {
			q := f.Queue
			if f.QueueErr != nil || q.Scheduler == "" {
				return nil
			}
			ev := map[string]string{"device": q.Device, "scheduler": q.Scheduler, "rotational": strconv.FormatBool(q.Rotational),
				"nr_requests": strconv.Itoa(q.NrRequests), "read_ahead_kb": strconv.Itoa(q.ReadAheadKB)}
			sum := fmt.Sprintf("%s on device %s (rotational %v)", q.Scheduler, q.Device, q.Rotational)
			if (q.Scheduler == "bfq" && !q.Rotational) || (q.Scheduler == "none" && q.Rotational) {
				return &Finding{Severity: Info, Summary: sum, Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: sum, Evidence: ev}
		},
	},
}

func init() { Checks = append(Checks, hostChecks...) }
