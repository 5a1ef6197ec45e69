package agent

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/buildinfo"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
// Counters and histograms accumulate as events happen; everything that
// describes the host as of the last cycle (disks, rules, owned knobs, the
// connection) is read at scrape time from one published snapshot, so a
// scrape never sees a family half refilled or empty.
type metrics struct {
	reg  *prometheus.Registry
	last atomic.Pointer[cycleSnapshot]

	actions      *prometheus.CounterVec
	cycle        prometheus.Histogram
	late         prometheus.Counter
	sampleErrors *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	policyOK     prometheus.Gauge
	policyRules  prometheus.Gauge
	policyAt     atomic.Int64 // load time of the set in force, unix ns; 0 for none
}

func (m *metrics) setPolicyLoadedAt(t time.Time) {
	if t.IsZero() {
		m.policyAt.Store(0)
		return
	}
	m.policyAt.Store(t.UnixNano())
}

// cycleSnapshot is what one cycle saw; it is never changed once published.
type cycleSnapshot struct {
	at         time.Time // the cycle's
	points     []sample.Point
	states     []policy.StateInfo
	owned      []api.OwnedStatus
	settled    map[string]int // by knob
	vms        int
	vmStates   map[string]vmState // nil where the backend does not say
	connected  bool
	reconnects uint64
	tainted    int
	storeOK    bool
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

// diskCounterDefs are QEMU's cumulative counters as Prometheus counters,
// so rate() works over any scrape interval (as node_exporter's and the
// libvirt exporters' do). The gauges above stay: they are exactly what
// the policy saw in the interval a decision was made on, which a rate()
// over scrapes only approximates; latency and queue depth need both a
// time and an operation counter. Counters start over when the VM does;
// rate() takes that as a reset.
var diskCounterDefs = []struct {
	name, help string
	get        func(c sample.Counters) float64
}{
	{"qtune_disk_read_ops_total", "Read operations completed.", func(c sample.Counters) float64 { return float64(c.ReadOps) }},
	{"qtune_disk_write_ops_total", "Write operations completed.", func(c sample.Counters) float64 { return float64(c.WriteOps) }},
	{"qtune_disk_flush_ops_total", "Flushes completed.", func(c sample.Counters) float64 { return float64(c.FlushOps) }},
	{"qtune_disk_read_bytes_total", "Bytes read.", func(c sample.Counters) float64 { return float64(c.ReadBytes) }},
	{"qtune_disk_write_bytes_total", "Bytes written.", func(c sample.Counters) float64 { return float64(c.WriteBytes) }},
	{"qtune_disk_read_time_seconds_total", "Time spent in reads (sum over operations).", func(c sample.Counters) float64 { return float64(c.ReadTimeNs) / 1e9 }},
	{"qtune_disk_write_time_seconds_total", "Time spent in writes (sum over operations).", func(c sample.Counters) float64 { return float64(c.WriteTimeNs) / 1e9 }},
	{"qtune_disk_flush_time_seconds_total", "Time spent in flushes (sum over operations).", func(c sample.Counters) float64 { return float64(c.FlushTimeNs) / 1e9 }},
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_actions_total", Help: "Executor outcomes by rule, knob and result."}, []string{"rule", "knob", "result"})
	m.cycle = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qtune_cycle_duration_seconds", Help: "Time of one sample-evaluate-act cycle.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)})
	m.late = prometheus.NewCounter(prometheus.CounterOpts{Name: "qtune_cycles_late_total", Help: "Cycles that took longer than the interval."})
	m.sampleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_sample_errors_total", Help: "Failed samples by VM."}, []string{"vm"})
	m.callDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qtune_backend_call_duration_seconds", Help: "Latency of calls to QEMU and libvirt.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"backend", "call"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qtune_policy_reloads_total", Help: "Policy loads by result."}, []string{"result"})
	m.policyOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_policy_last_reload_success", Help: "1 if the last policy load succeeded, 0 if the policy in force is an older one."})
	m.policyRules = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_policy_rules", Help: "Rules in the policy in force."})
	policyAge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qtune_policy_in_force_age_seconds",
		Help: "Age of the policy set in force (since it loaded cleanly); NaN when no set is in force."}, func() float64 {
		at := m.policyAt.Load()
		if at == 0 {
			return math.NaN()
		}
		return time.Since(time.Unix(0, at)).Seconds()
	})
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "qtune_build_info", Help: "Always 1; the labels say which build of qtune runs (as qtune version prints it).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "go_version": bi.GoVersion}})
	build.Set(1)
	m.reg.MustRegister(build, policyAge, m.actions, m.cycle, m.late, m.sampleErrors, m.callDuration,
		m.reloads, m.policyOK, m.policyRules, newSnapshotCollector(m))
	return m
}

// publish makes s what the next scrapes report.
func (m *metrics) publish(s *cycleSnapshot) { m.last.Store(s) }

