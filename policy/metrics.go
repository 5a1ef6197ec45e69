package policy

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// input is what one rule evaluation sees: a disk's point and its VM's
// aggregates.
type input struct {
	p  *sample.Point
	vm vmAgg
	// held is the throttle in force while a throttle rule of this policy
	// holds the disk; nil otherwise.
	held *sample.Throttle
	nb   neighbourhood
}

type vmAgg struct {
	diskCount          int
	totalIOPS, totalBP float64
}

// Metric is one name an expression may use. The table below is the whole
// namespace; docs/metrics.md is generated from it.
type Metric struct {
	Name string
	Type cty.Type
	Unit string
	Help string
	get  func(in input) cty.Value
	// set writes a number into a point, for policy tests; nil for metrics
	// that are derived or not numbers.
	set func(p *sample.Point, v float64)
}

func num(v float64) cty.Value {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return cty.UnknownVal(cty.Number)
	}
	return cty.NumberFloatVal(v)
}

// f is a float metric read from and written to one field of a point.
func f(name, unit, help string, field func(p *sample.Point) *float64) Metric {
	return Metric{Name: name, Type: cty.Number, Unit: unit, Help: help,
		get: func(in input) cty.Value { return num(*field(in.p)) },
		set: func(p *sample.Point, v float64) { *field(p) = v }}
}

// u is a uint64 metric.
func u(name, unit, help string, field func(p *sample.Point) *uint64) Metric {
	return Metric{Name: name, Type: cty.Number, Unit: unit, Help: help,
		get: func(in input) cty.Value { return cty.NumberUIntVal(*field(in.p)) },
		set: func(p *sample.Point, v float64) { *field(p) = uint64(math.Max(0, v)) }}
}

func str(name, help string, get func(in input) string) Metric {
	return Metric{Name: name, Type: cty.String, Help: help, get: func(in input) cty.Value { return cty.StringVal(get(in)) }}
}

func boolean(name, help string, get func(in input) bool, set func(p *sample.Point, v bool)) Metric {
	return Metric{Name: name, Type: cty.Bool, Help: help,
		get: func(in input) cty.Value { return cty.BoolVal(get(in)) },
		set: func(p *sample.Point, v float64) { set(p, v != 0) }}
}

