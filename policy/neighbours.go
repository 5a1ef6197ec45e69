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
// being each point's read latency ratios.
func devices(points []sample.Point, own map[*sample.Point][2]float64) map[string]neighbourhood {
	byDev := map[string][]*sample.Point{}
	for i := range points {
		if dev := points[i].Disk.HostDevice; dev != "" {
			byDev[dev] = append(byDev[dev], &points[i])
		}
	}
	out := map[string]neighbourhood{}
	for i := range points {
		out[points[i].Disk.VM+"/"+points[i].Disk.Name] = noNeighbours
	}
	for _, ps := range byDev {
		var rsum, wsum float64
		for _, p := range ps {
			rsum += finite(p.Rates.ReadBPS)
			wsum += finite(p.Rates.WriteBPS)
		}
		ranked := append([]*sample.Point(nil), ps...)
		sort.SliceStable(ranked, func(i, j int) bool { return finite(ranked[i].Rates.WriteBPS) > finite(ranked[j].Rates.WriteBPS) })
		for _, p := range ps {
			nb := neighbourhood{disks: len(ps), writeShare: ratio(p.Rates.WriteBPS, wsum), readShare: ratio(p.Rates.ReadBPS, rsum),
				readLatMs: math.NaN(), writeLatMs: math.NaN(), readP99Ms: math.NaN(), writeP99Ms: math.NaN(),
				nbReadRatio: math.NaN(), nbReadP99Ratio: math.NaN()}
			for i, q := range ranked {
				if q == p && wsum > 0 {
					nb.writeRank = i + 1
				}
			}
			for _, q := range ps {
				if q != p {
					nb.readLatMs = worst(nb.readLatMs, q.Rates.ReadLatencyMs)
					nb.writeLatMs = worst(nb.writeLatMs, q.Rates.WriteLatencyMs)
					nb.readP99Ms = worst(nb.readP99Ms, q.Rates.ReadP99Ms)
					nb.writeP99Ms = worst(nb.writeP99Ms, q.Rates.WriteP99Ms)
					nb.nbReadRatio = worst(nb.nbReadRatio, own[q][0])
					nb.nbReadP99Ratio = worst(nb.nbReadP99Ratio, own[q][1])
				}
			}
			out[p.Disk.VM+"/"+p.Disk.Name] = nb
		}
	}
	return out
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
