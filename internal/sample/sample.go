// Package sample holds what one sampling pass learns about a disk, and the
// rates derived between two passes. It is the one small type that flows from
// sampling (qtune stats, the agent's runners) to policy evaluation; it knows
// nothing of how the numbers were read.
package sample

import (
	"errors"
	"math"
	"time"
)

var (
	// ErrNoInterval means two samples were taken at the same instant or out
	// of order: no rate can be derived.
	ErrNoInterval = errors.New("sample: no time between samples")
	// ErrCounterReset means a counter went backwards (the VM restarted or
	// the disk was replaced): the pair cannot give a rate.
	ErrCounterReset = errors.New("sample: counters went backwards")
)

// Counters are the cumulative block counters of one disk as QEMU keeps them.
type Counters struct {
	ReadOps     uint64 `json:"read_ops"`
	WriteOps    uint64 `json:"write_ops"`
	FlushOps    uint64 `json:"flush_ops"`
	ReadBytes   uint64 `json:"read_bytes"`
	WriteBytes  uint64 `json:"write_bytes"`
	ReadTimeNs  uint64 `json:"read_time_ns"`
	WriteTimeNs uint64 `json:"write_time_ns"`
	FlushTimeNs uint64 `json:"flush_time_ns"`
	// Histograms are nil unless latency histograms are enabled on the disk.
	ReadHist  *Histogram `json:"read_hist,omitempty"`
	WriteHist *Histogram `json:"write_hist,omitempty"`
}

// Histogram is a cumulative latency histogram: Bins has one more entry than
// Boundaries; bin i counts latencies in [Boundaries[i-1], Boundaries[i]) ns,
// the last bin everything from the last boundary up.
type Histogram struct {
	Boundaries []uint64 `json:"boundaries"`
	Bins       []uint64 `json:"bins"`
}

// Throttle is the I/O limit in force on a disk; zero means unlimited. The
// JSON names are QEMU's block_set_io_throttle argument names.
type Throttle struct {
	BPS             uint64 `json:"bps"`
	BPSRead         uint64 `json:"bps_rd"`
	BPSWrite        uint64 `json:"bps_wr"`
	IOPS            uint64 `json:"iops"`
	IOPSRead        uint64 `json:"iops_rd"`
	IOPSWrite       uint64 `json:"iops_wr"`
	BPSMax          uint64 `json:"bps_max,omitempty"`
	BPSReadMax      uint64 `json:"bps_rd_max,omitempty"`
	BPSWriteMax     uint64 `json:"bps_wr_max,omitempty"`
	IOPSMax         uint64 `json:"iops_max,omitempty"`
	IOPSReadMax     uint64 `json:"iops_rd_max,omitempty"`
	IOPSWriteMax    uint64 `json:"iops_wr_max,omitempty"`
	BPSMaxLen       uint64 `json:"bps_max_length,omitempty"`
	BPSReadMaxLen   uint64 `json:"bps_rd_max_length,omitempty"`
	BPSWriteMaxLen  uint64 `json:"bps_wr_max_length,omitempty"`
	IOPSMaxLen      uint64 `json:"iops_max_length,omitempty"`
	IOPSReadMaxLen  uint64 `json:"iops_rd_max_length,omitempty"`
	IOPSWriteMaxLen uint64 `json:"iops_wr_max_length,omitempty"`
	IOPSSize        uint64 `json:"iops_size,omitempty"`
	Group           string `json:"group,omitempty"`
}

// Active reports whether any limit is set.
func (t Throttle) Active() bool {
	return t.BPS|t.BPSRead|t.BPSWrite|t.IOPS|t.IOPSRead|t.IOPSWrite != 0
}

