package policy

import (
	"math"
	"math/rand"
	"reflect"
	"sort"
	"testing"

	"github.com/qtune/qtune/internal/sample"
)

// TestNeighbourhoodsMatchTheDefinition checks the per-device pass against
// the definition written out plainly (for each disk, a pass over the
// others), on devices with ties, unknown latencies and idle disks.
func TestNeighbourhoodsMatchTheDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pick := func(vals ...float64) float64 { return vals[rng.Intn(len(vals))] }
	for trial := 0; trial < 200; trial++ {
		var points []sample.Point
		n := 1 + rng.Intn(12)
		for i := 0; i < n; i++ {
			p := sample.Point{}
			p.Disk.VM, p.Disk.Name = string(rune('a'+rng.Intn(3))), string(rune('a'+i))
			p.Disk.HostDevice = []string{"", "8:0", "8:16"}[rng.Intn(3)]
			p.Rates.ReadBPS, p.Rates.WriteBPS = pick(0, 1, 5, math.NaN()), pick(0, 2, 7, math.Inf(1))
			p.Rates.ReadLatencyMs, p.Rates.WriteLatencyMs = pick(math.NaN(), 1, 3, 3), pick(math.NaN(), 0, 9)
			p.Rates.ReadP99Ms, p.Rates.WriteP99Ms = pick(math.NaN(), 4), pick(math.NaN(), 2, 2, 8)
			points = append(points, p)
		}
		own := map[*sample.Point][2]float64{}
		for i := range points {
			own[&points[i]] = [2]float64{pick(math.NaN(), 1, 2, 2), pick(math.NaN(), 0.5, 4)}
		}
		got, want := devices(points, own), devicesByDefinition(points, own)
		if !reflect.DeepEqual(fmtNB(got), fmtNB(want)) {
			t.Fatalf("trial %d:\n got %v\nwant %v", trial, fmtNB(got), fmtNB(want))
		}
	}
}

// fmtNB makes NaNs comparable.
func fmtNB(m map[string]neighbourhood) map[string][10]float64 {
	out := map[string][10]float64{}
	for k, n := range m {
		v := [10]float64{float64(n.disks), n.writeShare, n.readShare, float64(n.writeRank), n.readLatMs, n.writeLatMs,
			n.readP99Ms, n.writeP99Ms, n.nbReadRatio, n.nbReadP99Ratio}
		for i := range v {
			if math.IsNaN(v[i]) {
				v[i] = -12345
			}
		}
		out[k] = v
	}
	return out
}

func devicesByDefinition(points []sample.Point, own map[*sample.Point][2]float64) map[string]neighbourhood {
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
