package agent

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qtune/qtune/internal/sample"
)

func snapshotWith(n int, reconnects uint64) *cycleSnapshot {
	s := &cycleSnapshot{vms: 1, connected: true, reconnects: reconnects}
	for i := 0; i < n; i++ {
		s.points = append(s.points, sample.Point{Disk: sample.Disk{VM: "a", Name: string(rune('a'+i)) + "-disk"},
			Rates: sample.Rates{WriteIOPS: float64(100 * (i + 1))}})
	}
	return s
}

// Scrapes racing with cycles see one whole cycle or the next, never a
// family emptied for refilling.
func TestMetricsScrapeSeesWholeCycle(t *testing.T) {
	m := newMetrics()
	m.publish(snapshotWith(3, 0))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
				m.publish(snapshotWith(3, i))
			}
		}
	}()
	for i := 0; i < 200; i++ {
		if n, err := testutil.GatherAndCount(m.reg, "qtune_disk_write_iops"); err != nil || n != 3 {
			t.Fatalf("scrape %d: %d write_iops series (err %v), want 3", i, n, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestMetricsReconnectsIsCounter(t *testing.T) {
	m := newMetrics()
	if n, _ := testutil.GatherAndCount(m.reg, "qtune_disk_write_iops"); n != 0 {
		t.Fatalf("%d disk series before any cycle", n)
	}
	m.publish(snapshotWith(1, 4))
	want := `# HELP qtune_backend_reconnects_total Times the hypervisor connection was re-established.
# TYPE qtune_backend_reconnects_total counter
qtune_backend_reconnects_total 4
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "qtune_backend_reconnects_total"); err != nil {
		t.Fatal(err)
	}
	m.publish(snapshotWith(0, 4))
	if n, _ := testutil.GatherAndCount(m.reg, "qtune_disk_write_iops"); n != 0 {
		t.Fatalf("a VM that is gone still has %d series", n)
	}
}
