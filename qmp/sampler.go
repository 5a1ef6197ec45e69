package qmp

import (
	"context"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// DefaultL2CacheMax is the L2 cache QEMU ≥ 3.1 gives a qcow2 node on Linux
// when no option says otherwise: enough for the whole disk, at most 32 MiB.
const DefaultL2CacheMax = 32 << 20

// SampleOptions tune SampleDisks.
type SampleOptions struct {
	// Now stamps the counters; time.Now when nil.
	Now func() time.Time
	// L2CacheSize holds known l2-cache-size settings by format node name
	// (from the VM's command line or from what qtune set): no QMP command
	// reports them.
	L2CacheSize map[string]uint64
}

// SampleDisks reads every disk of one VM: query-block for what the disk
// is, query-blockstats for its counters. Disks without a medium are left
// out. The counters are stamped right after query-blockstats returns.
func (b *Block) SampleDisks(ctx context.Context, vm string, o SampleOptions) ([]sample.Disk, error) {
	disks, _, err := b.SampleDisksHealth(ctx, vm, o)
	return disks, err
}

// DiskHealth is what QEMU says about a disk's errors and guest-visible
// settings, beside its counters.
type DiskHealth struct {
	// IOStatus is query-block's io-status: ok, failed or nospace; empty
	// when the device model does not report one.
	IOStatus string
	// Writeback is the guest-visible write cache: off for writethrough
	// and directsync.
	Writeback    bool
	DetectZeroes string
	// Failed and Invalid count failed and invalid operations so far
	// (reads, writes and flushes).
	Failed, Invalid uint64
}

// SampleDisksHealth is SampleDisks with each disk's DiskHealth, keyed by
// disk name, from the same two calls.
func (b *Block) SampleDisksHealth(ctx context.Context, vm string, o SampleOptions) ([]sample.Disk, map[string]DiskHealth, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	infos, err := b.QueryBlock(ctx)
	if err != nil {
		return nil, nil, err
	}
	stats, err := b.QueryBlockstats(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	at := now()
	byKey := make(map[string]BlockStats, len(stats))
	for _, s := range stats {
		byKey[diskKey(s.QDev, s.Device)] = s
	}
	var out []sample.Disk
	health := map[string]DiskHealth{}
	for _, bi := range infos {
		if bi.Inserted == nil {
			continue
		}
		st, ok := byKey[diskKey(bi.QDev, bi.Device)]
		if !ok {
			continue
		}
		d := diskFromInfo(vm, bi, o.L2CacheSize)
		d.Time = at
		d.Counters = countersOf(st.Stats)
		out = append(out, d)
		s := st.Stats
		health[d.Name] = DiskHealth{
			IOStatus: bi.IOStatus, Writeback: bi.Inserted.Cache.Writeback, DetectZeroes: bi.Inserted.DetectZeroes,
			Failed:  s.FailedRdOps + s.FailedWrOps + s.FailedFlushOps,
			Invalid: s.InvalidRdOps + s.InvalidWrOps + s.InvalidFlushOps,
		}
	}
	return out, health, nil
}

func diskKey(qdev, device string) string {
	if qdev != "" {
		return "q:" + qdev
	}
	return "d:" + device
}

func diskFromInfo(vm string, bi BlockInfo, l2 map[string]uint64) sample.Disk {
	in := bi.Inserted
	id := DiskID{QOMPath: bi.QDev, Device: bi.Device}
	d := sample.Disk{
		VM: vm, Name: id.ShortID(), QOMPath: bi.QDev, Node: in.NodeName, Format: in.Driver,
		Path: ImagePath(in.File), CacheDirect: in.Cache.Direct, CacheNoFlush: in.Cache.NoFlush,
		BackingDepth: in.BackingFileDepth, Throttle: in.IOThrottle, IOStatus: bi.IOStatus,
	}
	if img := in.Image; img != nil {
		d.VirtualSize, d.Allocation, d.ClusterSize = img.VirtualSize, img.ActualSize, img.ClusterSize
		if img.Filename != "" {
			d.Path = ImagePath(img.Filename)
		}
		if depth := img.ChainDepth(); depth > d.BackingDepth {
			d.BackingDepth = depth
		}
		if fs := img.FormatSpecific; fs != nil && fs.Type == "qcow2" {
			d.ExtendedL2 = fs.Data.ExtendedL2
		}
	}
	if d.Format == "qcow2" {
		if v, ok := l2[in.NodeName]; ok {
			d.L2CacheSize = v
		} else {
			d.L2CacheSize = L2CacheInForce(d, 0)
		}
	}
	return d
}

func countersOf(s BlockDeviceStats) sample.Counters {
	return sample.Counters{
		ReadOps: s.RdOperations, WriteOps: s.WrOperations, FlushOps: s.FlushOperations,
		ReadBytes: s.RdBytes, WriteBytes: s.WrBytes,
		ReadTimeNs: s.RdTotalTimeNs, WriteTimeNs: s.WrTotalTimeNs, FlushTimeNs: s.FlushTotalTimeNs,
		ReadHist: histOf(s.RdLatencyHist), WriteHist: histOf(s.WrLatencyHist),
	}
}

func histOf(h *LatencyHistogram) *sample.Histogram {
	if h == nil {
		return nil
	}
	return &sample.Histogram{Boundaries: h.Boundaries, Bins: h.Bins}
}

// L2CacheInForce is the qcow2 L2 cache QEMU gives a disk whose metadata
// cache is capped at cacheMax (libvirt's <metadata_cache><max_size>,
// which becomes QEMU's cache-size, nearly all of it L2; 0: QEMU's default
// cap): what covers the whole disk, at most the cap; 0 when the disk's
// size or cluster size is not known. The agent, qtune stats and qtune
// doctor all read this figure, computed here.
func L2CacheInForce(d sample.Disk, cacheMax uint64) uint64 {
	if cacheMax == 0 {
		cacheMax = DefaultL2CacheMax
	}
	return min(d.L2Needed(), cacheMax)
}
