package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qtune/qtune/qmp"
)

// naivePoll is the baseline sampler: one kept QMP connection per VM, and
// every second query-block and query-blockstats on each, one VM after the
// other, decoding every reply in full.
func naivePoll(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: bench naive-poll SOCKET_DIR")
		return 2
	}
	socks, _ := filepath.Glob(filepath.Join(args[0], "*.sock"))
	ctx := context.Background()
	var blocks []*qmp.Block
	for _, s := range socks {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := qmp.Dial(dctx, s)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "naive-poll:", err)
			return 1
		}
		blocks = append(blocks, qmp.NewBlock(c))
	}
	for range time.Tick(time.Second) {
		for _, b := range blocks {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			b.QueryBlock(cctx)
			b.QueryBlockstats(cctx, true)
			cancel()
		}
	}
	return 0
}

// agentMetrics is what the benchmark reads from the agent's /metrics.
type agentMetrics struct {
	p50, p99 float64 // upper bounds of the cycle buckets holding them; -1 unknown
	disks    int     // disks with a rate
	late     float64 // cycles longer than the interval
}

// scrapeAgent reads the agent's cycle histogram, its late-cycle counter
// and how many disks it reports.
func scrapeAgent(addr string) agentMetrics {
	m := agentMetrics{p50: -1, p99: -1}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	type bucket struct{ le, n float64 }
	var buckets []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "qtune_disk_read_iops{") {
			m.disks++
		}
		if strings.HasPrefix(l, "qtune_cycles_late_total ") {
			m.late, _ = strconv.ParseFloat(strings.TrimPrefix(l, "qtune_cycles_late_total "), 64)
		}
		if !strings.HasPrefix(l, `qtune_cycle_duration_seconds_bucket{le="`) {
			continue
		}
		rest := strings.TrimPrefix(l, `qtune_cycle_duration_seconds_bucket{le="`)
		i := strings.Index(rest, `"}`)
		le, err1 := strconv.ParseFloat(rest[:i], 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(rest[i+2:]), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		buckets = append(buckets, bucket{le, n})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].le < buckets[j].le })
	if len(buckets) == 0 || buckets[len(buckets)-1].n == 0 {
		return m
	}
	total := buckets[len(buckets)-1].n
	q := func(p float64) float64 {
		for _, b := range buckets {
			if b.n >= p*total {
				return b.le
			}
		}
		return -1
	}
	m.p50, m.p99 = q(0.5), q(0.99)
	return m
}

// scrapeValue reads one unlabelled series from the agent's /metrics; -1
// when absent.
func scrapeValue(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
