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

// QEMU's counters are exported as Prometheus counters, in seconds and
// bytes, so rate() works over any scrape interval.
func TestMetricsRawCounters(t *testing.T) {
	m := newMetrics()
	s := snapshotWith(1, 0)
	s.points[0].Disk.Counters = sample.Counters{ReadOps: 7, WriteOps: 11, FlushOps: 2, ReadBytes: 4096, WriteBytes: 8192,
		ReadTimeNs: 1_500_000_000, WriteTimeNs: 250_000_000, FlushTimeNs: 3_000_000}
	m.publish(s)
	want := `# HELP qtune_disk_write_ops_total Write operations completed.
# TYPE qtune_disk_write_ops_total counter
qtune_disk_write_ops_total{disk="a-disk",vm="a"} 11
# HELP qtune_disk_read_time_seconds_total Time spent in reads (sum over operations).
# TYPE qtune_disk_read_time_seconds_total counter
qtune_disk_read_time_seconds_total{disk="a-disk",vm="a"} 1.5
# HELP qtune_disk_flush_time_seconds_total Time spent in flushes (sum over operations).
# TYPE qtune_disk_flush_time_seconds_total counter
qtune_disk_flush_time_seconds_total{disk="a-disk",vm="a"} 0.003
# HELP qtune_disk_write_bytes_total Bytes written.
# TYPE qtune_disk_write_bytes_total counter
qtune_disk_write_bytes_total{disk="a-disk",vm="a"} 8192
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "qtune_disk_write_ops_total",
		"qtune_disk_read_time_seconds_total", "qtune_disk_flush_time_seconds_total", "qtune_disk_write_bytes_total"); err != nil {
		t.Fatal(err)
	}
}
