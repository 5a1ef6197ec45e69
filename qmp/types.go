package qmp

import "github.com/qtune/qtune/internal/sample"

// Types of QEMU 7.2's block replies (qapi/block-core.json). Decoding is
// lenient on purpose: unknown fields are ignored and enums are plain string
// types, so that a newer QEMU adding fields or enum values never breaks a
// running agent.

// BlockInfo is one entry of query-block.
type BlockInfo struct {
	Device    string           `json:"device"` // empty for -blockdev disks
	QDev      string           `json:"qdev"`   // QOM path of the device model
	Type      string           `json:"type"`
	Removable bool             `json:"removable"`
	Locked    bool             `json:"locked"`
	Inserted  *BlockDeviceInfo `json:"inserted"`
	TrayOpen  *bool            `json:"tray_open"`
	IOStatus  string           `json:"io-status"`
}

// Cache is a node's cache mode.
type Cache struct {
	Writeback bool `json:"writeback"`
	Direct    bool `json:"direct"`
	NoFlush   bool `json:"no-flush"`
}

// IOThrottle holds the limits query-block reports (and
// block_set_io_throttle takes), in QEMU's argument names. Zero means
// unlimited. It is qtune's sample.Throttle, whose JSON names are QEMU's.
type IOThrottle = sample.Throttle

// BlockDeviceInfo describes one node: query-block's "inserted" and each
// entry of query-named-block-nodes.
type BlockDeviceInfo struct {
	File             string     `json:"file"`
	NodeName         string     `json:"node-name"`
	ReadOnly         bool       `json:"ro"`
	Driver           string     `json:"drv"`
	BackingFile      string     `json:"backing_file"`
	BackingFileDepth int        `json:"backing_file_depth"`
	Encrypted        bool       `json:"encrypted"`
	DetectZeroes     string     `json:"detect_zeroes"`
	Image            *ImageInfo `json:"image"`
	Cache            Cache      `json:"cache"`
	WriteThreshold   uint64     `json:"write_threshold"`
	IOThrottle
}

// ImageInfo describes an image and, through BackingImage, its chain.
type ImageInfo struct {
	Filename              string          `json:"filename"`
	Format                string          `json:"format"`
	DirtyFlag             bool            `json:"dirty-flag"`
	ActualSize            uint64          `json:"actual-size"`
	VirtualSize           uint64          `json:"virtual-size"`
	ClusterSize           uint64          `json:"cluster-size"`
	Encrypted             bool            `json:"encrypted"`
	Compressed            bool            `json:"compressed"`
	BackingFilename       string          `json:"backing-filename"`
	FullBackingFilename   string          `json:"full-backing-filename"`
	BackingFilenameFormat string          `json:"backing-filename-format"`
	BackingImage          *ImageInfo      `json:"backing-image"`
	FormatSpecific        *FormatSpecific `json:"format-specific"`
}

// FormatSpecific is the format-specific part of ImageInfo; Data holds the
// qcow2 fields (other formats leave them zero).
type FormatSpecific struct {
	Type string `json:"type"`
	Data struct {
		Compat        string `json:"compat"`
		LazyRefcounts bool   `json:"lazy-refcounts"`
		Corrupt       bool   `json:"corrupt"`
		RefcountBits  int    `json:"refcount-bits"`
		ExtendedL2    bool   `json:"extended-l2"`
		// CompressionType is zlib or zstd (QEMU 5.1 and later).
		CompressionType string `json:"compression-type"`
		// Encrypt describes an encrypted qcow2's encryption (its
		// header's; nil for a plain image).
		Encrypt *EncryptInfo `json:"encrypt"`
	} `json:"data"`
}

// ChainDepth counts the backing images below this one.
func (i *ImageInfo) ChainDepth() int {
	n := 0
	for b := i.BackingImage; b != nil; b = b.BackingImage {
		n++
	}
	return n
}