// Metrics is the namespace of policy expressions.
var Metrics = []Metric{
	f("disk.read_iops", "ops/s", "read operations per second", func(p *sample.Point) *float64 { return &p.Rates.ReadIOPS }),
	f("disk.write_iops", "ops/s", "write operations per second", func(p *sample.Point) *float64 { return &p.Rates.WriteIOPS }),
	f("disk.flush_iops", "ops/s", "flushes per second", func(p *sample.Point) *float64 { return &p.Rates.FlushIOPS }),
	{Name: "disk.total_iops", Type: cty.Number, Unit: "ops/s", Help: "reads plus writes per second",
		get: func(in input) cty.Value { return num(in.p.Rates.ReadIOPS + in.p.Rates.WriteIOPS) }},
	f("disk.read_bps", "bytes/s", "bytes read per second", func(p *sample.Point) *float64 { return &p.Rates.ReadBPS }),
	f("disk.write_bps", "bytes/s", "bytes written per second", func(p *sample.Point) *float64 { return &p.Rates.WriteBPS }),
	f("disk.read_latency_ms", "ms", "average read latency (Δ time / Δ reads); unknown without reads", func(p *sample.Point) *float64 { return &p.Rates.ReadLatencyMs }),
	f("disk.write_latency_ms", "ms", "average write latency; unknown without writes", func(p *sample.Point) *float64 { return &p.Rates.WriteLatencyMs }),
	f("disk.flush_latency_ms", "ms", "average flush latency; unknown without flushes", func(p *sample.Point) *float64 { return &p.Rates.FlushLatencyMs }),
	f("disk.read_latency_p95_ms", "ms", "95th percentile read latency (needs latency histograms)", func(p *sample.Point) *float64 { return &p.Rates.ReadP95Ms }),
	f("disk.read_latency_p99_ms", "ms", "99th percentile read latency (needs latency histograms)", func(p *sample.Point) *float64 { return &p.Rates.ReadP99Ms }),
	f("disk.write_latency_p95_ms", "ms", "95th percentile write latency (needs latency histograms)", func(p *sample.Point) *float64 { return &p.Rates.WriteP95Ms }),
	f("disk.write_latency_p99_ms", "ms", "99th percentile write latency (needs latency histograms)", func(p *sample.Point) *float64 { return &p.Rates.WriteP99Ms }),
	f("disk.read_latency_max_ms", "ms", "longest read of the disk's last timed-statistics interval (a libvirt disk whose driver declares <statistics>, in libvirt releases that return them); unknown without them or without reads in that interval", func(p *sample.Point) *float64 { return &p.Rates.ReadMaxMs }),
	f("disk.write_latency_max_ms", "ms", "longest write of the disk's last timed-statistics interval; unknown without timed statistics or without writes in that interval", func(p *sample.Point) *float64 { return &p.Rates.WriteMaxMs }),
	f("disk.queue_depth", "requests", "average requests in flight (Δ total time / Δ wall time)", func(p *sample.Point) *float64 { return &p.Rates.QueueDepth }),
	u("disk.allocation", "bytes", "bytes the image occupies on the host", func(p *sample.Point) *uint64 { return &p.Disk.Allocation }),
	u("disk.virtual_size", "bytes", "size of the disk as the guest sees it", func(p *sample.Point) *uint64 { return &p.Disk.VirtualSize }),
	u("disk.cluster_size", "bytes", "qcow2 cluster size (0 for other formats)", func(p *sample.Point) *uint64 { return &p.Disk.ClusterSize }),
	u("disk.l2_cache_size", "bytes", "qcow2 L2 cache in force (qtune's record while it holds the knob: QEMU cannot report it)", func(p *sample.Point) *uint64 { return &p.Disk.L2CacheSize }),
	{Name: "disk.l2_coverage", Type: cty.Number, Unit: "ratio", Help: "L2 cache in force ÷ cache that covers the whole disk (1 = full); unknown for non-qcow2",
		get: func(in input) cty.Value { return num(in.p.Disk.L2Coverage()) }},
	{Name: "disk.backing_depth", Type: cty.Number, Unit: "layers", Help: "backing images below the active layer",
		get: func(in input) cty.Value { return cty.NumberIntVal(int64(in.p.Disk.BackingDepth)) },
		set: func(p *sample.Point, v float64) { p.Disk.BackingDepth = int(v) }},
	u("disk.throttle_iops", "ops/s", "total IOPS limit in force (0 = none)", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.IOPS }),
	u("disk.throttle_read_iops", "ops/s", "read IOPS limit in force", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.IOPSRead }),
	u("disk.throttle_write_iops", "ops/s", "write IOPS limit in force", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.IOPSWrite }),
	u("disk.throttle_bps", "bytes/s", "total bandwidth limit in force", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.BPS }),
	u("disk.throttle_read_bps", "bytes/s", "read bandwidth limit in force", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.BPSRead }),
	u("disk.throttle_write_bps", "bytes/s", "write bandwidth limit in force", func(p *sample.Point) *uint64 { return &p.Disk.Throttle.BPSWrite }),
	{Name: "disk.throttled", Type: cty.Bool, Help: "whether any I/O limit is in force",
		get: func(in input) cty.Value { return cty.BoolVal(in.p.Disk.Throttle.Active()) }},
	boolean("disk.cache_direct", "host page cache bypassed (O_DIRECT)", func(in input) bool { return in.p.Disk.CacheDirect },
		func(p *sample.Point, v bool) { p.Disk.CacheDirect = v }),
	str("disk.cache_mode", "host cache mode as libvirt names it: none, writeback, unsafe, or direct,no-flush", func(in input) string { return CacheModeName(in.p.Disk.CacheDirect, in.p.Disk.CacheNoFlush) }),
	str("disk.format", "image format: qcow2, raw, ...", func(in input) string { return in.p.Disk.Format }),
	str("disk.name", "disk target (vda) or device id", func(in input) string { return in.p.Disk.Name }),
	str("disk.path", "image path", func(in input) string { return in.p.Disk.Path }),
	f("disk.host_device_util", "ratio", "busy share of the host block device under the image (0-1)", func(p *sample.Point) *float64 { return &p.Disk.HostDevUtil }),
	u("disk.fs_free_bytes", "bytes", "free bytes on the filesystem holding the image", func(p *sample.Point) *uint64 { return &p.Disk.FSFreeBytes }),
	f("disk.host_device_read_bps", "bytes/s", "bytes read per second by the whole host block device under the image (/proc/diskstats: every user of it)", func(p *sample.Point) *float64 { return &p.Disk.HostDevReadBPS }),
	f("disk.host_device_write_bps", "bytes/s", "bytes written per second by that device", func(p *sample.Point) *float64 { return &p.Disk.HostDevWriteBPS }),
	f("disk.host_device_read_latency_ms", "ms", "that device's average read latency; unknown without reads", func(p *sample.Point) *float64 { return &p.Disk.HostDevReadLatencyMs }),
	f("disk.host_device_write_latency_ms", "ms", "that device's average write latency; unknown without writes", func(p *sample.Point) *float64 { return &p.Disk.HostDevWriteLatencyMs }),
	f("disk.host_device_queue_depth", "requests", "that device's average requests in flight", func(p *sample.Point) *float64 { return &p.Disk.HostDevQueueDepth }),
	str("disk.host_device", "major:minor of the host block device under the image; empty when unknown", func(in input) string { return in.p.Disk.HostDevice }),
	{Name: "disk.device_disks", Type: cty.Number, Unit: "disks", Help: "disks qtune samples on the same host block device, this one included (0 when the device is unknown)",
		get: func(in input) cty.Value { return cty.NumberIntVal(int64(in.nb.disks)) }},
	{Name: "disk.device_write_share", Type: cty.Number, Unit: "ratio", Help: "this disk's share (0-1) of the bytes written by the disks on its device; unknown when none wrote",
		get: func(in input) cty.Value { return num(in.nb.writeShare) }},
	{Name: "disk.device_read_share", Type: cty.Number, Unit: "ratio", Help: "this disk's share (0-1) of the bytes read by the disks on its device; unknown when none read",
		get: func(in input) cty.Value { return num(in.nb.readShare) }},
	{Name: "disk.device_write_rank", Type: cty.Number, Unit: "rank", Help: "1 for the disk that writes the most bytes on its device, 2 for the next...; 0 when unknown",
		get: func(in input) cty.Value { return cty.NumberIntVal(int64(in.nb.writeRank)) }},
	{Name: "disk.neighbour_read_latency_ms", Type: cty.Number, Unit: "ms", Help: "worst average read latency among the other disks on the same device; unknown without neighbours doing reads",
		get: func(in input) cty.Value { return num(in.nb.readLatMs) }},
	{Name: "disk.neighbour_write_latency_ms", Type: cty.Number, Unit: "ms", Help: "worst average write latency among the other disks on the same device",
		get: func(in input) cty.Value { return num(in.nb.writeLatMs) }},
	{Name: "disk.neighbour_read_latency_p99_ms", Type: cty.Number, Unit: "ms", Help: "worst 99th percentile read latency among the other disks on the device (needs latency histograms)",
		get: func(in input) cty.Value { return num(in.nb.readP99Ms) }},
	{Name: "disk.neighbour_write_latency_p99_ms", Type: cty.Number, Unit: "ms", Help: "worst 99th percentile write latency among the other disks on the device (needs latency histograms)",
		get: func(in input) cty.Value { return num(in.nb.writeP99Ms) }},
	{Name: "disk.read_latency_normal_ms", Type: cty.Number, Unit: "ms", Help: "this disk's normal average read latency, learnt from its own samples: the median of the last ones, weighted to halve every 10 minutes, of samples with at least 20 reads; unknown before 10 such samples",
		get: func(in input) cty.Value { return num(in.nb.readNormal) }},
	{Name: "disk.read_latency_p99_normal_ms", Type: cty.Number, Unit: "ms", Help: "the same for its p99 read latency, from samples with at least 100 reads (needs latency histograms)",
		get: func(in input) cty.Value { return num(in.nb.readP99Normal) }},
	{Name: "disk.read_latency_ratio", Type: cty.Number, Unit: "ratio", Help: "this sample's average read latency over the disk's normal (2 = twice as slow as usual); unknown with fewer than 20 reads in the sample",
		get: func(in input) cty.Value { return num(in.nb.readRatio) }},
	{Name: "disk.read_latency_p99_ratio", Type: cty.Number, Unit: "ratio", Help: "this sample's p99 read latency over the disk's normal p99; unknown with fewer than 100 reads or without histograms",
		get: func(in input) cty.Value { return num(in.nb.readP99Ratio) }},
	{Name: "disk.neighbour_read_latency_ratio", Type: cty.Number, Unit: "ratio", Help: "the largest disk.read_latency_ratio among the other disks on the same device: how much slower than usual its worst-off neighbour reads, on any kind of device",
		get: func(in input) cty.Value { return num(in.nb.nbReadRatio) }},
	{Name: "disk.neighbour_read_latency_p99_ratio", Type: cty.Number, Unit: "ratio", Help: "the largest disk.read_latency_p99_ratio among the other disks on the same device (needs latency histograms)",
		get: func(in input) cty.Value { return num(in.nb.nbReadP99Ratio) }},
	diskIOStatus, diskCorrupt, diskFragmentation, diskLeaked, diskExtents, diskSnapshots, diskFSFree, diskSeverity, diskChecked, diskEncrypted, diskCompressed,
	str("vm.name", "domain name, or the plain QEMU VM's name", func(in input) string { return in.p.Disk.VM }),
	{Name: "vm.disk_count", Type: cty.Number, Unit: "disks", Help: "disks of the VM in this sample",
		get: func(in input) cty.Value { return cty.NumberIntVal(int64(in.vm.diskCount)) }},
	{Name: "vm.total_iops", Type: cty.Number, Unit: "ops/s", Help: "reads plus writes per second over all the VM's disks",
		get: func(in input) cty.Value { return num(in.vm.totalIOPS) }},
	{Name: "vm.total_bps", Type: cty.Number, Unit: "bytes/s", Help: "bytes read plus written per second over all the VM's disks",
		get: func(in input) cty.Value { return num(in.vm.totalBP) }},
	f("host.io_pressure_some_avg10", "%", "share of time some task waited on I/O, 10 s average (/proc/pressure/io)", func(p *sample.Point) *float64 { return &p.Host.IOPressureSomeAvg10 }),
	f("host.io_pressure_some_avg60", "%", "the same, 60 s average", func(p *sample.Point) *float64 { return &p.Host.IOPressureSomeAvg60 }),
	f("host.io_pressure_full_avg10", "%", "share of time all tasks waited on I/O, 10 s average", func(p *sample.Point) *float64 { return &p.Host.IOPressureFullAvg10 }),
	f("host.io_pressure_full_avg60", "%", "the same, 60 s average", func(p *sample.Point) *float64 { return &p.Host.IOPressureFullAvg60 }),
}