// Disk is one disk of one VM as seen at Time.
type Disk struct {
	VM      string    `json:"vm"`   // libvirt domain name, or the plain QEMU VM's name
	Name    string    `json:"disk"` // target (vda) under libvirt; device id under plain QEMU
	QOMPath string    `json:"qom_path,omitempty"`
	Node    string    `json:"node,omitempty"` // format node-name
	Format  string    `json:"format,omitempty"`
	Path    string    `json:"path,omitempty"` // image file
	Time    time.Time `json:"time"`
	Counters
	VirtualSize uint64 `json:"virtual_size,omitempty"`
	Allocation  uint64 `json:"allocation,omitempty"`
	ClusterSize uint64 `json:"cluster_size,omitempty"`
	ExtendedL2  bool   `json:"extended_l2,omitempty"`
	L2CacheSize uint64 `json:"l2_cache_size,omitempty"` // 0 when not known
	// Recorded names the knobs whose figure here is qtune's record of
	// what it set, not a reading: QEMU cannot report them (l2_cache).
	Recorded     []string `json:"recorded,omitempty"`
	BackingDepth int      `json:"backing_depth"`
	CacheDirect  bool     `json:"cache_direct"`
	CacheNoFlush bool     `json:"cache_no_flush"`
	Throttle     Throttle `json:"throttle"`
	// Host side of the disk: utilisation (0..1) of the block device under
	// the image and free bytes on its filesystem; NaN/0 when unknown.
	HostDevUtil float64 `json:"host_dev_util"`
	FSFreeBytes uint64  `json:"fs_free_bytes"`
	// HostDevice is "major:minor" of the whole block device under the
	// image: disks with the same one are neighbours. Empty when unknown.
	HostDevice string `json:"host_device,omitempty"`
	// What that device did over the last interval, from /proc/diskstats
	// (all its I/O, the host's own included); NaN when unknown.
	HostDevReadBPS        float64 `json:"host_dev_read_bps"`
	HostDevWriteBPS       float64 `json:"host_dev_write_bps"`
	HostDevReadLatencyMs  float64 `json:"host_dev_read_latency_ms"`
	HostDevWriteLatencyMs float64 `json:"host_dev_write_latency_ms"`
	HostDevQueueDepth     float64 `json:"host_dev_queue_depth"`
	// IOStatus is QEMU's io-status of the disk (ok, failed, nospace);
	// empty when the backend does not report it.
	IOStatus string `json:"io_status,omitempty"`
	// Health is what qtune's disk checks found when they last ran on the
	// disk; nil until they have.
	Health *Health `json:"health,omitempty"`
	// Timed is QEMU's timed statistics of the disk's last interval, where
	// the disk has them (under libvirt, a disk whose <driver> declares
	// <statistics><statistic interval='N'/>, in libvirt releases that
	// return them); nil otherwise.
	Timed *Timed `json:"timed,omitempty"`
}

// Timed is what QEMU measured over the last complete interval of one of a
// disk's stats-intervals: the shortest and longest operation and the
// mean, in nanoseconds, and the mean requests in flight. QEMU reports
// zeros for a kind of operation the interval did not see.
type Timed struct {
	IntervalSec     uint64  `json:"interval_s"`
	ReadMinNs       uint64  `json:"read_min_ns"`
	ReadMaxNs       uint64  `json:"read_max_ns"`
	ReadAvgNs       uint64  `json:"read_avg_ns"`
	WriteMinNs      uint64  `json:"write_min_ns"`
	WriteMaxNs      uint64  `json:"write_max_ns"`
	WriteAvgNs      uint64  `json:"write_avg_ns"`
	FlushMaxNs      uint64  `json:"flush_max_ns"`
	ReadQueueDepth  float64 `json:"read_queue_depth"`
	WriteQueueDepth float64 `json:"write_queue_depth"`
}

// Latency sources: where a disk's latency figures come from.
const (
	// LatencyCounters: average latency and queue depth from the
	// cumulative time counters (Δ time / Δ operations); no tails.
	LatencyCounters = "counters"
	// LatencyTimed: the counters, plus the longest read and write of
	// QEMU's last timed interval (libvirt's <statistics>, no QMP).
	LatencyTimed = "timed-stats"
	// LatencyHistogram: the counters, plus QEMU's latency histograms,
	// which give percentiles.
	LatencyHistogram = "histogram"
)

// LatencySource says where the disk's latency figures come from.
func (d Disk) LatencySource() string {
	switch {
	case d.ReadHist != nil || d.WriteHist != nil:
		return LatencyHistogram
	case d.Timed != nil:
		return LatencyTimed
	}
	return LatencyCounters
}

