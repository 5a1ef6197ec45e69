package fleet

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// oneMetric is a collector that passes on the metrics of c named name,
// for testutil.ToFloat64.
type oneMetric struct {
	c    prometheus.Collector
	name string
}

func (o *oneMetric) Describe(ch chan<- *prometheus.Desc) {
	all := make(chan *prometheus.Desc, 16)
	o.c.Describe(all)
	close(all)
	for d := range all {
		if strings.Contains(d.String(), `"`+o.name+`"`) {
			ch <- d
		}
	}
}

func (o *oneMetric) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+o.name+`"`) {
			ch <- m
		}
	}
}
