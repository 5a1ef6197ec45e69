package fleet

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the fleet's budgets as this host sees them. Every
// host exports the same fleet-wide counts, so dashboards take max by
// budget across hosts; the lease metrics are this host's own.
type Collector struct {
	f       *Fleet
	slots   *prometheus.Desc
	speed   *prometheus.Desc
	leaseOK *prometheus.Desc
	lost    *prometheus.Desc
	up      *prometheus.Desc
}

// Collector returns a prometheus collector over f. Each scrape reads the
// budgets from etcd once, within the request timeout.
func (f *Fleet) Collector() *Collector {
	return &Collector{f: f,
		slots: prometheus.NewDesc("qtune_fleet_budget_slots",
			"Copies of a fleet budget by state: held and waiting fleet-wide, and the budget's limit (max_copies).",
			[]string{"budget", "state"}, nil),
		speed: prometheus.NewDesc("qtune_fleet_budget_speed_bytes",
			"Bandwidth of a fleet budget, bytes/s: held fleet-wide (as counted against the budget) and its limit (max_speed; absent when unbounded).",
			[]string{"budget", "state"}, nil),
		leaseOK: prometheus.NewDesc("qtune_fleet_lease_ok",
			"1 while this host holds a live lease with etcd; 0 while its copies' slots are lost or none can be taken.", nil, nil),
		lost: prometheus.NewDesc("qtune_fleet_lease_lost_total",
			"Times this host lost its etcd lease (no renewal for two thirds of the TTL, or expired).", nil, nil),
		up: prometheus.NewDesc("qtune_fleet_up",
			"1 when this scrape could read the budgets from etcd.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.slots, c.speed, c.leaseOK, c.lost, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	f := c.f
	f.mu.Lock()
	ok, lost := f.leaseOK, f.lostTotal
	f.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.leaseOK, prometheus.GaugeValue, b2f(ok))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(lost))
	ctx, cancel := context.WithTimeout(context.Background(), min(f.cfg.RequestTimeout, 5*time.Second))
	defer cancel()
	held, waiting, err := f.Held(ctx)
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(err == nil))
	if err != nil {
		return
	}
	for _, b := range f.cfg.Budgets {
		var n, w int
		var speed uint64
		for _, s := range held {
			if s.Budget == b.Name {
				n++
				speed += counted(s.Speed, b)
			}
		}
		for _, s := range waiting {
			if s.Budget == b.Name {
				w++
			}
		}
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(n), b.Name, "held")
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(w), b.Name, "waiting")
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(b.MaxCopies), b.Name, "limit")
		ch <- prometheus.MustNewConstMetric(c.speed, prometheus.GaugeValue, float64(speed), b.Name, "held")
		if b.MaxSpeed > 0 {
			ch <- prometheus.MustNewConstMetric(c.speed, prometheus.GaugeValue, float64(b.MaxSpeed), b.Name, "limit")
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
