package doctor

import (
	"fmt"
	"strconv"
)

// liveChecks read a running VM; they join the table in init.
var liveChecks = []Check{
	{
		Name:     "vm_io_error",
		Title:    "VM paused on an I/O error",
		Means:    "QEMU stopped the VM because a disk request failed and the disk's error policy (werror/rerror=stop, or enospc for a full filesystem) says to stop.",
		Matters:  "The guest is frozen until someone acts; its applications see a hang, and a restart without fixing the cause pauses it again.",
		Fix:      "Find the failed disk (io_status), fix the cause (free space on the image's filesystem, storage back), then resume the VM (virsh resume, or QMP cont).",
		Severity: "critical while paused on an I/O error.",
		Repair:   "virsh resume DOMAIN  # or QMP {\"execute\":\"cont\"}; WARNING: only after the cause is fixed, or it pauses again",
		Live: func(l LiveDisk) *Finding {
			switch l.RunState {
			case "":
				return nil
			case "io-error":
				return &Finding{Severity: Critical, Summary: "VM is paused on an I/O error", Evidence: map[string]string{"run_state": l.RunState}}
			}
			return &Finding{Severity: OK, Summary: "VM " + l.RunState}
		},
	},
	{
		Name:     "io_status",
		Title:    "disk I/O status not ok",
		Means:    "QEMU recorded an error on the disk: nospace (the image's filesystem is full) or failed (any other error from the host).",
		Matters:  "Guest writes are failing or the VM is paused; with nospace every thin image on that filesystem is next.",
		Fix:      "nospace: free space or grow the filesystem under the image, then resume; failed: check the host's kernel log and storage.",
		Severity: "critical for nospace and failed.",
		Live: func(l LiveDisk) *Finding {
			switch l.IOStatus {
			case "":
				return nil
			case "ok":
				return &Finding{Severity: OK, Summary: "io-status ok"}
			}
			return &Finding{Severity: Critical, Summary: "io-status " + l.IOStatus, Evidence: map[string]string{"io_status": l.IOStatus}}
		},
	},
	{
		Name:     "failed_ops",
		Title:    "failed or invalid operations keep growing",
		Means:    "QEMU's failed (the host returned an error) or invalid (out of range, bad request) operation counters went up between two samples.",
		Matters:  "Failed operations are I/O errors the guest sees (or that pause it); invalid ones are a guest driver or a resized disk out of step.",
		Fix:      "Failed: the host's storage (kernel log, filesystem space); invalid: the guest's kernel log and the disk's size.",
		Severity: "critical when failed operations grow; warn when invalid ones grow; info when earlier failures are counted but none now.",
		Live: func(l LiveDisk) *Finding {
			e := l.Errors
			if e == nil {
				return nil
			}
			ev := map[string]string{"failed": u(e.Failed[1]), "invalid": u(e.Invalid[1]),
				"failed_new": u(e.Failed[1] - e.Failed[0]), "invalid_new": u(e.Invalid[1] - e.Invalid[0])}
			switch {
			case e.Failed[1] > e.Failed[0]:
				return &Finding{Severity: Critical, Summary: fmt.Sprintf("%d failed operations in %s", e.Failed[1]-e.Failed[0], l.Rates.Interval), Evidence: ev}
			case e.Invalid[1] > e.Invalid[0]:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("%d invalid operations in %s", e.Invalid[1]-e.Invalid[0], l.Rates.Interval), Evidence: ev}
			case e.Failed[1]+e.Invalid[1] > 0:
				return &Finding{Severity: Info, Summary: "earlier failed or invalid operations, none now", Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: "no failed or invalid operations"}
		},
	},
	{
		Name:    "cache_mode",
		Title:   "cache mode",
		Means:   "How guest writes reach the disk: writeback and none complete writes before they are on stable storage and honour flushes; writethrough and directsync flush every write; unsafe (cache.no-flush) ignores the guest's flushes.",
		Matters: "unsafe loses data the guest was told is on disk at a host crash; writethrough and directsync turn every write into a write plus a flush, a large cost on write-heavy disks.",
		Fix:     "Use cache=none (direct I/O, with aio=native or io_uring) for most disks; never unsafe for data that matters.",
		Severity: fmt.Sprintf("critical for unsafe (no-flush); warn for writethrough or directsync with %d or more writes/s, info for them on quieter disks.",
			writeHeavyIOPS),
		Live: func(l LiveDisk) *Finding {
			if !l.CacheKnown {
				// Only the host side is known (the agent's samples):
				// enough to name the data-loss risk.
				if l.CacheNoFlush {
					return &Finding{Severity: Critical, Summary: "cache.no-flush: the guest's flushes are ignored", Evidence: map[string]string{"no_flush": "true"}}
				}
				return nil
			}
			mode := l.CacheMode()
			ev := map[string]string{"cache": mode, "write_iops": f1(l.Rates.WriteIOPS), "flush_iops": f1(l.Rates.FlushIOPS)}
			switch {
			case l.CacheNoFlush:
				return &Finding{Severity: Critical, Summary: "cache " + mode + ": the guest's flushes are ignored", Evidence: ev}
			case l.CacheWriteback:
				return &Finding{Severity: OK, Summary: "cache " + mode, Evidence: ev}
			case l.Rates.WriteIOPS >= writeHeavyIOPS:
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("cache %s on a disk writing %.0f/s: every write is flushed", mode, l.Rates.WriteIOPS), Evidence: ev}
			}
			return &Finding{Severity: Info, Summary: "cache " + mode + ": every write is flushed", Evidence: ev}
		},
	},
	{
		Name:     "aio",
		Title:    "aio mode against cache.direct",
		Means:    "aio=threads runs each request in a thread pool; aio=native (Linux AIO) and io_uring submit from QEMU's own thread and need (native) or benefit from cache.direct=on.",
		Matters:  "With direct I/O, threads costs a context switch per request: more CPU and latency at high IOPS.",
		Fix:      "With cache=none, use aio=native (libvirt io='native') or io_uring; aio cannot change while the VM runs.",
		Severity: "info for aio=threads with cache.direct=on; ok otherwise.",
		Live: func(l LiveDisk) *Finding {
			if l.AIO == "" || !l.CacheKnown {
				return nil
			}
			ev := map[string]string{"aio": l.AIO, "cache_direct": strconv.FormatBool(l.CacheDirect)}
			if l.AIO == "threads" && l.CacheDirect {
				return &Finding{Severity: Info, Summary: "aio=threads with direct I/O", Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: "aio=" + l.AIO, Evidence: ev}
		},
	},
	{
		Name:     "throttle",
		Title:    "throttle in force",
		Means:    "An I/O limit is set on the disk; the disk is pinned when it runs at 90% or more of a limit.",
		Matters:  "A pinned disk is held down: its guest waits on the throttle, not on storage, and its demand cannot be seen.",
		Fix:      "Check that the limit is intended (a qtune rule, libvirt <iotune>, or by hand); raise it if the guest needs more.",
		Severity: "warn when pinned at a limit; info when a limit is set and the disk runs below it.",
		Live: func(l LiveDisk) *Finding {
			t := l.Throttle
			if !t.Active() {
				return &Finding{Severity: OK, Summary: "no throttle"}
			}
			b, _ := jsonString(t)
			ev := map[string]string{"throttle": b, "read_iops": f1(l.Rates.ReadIOPS), "write_iops": f1(l.Rates.WriteIOPS),
				"read_bps": f1(l.Rates.ReadBPS), "write_bps": f1(l.Rates.WriteBPS)}
			if at := pinnedAt(t, l.Rates); at != "" && l.Rates.Interval > 0 {
				return &Finding{Severity: Warn, Summary: "pinned at its throttle: " + at, Evidence: ev}
			}
			return &Finding{Severity: Info, Summary: "throttle in force, disk below it", Evidence: ev}
		},
	},
	{
		Name:     "latency_overhead",
		Title:    "disk latency against the host device",
		Means:    "The disk's average latency as the guest sees it (QEMU's counters) against the average latency of the host block device under its image (/proc/diskstats) over the same interval.",
		Matters:  "The difference is what the layers above the device add: the image format (metadata lookups, COW, a missed L2 cache), the backing chain, the host filesystem and throttling.",
		Fix:      "Look at the image findings (l2_coverage, backing_depth, internal_snapshots, fragmentation) and the throttle; qtune does not measure a chain's share on its own (QEMU 7.2 counts I/O per device, not per layer).",
		Severity: fmt.Sprintf("info when the disk's reads or writes take %dx the device's time and %.0f ms more; ok otherwise; no finding without enough I/O or a device to compare with.", overheadFactor, overheadMinMs),
		Live: func(l LiveDisk) *Finding {
			r, h := l.Rates, l.Host
			secs := r.Interval.Seconds()
			rr, rok := overhead(r.ReadLatencyMs, h.ReadLatencyMs, r.ReadIOPS*secs)
			wr, wok := overhead(r.WriteLatencyMs, h.WriteLatencyMs, r.WriteIOPS*secs)
			if !rok && !wok {
				return nil
			}
			ev := map[string]string{"device": l.HostDevice}
			worst := ""
			if rok {
				ev["read_ms"], ev["host_read_ms"] = f2(r.ReadLatencyMs), f2(h.ReadLatencyMs)
				if rr >= overheadFactor && r.ReadLatencyMs-h.ReadLatencyMs >= overheadMinMs {
					worst = fmt.Sprintf("reads %.2f ms against %.2f ms on the device", r.ReadLatencyMs, h.ReadLatencyMs)
				}
			}
			if wok {
				ev["write_ms"], ev["host_write_ms"] = f2(r.WriteLatencyMs), f2(h.WriteLatencyMs)
				if wr >= overheadFactor && r.WriteLatencyMs-h.WriteLatencyMs >= overheadMinMs && worst == "" {
					worst = fmt.Sprintf("writes %.2f ms against %.2f ms on the device", r.WriteLatencyMs, h.WriteLatencyMs)
				}
			}
			if worst != "" {
				return &Finding{Severity: Info, Summary: worst, Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: "latency close to the device's", Evidence: ev}
		},
	},
	{
		Name:     "discard",
		Title:    "discard and detect-zeroes on a thin image",
		Means:    "A thin image (qcow2, or sparse raw) only shrinks on the host when the guest's discards reach it (discard=unmap); detect-zeroes=unmap also turns written zeroes into holes.",
		Matters:  "With discard ignored, space the guest frees stays allocated on the host, and thin provisioning drifts towards full allocation and ENOSPC.",
		Fix:      "Set discard=unmap (libvirt <driver discard='unmap'>) and let the guest trim (fstrim.timer); detect_zeroes='unmap' where guests write zeroes to free space.",
		Severity: "info for a thin image with discard ignored; ok otherwise.",
		Live: func(l LiveDisk) *Finding {
			if l.Discard == "" || !l.Thin() {
				return nil
			}
			ev := map[string]string{"discard": l.Discard, "detect_zeroes": l.DetectZeroes}
			if l.Discard != "unmap" && l.Discard != "on" {
				return &Finding{Severity: Info, Summary: "thin image with discard " + l.Discard, Evidence: ev}
			}
			return &Finding{Severity: OK, Summary: "discard " + l.Discard, Evidence: ev}
		},
	},
}

// Live checks come first: a paused VM matters more than its layout.
func init() { Checks = append(liveChecks, Checks...) }