// Health is the outcome of the disk checks (qtune doctor) the agent runs
// at a slower pace than sampling. NaN or -1 marks what a check has not
// measured yet.
type Health struct {
	At      time.Time `json:"at"`
	Corrupt bool      `json:"corrupt"` // corrupt bit set, or qemu-img check found corruptions
	// Fragmentation is qemu-img check's fragmented clusters ÷ allocated
	// clusters (0-1); NaN until a check ran.
	Fragmentation  float64 `json:"fragmentation"`
	LeakedClusters int     `json:"leaked_clusters"` // -1 until a check ran
	FileExtents    int64   `json:"file_extents"`    // FIEMAP extents of the image file; -1 unknown
	SnapshotCount  int     `json:"snapshot_count"`  // internal snapshots
	FSFreeRatio    float64 `json:"fs_free_ratio"`   // free share (0-1) of the filesystem under the image; NaN unknown
	Worst          int     `json:"worst_severity"`  // 0 ok, 1 info, 2 warn, 3 critical
	// Encrypted: the image's header says its data is encrypted (LUKS or
	// qcow2's old AES).
	Encrypted bool `json:"encrypted,omitempty"`
	// CompressedRatio is qemu-img check's compressed clusters ÷
	// allocated clusters (0-1); NaN until a check ran.
	CompressedRatio float64 `json:"compressed_ratio,omitempty"`
}

// L2Needed is the qcow2 L2 cache that covers the whole disk: 8 bytes per
// cluster (16 with extended L2). Zero when not a qcow2 disk or not known.
func (d Disk) L2Needed() uint64 {
	if d.ClusterSize == 0 || d.VirtualSize == 0 {
		return 0
	}
	per := uint64(8)
	if d.ExtendedL2 {
		per = 16
	}
	clusters := (d.VirtualSize + d.ClusterSize - 1) / d.ClusterSize
	return clusters * per
}

// L2Coverage is the current L2 cache divided by what full coverage needs,
// capped at 1; NaN when either is unknown.
func (d Disk) L2Coverage() float64 {
	need := d.L2Needed()
	if need == 0 || d.L2CacheSize == 0 {
		return math.NaN()
	}
	return math.Min(1, float64(d.L2CacheSize)/float64(need))
}

// Host is what the host as a whole shows at sampling time.
type Host struct {
	IOPressureSomeAvg10 float64 `json:"io_pressure_some_avg10"`
	IOPressureSomeAvg60 float64 `json:"io_pressure_some_avg60"`
	IOPressureFullAvg10 float64 `json:"io_pressure_full_avg10"`
	IOPressureFullAvg60 float64 `json:"io_pressure_full_avg60"`
}

// Rates are derived from two samples of the same disk. Latencies and
// percentiles are NaN when there were no operations of that kind (or no
// histogram) in the interval.
type Rates struct {
	Interval       time.Duration `json:"interval"`
	ReadIOPS       float64       `json:"read_iops"`
	WriteIOPS      float64       `json:"write_iops"`
	FlushIOPS      float64       `json:"flush_iops"`
	ReadBPS        float64       `json:"read_bps"`
	WriteBPS       float64       `json:"write_bps"`
	ReadLatencyMs  float64       `json:"read_latency_ms"`
	WriteLatencyMs float64       `json:"write_latency_ms"`
	FlushLatencyMs float64       `json:"flush_latency_ms"`
	// QueueDepth is the time-averaged number of requests in flight:
	// Σ Δ total_time_ns / Δ wall time (Little's law).
	QueueDepth float64 `json:"queue_depth"`
	ReadP95Ms  float64 `json:"read_latency_p95_ms"`
	ReadP99Ms  float64 `json:"read_latency_p99_ms"`
	WriteP95Ms float64 `json:"write_latency_p95_ms"`
	WriteP99Ms float64 `json:"write_latency_p99_ms"`
	// ReadMaxMs, WriteMaxMs: the longest read and write of the disk's
	// last timed interval (Disk.Timed); NaN without timed statistics or
	// without such operations in that interval. Left out of JSON when
	// zero, so documents of agents from before them read back the same.
	ReadMaxMs  float64 `json:"read_latency_max_ms,omitempty"`
	WriteMaxMs float64 `json:"write_latency_max_ms,omitempty"`
}

// Point is one disk at one instant with everything a policy may ask about.
type Point struct {
	Disk  Disk              `json:"disk"`
	Rates Rates             `json:"rates"`
	Host  Host              `json:"host"`
	Meta  map[string]string `json:"meta,omitempty"` // libvirt domain metadata, when known
}
