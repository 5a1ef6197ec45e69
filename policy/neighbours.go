package policy

import (
	"math"
	"sort"

	"github.com/qtune/qtune/internal/sample"
)

// Neighbours: disks whose images sit on the same host block device share
// it, and one loud writer makes every other disk there slow. The victims
// see it (their latency); the culprit is the disk that does most of the
// device's writing. These aggregates let one rule, evaluated on every
// disk, act on the culprit when its neighbours suffer:
//
//	when = disk.neighbour_read_latency_ratio > 3 && disk.device_write_share > 0.5
//
// (a neighbour reading three times slower than its own normal, normal.go).
//
// Shares and ranks are over the disks qtune samples on the device (the
// host's own I/O is in the host_device_* metrics), by bytes.

// neighbourhood is what one disk's device neighbours look like.
type neighbourhood struct {
	disks                 int     // qtune's disks on the device, this one included
	writeShare, readShare float64 // this disk's share of their bytes; NaN when none moved
	writeRank             int     // 1 = writes the most bytes; 0 when unknown
	readLatMs, writeLatMs float64 // worst average latency among the others; NaN when none
	readP99Ms, writeP99Ms float64 // worst p99 among the others; NaN without histograms
	// This disk's read latency over its normal (normal.go), and its
	// normals in ms; the worst ratios among the others.
	readRatio, readP99Ratio     float64
	readNormal, readP99Normal   float64
	nbReadRatio, nbReadP99Ratio float64
}

// noNeighbours is the neighbourhood of a disk whose device is unknown.
var noNeighbours = neighbourhood{writeShare: math.NaN(), readShare: math.NaN(),
	readLatMs: math.NaN(), writeLatMs: math.NaN(), readP99Ms: math.NaN(), writeP99Ms: math.NaN(),
	nbReadRatio: math.NaN(), nbReadP99Ratio: math.NaN()}

// neighbourhoods computes every point's neighbourhood, keyed by VM/disk,
// with the latencies relative to the disks' normals in ns.
func neighbourhoods(points []sample.Point, ns normals) map[string]neighbourhood {
	// Once per disk: a device's every disk reads all the others'.
	own := make(map[*sample.Point][2]float64, len(points))
	for i := range points {
		mean, p99 := ns.ratios(&points[i])
		own[&points[i]] = [2]float64{mean, p99}
	}
	out := devices(points, own)
	for i := range points {
		p := &points[i]
		k := p.Disk.VM + "/" + p.Disk.Name
		nb := out[k]
		nb.readRatio, nb.readP99Ratio = own[p][0], own[p][1]
		nb.readNormal, nb.readP99Normal = ns.normalsOf(p)
		out[k] = nb
	}
	return out
}

// devices computes what every point's device neighbours look like, own
// being each point's read latency ratios. A host with hundreds of disks
// on one device is common (every image in /var/lib/libvirt/images): the
// work is a sort per device and a pass over its disks, not a pass over
// the others for each disk.
func devices(points []sample.Point, own map[*sample.Point][2]float64) map[string]neighbourhood {
	byDev := map[string][]*sample.Point{}
	out := make(map[string]neighbourhood, len(points))
	for i := range points {
		if dev := points[i].Disk.HostDevice; dev != "" {
			byDev[dev] = append(byDev[dev], &points[i])
		}
		out[points[i].Disk.VM+"/"+points[i].Disk.Name] = noNeighbours
	}
	for _, ps := range byDev {
		device(ps, own, out)
	}
	return out
}

// device fills in the neighbourhoods of the disks of one device.
func device(ps []*sample.Point, own map[*sample.Point][2]float64, out map[string]neighbourhood) {
	var rsum, wsum float64
	var readLat, writeLat, readP99, writeP99, readRatio, readP99Ratio top2
	for i, p := range ps {
		rsum += finite(p.Rates.ReadBPS)
		wsum += finite(p.Rates.WriteBPS)
		readLat.add(i, p.Rates.ReadLatencyMs)
		writeLat.add(i, p.Rates.WriteLatencyMs)
		readP99.add(i, p.Rates.ReadP99Ms)
		writeP99.add(i, p.Rates.WriteP99Ms)
		readRatio.add(i, own[p][0])
		readP99Ratio.add(i, own[p][1])
	}
	rank := make([]int, len(ps)) // rank[i]: ps[i]'s place by bytes written, from 1
	if wsum > 0 {
		order := make([]int, len(ps))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool {
			return finite(ps[order[a]].Rates.WriteBPS) > finite(ps[order[b]].Rates.WriteBPS)
		})
		for place, i := range order {
			rank[i] = place + 1
		}
	}
	for i, p := range ps {
		out[p.Disk.VM+"/"+p.Disk.Name] = neighbourhood{disks: len(ps), writeRank: rank[i],
			writeShare: ratio(p.Rates.WriteBPS, wsum), readShare: ratio(p.Rates.ReadBPS, rsum),
			readLatMs: readLat.others(i), writeLatMs: writeLat.others(i),
			readP99Ms: readP99.others(i), writeP99Ms: writeP99.others(i),
			nbReadRatio: readRatio.others(i), nbReadP99Ratio: readP99Ratio.others(i)}
	}
}

// top2 keeps the two worst values among a device's disks, so that the
// worst among the others of any one disk is known without a pass over
// them.
type top2 struct {
	first, second float64 // NaN while unknown
	firstAt       int     // index of the disk with first
	seen          bool
}

func (t *top2) add(i int, v float64) {
	if !t.seen {
		t.first, t.second, t.firstAt, t.seen = math.NaN(), math.NaN(), -1, true
	}
	if math.IsNaN(v) {
		return
	}
	if math.IsNaN(t.first) || v > t.first {
		t.second, t.first, t.firstAt = t.first, v, i
		return
	}
	t.second = worst(t.second, v)
}

// others is the worst value among every disk but the i-th.
func (t *top2) others(i int) float64 {
	if i == t.firstAt {
		return t.second
	}
	return t.first
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func ratio(v, sum float64) float64 {
	if sum <= 0 {
		return math.NaN()
	}
	return finite(v) / sum
}

// worst is the larger of two latencies, NaN (unknown) losing to any value.
func worst(a, b float64) float64 {
	switch {
	case math.IsNaN(b):
		return a
	case math.IsNaN(a):
		return b
	}
	return math.Max(a, b)
}
