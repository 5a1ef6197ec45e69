package policy

import (
	"math"
	"strings"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// A disk's normal: the read latency it shows when nothing disturbs it,
// learnt from its own samples, so that a rule can say "three times slower
// than usual" and mean the same on an NVMe drive, a RAID of disks or a
// network volume, instead of a number of milliseconds that fits one kind
// of device.
//
// Each disk keeps, for its average and its p99 read latency, a histogram
// of its per-sample values whose weights halve every NormalHalfLife. Its
// normal is the NormalQuantile (the median) of that histogram. A sample's
// p99 of a second's reads is a noisy figure that varies threefold from one
// second to the next on a busy host: against a lower quantile an ordinary
// second would already look slow, while against the median a ratio of 3
// is a real change. The median stays where it was while something makes
// the disk slow for less than half of the recent past, which a rule that
// acts within its `for` ensures; a slowdown that lasts longer becomes the
// new normal. The normal is unknown until the disk has NormalMinSamples
// samples with enough reads to mean something.

const (
	NormalHalfLife   = 10 * time.Minute
	NormalQuantile   = 0.5
	NormalMinSamples = 10
	// A sample's average needs this many reads to count, its p99 more.
	normalMinReads    = 20
	normalMinReadsP99 = 100
)

// Buckets of a normal's histogram: normalPerOctave per doubling from
// normalLowMs up, about 19% wide, enough for a ratio.
const (
	normalPerOctave = 4
	normalLowMs     = 0.001
	normalBuckets   = 30 * normalPerOctave // up to about 18 minutes
)

// latencyNormal is one latency's decaying histogram.
type latencyNormal struct {
	at     time.Time
	weight [normalBuckets]float64
	total  float64
	count  int // samples counted, undecayed, for the minimum
}

func normalBucket(ms float64) int {
	i := int(math.Floor(math.Log2(ms/normalLowMs) * normalPerOctave))
	return min(max(i, 0), normalBuckets-1)
}

// add decays the histogram to at and counts v.
func (n *latencyNormal) add(at time.Time, v float64) {
	if !n.at.IsZero() {
		f := math.Exp2(-at.Sub(n.at).Seconds() / NormalHalfLife.Seconds())
		for i := range n.weight {
			n.weight[i] *= f
		}
		n.total *= f
	}
	n.at = at
	n.weight[normalBucket(v)]++
	n.total++
	n.count++
}

// value is the normal in ms (the geometric middle of the bucket that
// holds the quantile), NaN while too few samples are in.
func (n *latencyNormal) value() float64 {
	if n.count < NormalMinSamples {
		return math.NaN()
	}
	want, sum := n.total*NormalQuantile, 0.0
	for i, w := range n.weight {
		if sum += w; sum >= want {
			return normalLowMs * math.Exp2((float64(i)+0.5)/normalPerOctave)
		}
	}
	return math.NaN()
}

// diskNormal is one disk's normals.
type diskNormal struct {
	read, readP99 latencyNormal
}

// normals are every disk's, keyed "vm/disk".
type normals map[string]*diskNormal

// readings is what a point says about its read latency, NaN where it
// has too few reads to say it.
func readings(p *sample.Point) (mean, p99 float64) {
	reads := p.Rates.ReadIOPS * p.Rates.Interval.Seconds()
	mean, p99 = math.NaN(), math.NaN()
	if reads >= normalMinReads && p.Rates.ReadLatencyMs > 0 {
		mean = p.Rates.ReadLatencyMs
	}
	if reads >= normalMinReadsP99 && p.Rates.ReadP99Ms > 0 {
		p99 = p.Rates.ReadP99Ms
	}
	return mean, p99
}

// add counts each point's readings into its disk's normals, once per
// sample.
func (ns normals) add(points []sample.Point) {
	for i := range points {
		p := &points[i]
		k := p.Disk.VM + "/" + p.Disk.Name
		mean, p99 := readings(p)
		n := ns[k]
		if n == nil {
			if math.IsNaN(mean) && math.IsNaN(p99) {
				continue // a disk that does not read has no normal to learn
			}
			n = &diskNormal{}
			ns[k] = n
		}
		if !math.IsNaN(mean) && p.Disk.Time.After(n.read.at) {
			n.read.add(p.Disk.Time, mean)
		}
		if !math.IsNaN(p99) && p.Disk.Time.After(n.readP99.at) {
			n.readP99.add(p.Disk.Time, p99)
		}
	}
}

// ratios are a point's latencies over its normals, NaN when unknown.
func (ns normals) ratios(p *sample.Point) (mean, p99 float64) {
	n := ns[p.Disk.VM+"/"+p.Disk.Name]
	if n == nil {
		return math.NaN(), math.NaN()
	}
	m, t := readings(p)
	return m / n.read.value(), t / n.readP99.value()
}

// normalsOf is a disk's normals in ms, NaN when not known yet.
func (ns normals) normalsOf(p *sample.Point) (mean, p99 float64) {
	n := ns[p.Disk.VM+"/"+p.Disk.Name]
	if n == nil {
		return math.NaN(), math.NaN()
	}
	return n.read.value(), n.readP99.value()
}

func (ns normals) forget(vm string) {
	for k := range ns {
		if strings.HasPrefix(k, vm+"/") {
			delete(ns, k)
		}
	}
}