// BlockStats is one entry of query-blockstats, with its node's parent
// (the protocol node under a format node) and backing.
type BlockStats struct {
	Device   string           `json:"device"` // empty for -blockdev disks
	QDev     string           `json:"qdev"`
	NodeName string           `json:"node-name"`
	Stats    BlockDeviceStats `json:"stats"`
	Parent   *BlockStats      `json:"parent"`
	Backing  *BlockStats      `json:"backing"`
}

// BlockDeviceStats are a node's cumulative counters.
type BlockDeviceStats struct {
	RdBytes          uint64            `json:"rd_bytes"`
	WrBytes          uint64            `json:"wr_bytes"`
	UnmapBytes       uint64            `json:"unmap_bytes"`
	RdOperations     uint64            `json:"rd_operations"`
	WrOperations     uint64            `json:"wr_operations"`
	FlushOperations  uint64            `json:"flush_operations"`
	UnmapOperations  uint64            `json:"unmap_operations"`
	RdMerged         uint64            `json:"rd_merged"`
	WrMerged         uint64            `json:"wr_merged"`
	RdTotalTimeNs    uint64            `json:"rd_total_time_ns"`
	WrTotalTimeNs    uint64            `json:"wr_total_time_ns"`
	FlushTotalTimeNs uint64            `json:"flush_total_time_ns"`
	UnmapTotalTimeNs uint64            `json:"unmap_total_time_ns"`
	WrHighestOffset  uint64            `json:"wr_highest_offset"`
	IdleTimeNs       *uint64           `json:"idle_time_ns"`
	FailedRdOps      uint64            `json:"failed_rd_operations"`
	FailedWrOps      uint64            `json:"failed_wr_operations"`
	FailedFlushOps   uint64            `json:"failed_flush_operations"`
	InvalidRdOps     uint64            `json:"invalid_rd_operations"`
	InvalidWrOps     uint64            `json:"invalid_wr_operations"`
	InvalidFlushOps  uint64            `json:"invalid_flush_operations"`
	AccountInvalid   bool              `json:"account_invalid"`
	AccountFailed    bool              `json:"account_failed"`
	TimedStats       []TimedStats      `json:"timed_stats"`
	RdLatencyHist    *LatencyHistogram `json:"rd_latency_histogram"`
	WrLatencyHist    *LatencyHistogram `json:"wr_latency_histogram"`
	FlushLatencyHist *LatencyHistogram `json:"flush_latency_histogram"`
}

// TimedStats are latency statistics over an interval (empty for libvirt
// VMs on QEMU 7.2: latency comes from counter deltas there).
type TimedStats struct {
	IntervalLength int64   `json:"interval_length"`
	MinRdLatencyNs int64   `json:"min_rd_latency_ns"`
	MaxRdLatencyNs int64   `json:"max_rd_latency_ns"`
	AvgRdLatencyNs int64   `json:"avg_rd_latency_ns"`
	MinWrLatencyNs int64   `json:"min_wr_latency_ns"`
	MaxWrLatencyNs int64   `json:"max_wr_latency_ns"`
	AvgWrLatencyNs int64   `json:"avg_wr_latency_ns"`
	AvgRdQueueDep  float64 `json:"avg_rd_queue_depth"`
	AvgWrQueueDep  float64 `json:"avg_wr_queue_depth"`
}

// LatencyHistogram is a cumulative latency histogram (ns boundaries, one
// more bin than boundaries).
type LatencyHistogram struct {
	Boundaries []uint64 `json:"boundaries"`
	Bins       []uint64 `json:"bins"`
}

// VersionInfo is query-version's reply.
type VersionInfo struct {
	QEMU    Version `json:"qemu"`
	Package string  `json:"package"`
}

// EncryptInfo is an encrypted image's encryption as QEMU reads it from the
// header: format "luks" (with its cipher) or "aes" (qcow2's old built-in
// encryption, which has none of these).
type EncryptInfo struct {
	Format     string `json:"format"`
	CipherAlg  string `json:"cipher-alg"`
	CipherMode string `json:"cipher-mode"`
	IVGenAlg   string `json:"ivgen-alg"`
	HashAlg    string `json:"hash-alg"`
}