// WindowFuncs are the functions over a metric's recent history.
var WindowFuncs = map[string]string{
	"avg_over": "average of the metric's samples in the window",
	"max_over": "largest sample in the window",
	"min_over": "smallest sample in the window",
	"p50_over": "median of the samples in the window: a level that one odd sample does not move",
	"p95_over": "95th percentile of the samples in the window",
}

var metricByName = func() map[string]*Metric {
	m := make(map[string]*Metric, len(Metrics))
	for i := range Metrics {
		m[Metrics[i].Name] = &Metrics[i]
	}
	return m
}()

// LookupMetric finds a metric by its full name ("disk.write_iops").
func LookupMetric(name string) (*Metric, bool) {
	m, ok := metricByName[name]
	return m, ok
}

// CacheModeName names the cache flags as libvirt's cache modes do.
func CacheModeName(direct, noFlush bool) string {
	return sample.HostCache(direct, noFlush).CacheMode()
}

// scopeObjects builds the "disk", "vm" and "host" objects of an
// expression's context with the metrics refs names (a rule's refs: every
// metric its conditions read, window arguments included). Only those: a
// cycle evaluates every rule on every disk, and building every metric of
// every scope for each was most of the agent's CPU on a big host.
func scopeObjects(refs []string, in input) map[string]cty.Value {
	attrs := make(map[string]map[string]cty.Value, len(scopes))
	for _, name := range refs {
		m, ok := LookupMetric(name)
		if !ok {
			continue
		}
		scope, attr, _ := strings.Cut(name, ".")
		if attrs[scope] == nil {
			attrs[scope] = map[string]cty.Value{}
		}
		v := m.get(in)
		if censoredNow(name, in.held, in.p) {
			v = censoredValue(v)
		}
		attrs[scope][attr] = v
	}
	out := make(map[string]cty.Value, len(scopes))
	for scope := range scopes {
		if a := attrs[scope]; len(a) > 0 {
			out[scope] = cty.ObjectVal(a)
		} else {
			out[scope] = cty.EmptyObjectVal
		}
	}
	return out
}

// WriteMetricsDoc writes the Markdown table of the namespace.
func WriteMetricsDoc(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# Policy metrics\n\nGenerated by `qtune policy metrics` from policy/metrics.go; do not edit.\n\n")
	b.WriteString("A metric whose value is unknown (no operations of that kind, no histogram, a\nstale sample) makes an expression unknown: a rule never fires on it, and it\nnever counts as the condition turning false.\n\n")
	b.WriteString("| metric | type | unit | meaning |\n| --- | --- | --- | --- |\n")
	for _, m := range Metrics {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type.FriendlyName(), m.Unit, m.Help)
	}
	b.WriteString("\n## Window functions\n\n`fn(metric, \"duration\")`, e.g. `avg_over(disk.write_iops, \"1m\")`: the\nmetric must be a number, the duration a literal string.\n\n| function | value |\n| --- | --- |\n")
	names := make([]string, 0, len(WindowFuncs))
	for n := range WindowFuncs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "| `%s` | %s |\n", n, WindowFuncs[n])
	}
	_, err := io.WriteString(w, b.String())
	return err
}
