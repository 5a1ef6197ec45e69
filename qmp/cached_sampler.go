package qmp

import (
	"context"
	"fmt"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// DiskSampler samples one VM again and again. Counters change every
// second and come from query-blockstats each time; what query-block says
// (the disks, their nodes, files, cache modes, throttles, chains,
// io-status) changes rarely, and decoding it every second was the larger
// half of a sampling agent's CPU. It is read again only when Invalidate
// says something changed (a command that is not a query, a QEMU event),
// when the counters name a disk it does not know, and after MaxAge.
type DiskSampler struct {
	b      *Block
	MaxAge time.Duration // default 30s
	Now    func() time.Time

	disks []cachedDisk     // from the last query-block, with a medium
	all   map[statsKey]int // every device it listed: its index in disks, -1 for one without a medium
	at    time.Time        // when it was read; zero: read it again

	// Reused from one sample to the next: the decoded counters and, per
	// cached disk, its entry in them.
	stats []sampledStats
	slots []*sampledStats
}

// statsKey is diskKey without building a string: the QOM path when
// there is one, else the device name.
type statsKey struct{ qdev, device string }

func keyOf(qdev, device string) statsKey {
	if qdev != "" {
		return statsKey{qdev: qdev}
	}
	return statsKey{device: device}
}

type cachedDisk struct {
	disk   sample.Disk // everything but Time and Counters
	health DiskHealth  // Failed and Invalid come from the counters
}

// NewDiskSampler samples through b.
func NewDiskSampler(b *Block) *DiskSampler { return &DiskSampler{b: b} }

// Invalidate makes the next Sample read query-block again.
func (s *DiskSampler) Invalidate() { s.at = time.Time{} }

// Sample reads every disk of vm, like SampleDisksHealth.
func (s *DiskSampler) Sample(ctx context.Context, vm string, o SampleOptions) ([]sample.Disk, map[string]DiskHealth, error) {
	now := s.Now
	if now == nil {
		now = time.Now
	}
	maxAge := s.MaxAge
	if maxAge == 0 {
		maxAge = 30 * time.Second
	}
	fresh := false
	if s.at.IsZero() || now().Sub(s.at) > maxAge {
		if err := s.refresh(ctx, vm, o, now()); err != nil {
			return nil, nil, err
		}
		fresh = true
	}
	ret, err := s.b.ex.Execute(ctx, "query-blockstats", nil)
	if err != nil {
		return nil, nil, err
	}
	if s.stats, err = decodeSampledStats(ret, s.stats); err != nil {
		return nil, nil, fmt.Errorf("qmp query-blockstats: decode reply: %w", err)
	}
	at := now()
	if !s.match() && !fresh {
		// A disk came or went since query-block was read.
		if err := s.refresh(ctx, vm, o, at); err != nil {
			return nil, nil, err
		}
		s.match()
	}
	out := make([]sample.Disk, 0, len(s.disks))
	health := make(map[string]DiskHealth, len(s.disks))
	for j, c := range s.disks {
		st := s.slots[j]
		if st == nil {
			continue
		}
		d := c.disk
		d.Time, d.Counters = at, st.counters()
		out = append(out, d)
		h := c.health
		h.Failed = st.Stats.FailedRdOps + st.Stats.FailedWrOps + st.Stats.FailedFlushOps
		h.Invalid = st.Stats.InvalidRdOps + st.Stats.InvalidWrOps + st.Stats.InvalidFlushOps
		health[d.Name] = h
	}
	return out, health, nil
}

func (s *DiskSampler) refresh(ctx context.Context, vm string, o SampleOptions, at time.Time) error {
	infos, err := s.b.QueryBlock(ctx)
	if err != nil {
		return err
	}
	s.disks = s.disks[:0]
	s.all = make(map[statsKey]int, len(infos))
	for _, bi := range infos {
		k := keyOf(bi.QDev, bi.Device)
		s.all[k] = -1
		if bi.Inserted == nil {
			continue
		}
		s.all[k] = len(s.disks)
		s.disks = append(s.disks, cachedDisk{disk: diskFromInfo(vm, bi, o.L2CacheSize),
			health: DiskHealth{IOStatus: bi.IOStatus, Writeback: bi.Inserted.Cache.Writeback, DetectZeroes: bi.Inserted.DetectZeroes}})
	}
	s.at = at
	return nil
}

// match points each cached disk's slot at its counters and says whether
// query-blockstats lists the devices query-block did: one it did not list
// was hot-plugged (or got a medium) since, and a disk with a medium that
// has no counters now went away.
func (s *DiskSampler) match() bool {
	if cap(s.slots) < len(s.disks) {
		s.slots = make([]*sampledStats, len(s.disks))
	}
	s.slots = s.slots[:len(s.disks)]
	clear(s.slots)
	ok := true
	for i := range s.stats {
		st := &s.stats[i]
		j, listed := s.all[keyOf(st.QDev, st.Device)]
		switch {
		case !listed:
			ok = false
		case j >= 0:
			s.slots[j] = st
		}
	}
	for _, st := range s.slots {
		if st == nil {
			ok = false
		}
	}
	return ok
}

// sampledStats is the part of a query-blockstats entry a sample uses.
// Decoding only these fields (the file node's "parent" counters and
// timed stats are skipped, not built) is most of the cost of a cycle.
type sampledStats struct {
	Device string `json:"device"`
	QDev   string `json:"qdev"`
	Stats  struct {
		RdBytes          uint64            `json:"rd_bytes"`
		WrBytes          uint64            `json:"wr_bytes"`
		RdOperations     uint64            `json:"rd_operations"`
		WrOperations     uint64            `json:"wr_operations"`
		FlushOperations  uint64            `json:"flush_operations"`
		RdTotalTimeNs    uint64            `json:"rd_total_time_ns"`
		WrTotalTimeNs    uint64            `json:"wr_total_time_ns"`
		FlushTotalTimeNs uint64            `json:"flush_total_time_ns"`
		FailedRdOps      uint64            `json:"failed_rd_operations"`
		FailedWrOps      uint64            `json:"failed_wr_operations"`
		FailedFlushOps   uint64            `json:"failed_flush_operations"`
		InvalidRdOps     uint64            `json:"invalid_rd_operations"`
		InvalidWrOps     uint64            `json:"invalid_wr_operations"`
		InvalidFlushOps  uint64            `json:"invalid_flush_operations"`
		RdLatencyHist    *LatencyHistogram `json:"rd_latency_histogram"`
		WrLatencyHist    *LatencyHistogram `json:"wr_latency_histogram"`
	} `json:"stats"`
}

func (s *sampledStats) counters() sample.Counters {
	st := &s.Stats
	return sample.Counters{
		ReadOps: st.RdOperations, WriteOps: st.WrOperations, FlushOps: st.FlushOperations,
		ReadBytes: st.RdBytes, WriteBytes: st.WrBytes,
		ReadTimeNs: st.RdTotalTimeNs, WriteTimeNs: st.WrTotalTimeNs, FlushTimeNs: st.FlushTotalTimeNs,
		ReadHist: histOf(st.RdLatencyHist), WriteHist: histOf(st.WrLatencyHist),
	}
}
