package agent

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/tuning"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	diskGauges   map[string]*prometheus.GaugeVec
	ruleState    *prometheus.GaugeVec
	actions      *prometheus.CounterVec
	owned        *prometheus.GaugeVec
	cycle        prometheus.Histogram
	late         prometheus.Counter
	sampleErrors *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	policyOK     prometheus.Gauge
	policyRules  prometheus.Gauge
	vms          prometheus.Gauge
	connected    prometheus.Gauge
	reconnects   prometheus.Gauge
	tainted      prometheus.Gauge
}

var diskMetricDefs = []struct {
	name, help string
	get        func(r sample.Rates) float64
}{
	{"qtune_disk_read_iops", "Read operations per second.", func(r sample.Rates) float64 { return r.ReadIOPS }},
	{"qtune_disk_write_iops", "Write operations per second.", func(r sample.Rates) float64 { return r.WriteIOPS }},
	{"qtune_disk_flush_iops", "Flushes per second.", func(r sample.Rates) float64 { return r.FlushIOPS }},
	{"qtune_disk_read_bytes_per_second", "Bytes read per second.", func(r sample.Rates) float64 { return r.ReadBPS }},
	{"qtune_disk_write_bytes_per_second", "Bytes written per second.", func(r sample.Rates) float64 { return r.WriteBPS }},
	{"qtune_disk_read_latency_seconds", "Average read latency over the last interval.", func(r sample.Rates) float64 { return r.ReadLatencyMs / 1e3 }},
	{"qtune_disk_write_latency_seconds", "Average write latency over the last interval.", func(r sample.Rates) float64 { return r.WriteLatencyMs / 1e3 }},
	{"qtune_disk_flush_latency_seconds", "Average flush latency over the last interval.", func(r sample.Rates) float64 { return r.FlushLatencyMs / 1e3 }},
	{"qtune_disk_queue_depth", "Average requests in flight over the last interval.", func(r sample.Rates) float64 { return r.QueueDepth }},
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), diskGauges: map[string]*prometheus.GaugeVec{}}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, d := range diskMetricDefs {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: d.name, Help: d.help}, []string{"vm", "disk"})
		m.diskGauges[d.name] = g
		m.reg.MustRegister(g)
	}
	m.ruleState = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "qtune_rule_state", Help: "1 for the state each rule is in on each disk (inactive rules are not listed)."}, []string{"rule", "vm", "disk", "state"})
	m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_actions_total", Help: "Executor outcomes by rule, knob and result."}, []string{"rule", "knob", "result"})
	m.owned = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "qtune_owned_knobs", Help: "Knobs qtune changed and will restore, by kind."}, []string{"knob"})
	m.cycle = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qtune_cycle_duration_seconds", Help: "Time of one sample-evaluate-act cycle.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)})
	m.late = prometheus.NewCounter(prometheus.CounterOpts{Name: "qtune_cycles_late_total", Help: "Cycles that took longer than the interval."})
	m.sampleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_sample_errors_total", Help: "Failed samples by VM."}, []string{"vm"})
	m.callDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qtune_backend_call_duration_seconds", Help: "Latency of calls to QEMU and libvirt.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"backend", "call"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_policy_reloads_total", Help: "Policy loads by result."}, []string{"result"})
	m.policyOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_policy_last_reload_success", Help: "1 if the last policy load succeeded, 0 if the policy in force is an older one."})
	m.policyRules = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_policy_rules", Help: "Rules in the policy in force."})
	m.vms = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_vms", Help: "VMs the agent watches."})
	m.connected = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_backend_connected", Help: "1 while the hypervisor connection is up."})
	m.reconnects = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_backend_reconnects", Help: "Times the libvirt connection was re-established."})
	m.tainted = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_tainted_domains", Help: "Domains qtune sent QMP to through libvirt (tainted: custom-monitor)."})
	m.reg.MustRegister(m.ruleState, m.actions, m.owned, m.cycle, m.late, m.sampleErrors, m.callDuration,
		m.reloads, m.policyOK, m.policyRules, m.vms, m.connected, m.reconnects, m.tainted)
	return m
}

// setDisks replaces the per-disk gauges with this cycle's points, so a
// VM that is gone disappears from the metrics.
func (m *metrics) setDisks(points []sample.Point) {
	for _, d := range diskMetricDefs {
		g := m.diskGauges[d.name]
		g.Reset()
		for _, p := range points {
			if v := d.get(p.Rates); !math.IsNaN(v) {
				g.WithLabelValues(p.Disk.VM, p.Disk.Name).Set(v)
			}
		}
	}
}

func (m *metrics) setRules(states []policy.StateInfo) {
	m.ruleState.Reset()
	for _, s := range states {
		m.ruleState.WithLabelValues(s.Rule, s.VM, s.Disk, string(s.State)).Set(1)
	}
}

func (m *metrics) setOwned(owned []tuning.Owned) {
	m.owned.Reset()
	for _, o := range owned {
		if o.Phase != tuning.PhaseReleased {
			m.owned.WithLabelValues(string(o.Knob)).Inc()
		}
	}
}