// snapshotCollector turns the last published cycle into metrics at
// scrape time.
type snapshotCollector struct {
	m                                                         *metrics
	disk, counters                                            []*prometheus.Desc
	rule, owned, vms, connected, reconnects, tainted, storeOK *prometheus.Desc
	age                                                       *prometheus.Desc
	vmState                                                   *prometheus.Desc
}

func newSnapshotCollector(m *metrics) *snapshotCollector {
	c := &snapshotCollector{m: m}
	for _, d := range diskMetricDefs {
		c.disk = append(c.disk, prometheus.NewDesc(d.name, d.help, []string{"vm", "disk"}, nil))
	}
	for _, d := range diskCounterDefs {
		c.counters = append(c.counters, prometheus.NewDesc(d.name, d.help, []string{"vm", "disk"}, nil))
	}
	c.age = prometheus.NewDesc("qtune_disk_sample_age_seconds",
		"Age of each disk's last sample as of the last cycle: under an interval for a busy or watched VM, up to idle_interval for a quiet one.", []string{"vm", "disk"}, nil)
	c.rule = prometheus.NewDesc("qtune_rule_state", "1 for the state each rule is in on each disk (inactive rules are not listed).", []string{"rule", "vm", "disk", "state"}, nil)
	c.owned = prometheus.NewDesc("qtune_owned_knobs",
		"Knobs qtune changed, by kind and state: held, releasing, orphaned (rule gone or VM unreachable), drifted (handed over), settled (in the last cycle).",
		[]string{"knob", "state"}, nil)
	c.vms = prometheus.NewDesc("qtune_vms", "VMs the agent watches.", nil, nil)
	c.vmState = prometheus.NewDesc("qtune_vm_state", "1 for each VM's state and its reason as libvirt names them (paused/ioerror: the guest waits on storage).", []string{"vm", "state", "reason"}, nil)
	c.connected = prometheus.NewDesc("qtune_backend_connected", "1 while the hypervisor connection is up.", nil, nil)
	c.reconnects = prometheus.NewDesc("qtune_backend_reconnects_total", "Times the hypervisor connection was re-established.", nil, nil)
	c.tainted = prometheus.NewDesc("qtune_tainted_domains", "Domains qtune sent QMP to through libvirt (tainted: custom-monitor).", nil, nil)
	c.storeOK = prometheus.NewDesc("qtune_state_store_ok", "1 while the state store opened and passed its check; 0 while it is refused and qtune changes nothing (status says why).", nil, nil)
	return c
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append(c.disk, c.counters...) {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.age, c.rule, c.owned, c.vms, c.vmState, c.connected, c.reconnects, c.tainted, c.storeOK} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.last.Load()
	if s == nil {
		return // no cycle yet: nothing to say about the host
	}
	for i, d := range diskMetricDefs {
		for _, p := range s.points {
			if v := d.get(p.Rates); !math.IsNaN(v) {
				ch <- prometheus.MustNewConstMetric(c.disk[i], prometheus.GaugeValue, v, p.Disk.VM, p.Disk.Name)
			}
		}
	}
	for _, p := range s.points {
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, max(0, s.at.Sub(p.Disk.Time).Seconds()), p.Disk.VM, p.Disk.Name)
	}
	for i, d := range diskCounterDefs {
		for _, p := range s.points {
			ch <- prometheus.MustNewConstMetric(c.counters[i], prometheus.CounterValue, d.get(p.Disk.Counters), p.Disk.VM, p.Disk.Name)
		}
	}
	for _, st := range s.states {
		ch <- prometheus.MustNewConstMetric(c.rule, prometheus.GaugeValue, 1, st.Rule, st.VM, st.Disk, string(st.State))
	}
	// Every kind and state, zeros included, so that alerts see a 0 and
	// not an absent series.
	owned := map[[2]string]float64{}
	for _, o := range s.owned {
		owned[[2]string{string(o.Knob), o.State}]++
	}
	for k, n := range s.settled {
		owned[[2]string{k, api.OwnedSettled}] += float64(n)
	}
	for _, k := range policy.HeldKnobs() {
		for _, st := range []string{api.OwnedHeld, api.OwnedReleasing, api.OwnedOrphaned, api.OwnedDrifted, api.OwnedSettled} {
			ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, owned[[2]string{string(k), st}], string(k), st)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.vms, prometheus.GaugeValue, float64(s.vms))
	for vm, st := range s.vmStates {
		ch <- prometheus.MustNewConstMetric(c.vmState, prometheus.GaugeValue, 1, vm, st.State, st.Reason)
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, boolFloat(s.connected))
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(s.reconnects))
	ch <- prometheus.MustNewConstMetric(c.tainted, prometheus.GaugeValue, float64(s.tainted))
	ch <- prometheus.MustNewConstMetric(c.storeOK, prometheus.GaugeValue, boolFloat(s.storeOK))
}
