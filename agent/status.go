package agent

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qtune/qtune/internal/buildinfo"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/tuning"
)

// Status is what GET /v1/status returns and qtune status prints.
type Status struct {
	Backend       string             `json:"backend"`
	Connected     bool               `json:"connected"`
	Reconnects    uint64             `json:"reconnects"`
	DryRun        bool               `json:"dry_run"`
	StoreError    string             `json:"store_error,omitempty"` // the state store was refused: nothing is changed
	Interval      string             `json:"interval"`
	LastCycle     time.Time          `json:"last_cycle"`
	CycleDuration string             `json:"cycle_duration"`
	Policy        PolicyStatus       `json:"policy"`
	Histograms    HistogramStatus    `json:"histograms"`
	VMs           []VMStatus         `json:"vms"`
	Rules         []policy.StateInfo `json:"rules"`
	Owned         []OwnedStatus      `json:"owned"`
	OwnedError    string             `json:"owned_error,omitempty"`   // records the store could not read
	OwnedSettled  map[string]int     `json:"owned_settled,omitempty"` // by knob: records settled in the last cycle
	Jobs          []tuning.Job       `json:"jobs"`                    // block jobs, newest first
	Actions       []ActionStatus     `json:"actions"`                 // the latest, newest last
	Tainted       []string           `json:"tainted,omitempty"`
	Errors        map[string]string  `json:"errors,omitempty"` // latest sample error per VM
	// Findings are the disk checks' findings worse than ok, worst first.
	Findings []FindingStatus `json:"findings,omitempty"`
	// Version is the running agent's build, which after an upgrade may
	// differ from the installed binary's until the service restarts.
	Version buildinfo.Info `json:"version"`
}

// PolicyStatus says which policy is in force and whether the last load
// worked.
type PolicyStatus struct {
	Dir   string   `json:"dir"`
	Rules []string `json:"rules"`
	// Defs identify each rule's definition, so that a policy directory
	// can be compared with what runs (qtune policy check --against-agent).
	Defs     []policy.RuleDef `json:"defs"`
	LoadedAt time.Time        `json:"loaded_at"`
	// Source is where the set in force came from: "files", "last-good"
	// (the policy directory does not load; the last clean set, from
	// the state store) or "none" (nothing loads; no rules, nothing
	// released).
	Source      string    `json:"source"`
	Error       string    `json:"error,omitempty"`
	BrokenSince time.Time `json:"broken_since,omitempty"`
}

// VMStatus is one VM's disks as last sampled.
type VMStatus struct {
	Name string `json:"name"`
	// State and StateReason are libvirt's (running/booted,
	// paused/ioerror, ...); empty where the backend does not say.
	State       string       `json:"state,omitempty"`
	StateReason string       `json:"state_reason,omitempty"`
	Disks       []DiskStatus `json:"disks"`
}

// domainStater is a source that knows each VM's run state.
type domainStater interface {
	DomainStates() map[string]vmState
}

// DiskStatus is one disk's latest figures.
type DiskStatus struct {
	Name        string           `json:"name"`
	Format      string           `json:"format,omitempty"`
	Cache       string           `json:"cache"`
	Throttle    *sample.Throttle `json:"throttle,omitempty"`
	L2CacheSize uint64           `json:"l2_cache_size,omitempty"` // qcow2; 0 when not known
	// Recorded names the knobs whose figure here is qtune's record of
	// what it set, not a reading (QEMU cannot report an L2 cache size).
	Recorded     []string  `json:"recorded,omitempty"`
	ReadIOPS     float64   `json:"read_iops"`
	WriteIOPS    float64   `json:"write_iops"`
	ReadBPS      float64   `json:"read_bps"`
	WriteBPS     float64   `json:"write_bps"`
	ReadLatency  *float64  `json:"read_latency_ms"`
	WriteLatency *float64  `json:"write_latency_ms"`
	QueueDepth   float64   `json:"queue_depth"`
	SampledAt    time.Time `json:"sampled_at"`
}

// ActionStatus is one executor outcome.
type ActionStatus struct {
	At     time.Time `json:"at"`
	Rule   string    `json:"rule"`
	VM     string    `json:"vm"`
	Disk   string    `json:"disk"`
	Knob   string    `json:"knob"`
	Result string    `json:"result"`
	Before string    `json:"before,omitempty"`
	After  string    `json:"after,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Error  string    `json:"error,omitempty"`
}

const keepActions = 50

// publish updates status, metrics and history after a cycle.
func (a *Agent) publish(now time.Time, dur time.Duration, points []sample.Point, errs map[string]error, acts []ActionStatus) {
	stored, err := a.store.AllOwned()
	if err != nil && a.recon.ownedErr == "" {
		a.noteOwnedError(err)
	}
	owned := a.ownedStates(now, stored)
	states := a.eval.States()
	connected, reconnects := a.src.Connected()
	tainted := a.src.Tainted()

	vms := map[string]*VMStatus{}
	for _, p := range points {
		v := vms[p.Disk.VM]
		if v == nil {
			v = &VMStatus{Name: p.Disk.VM}
			vms[p.Disk.VM] = v
		}
		ds := DiskStatus{Name: p.Disk.Name, Format: p.Disk.Format, Cache: policy.CacheModeName(p.Disk.CacheDirect, p.Disk.CacheNoFlush),
			ReadIOPS: p.Rates.ReadIOPS, WriteIOPS: p.Rates.WriteIOPS, ReadBPS: p.Rates.ReadBPS, WriteBPS: p.Rates.WriteBPS,
			ReadLatency: finite(p.Rates.ReadLatencyMs), WriteLatency: finite(p.Rates.WriteLatencyMs), QueueDepth: p.Rates.QueueDepth,
			SampledAt: p.Disk.Time, L2CacheSize: p.Disk.L2CacheSize, Recorded: p.Disk.Recorded}
		if p.Disk.Throttle.Active() {
			t := p.Disk.Throttle
			ds.Throttle = &t
		}
		v.Disks = append(v.Disks, ds)
	}
	var vmStates map[string]vmState
	if ds, ok := a.src.(domainStater); ok {
		vmStates = ds.DomainStates()
	}
	for name, st := range vmStates {
		v := vms[name]
		if v == nil { // no rates yet (its first sample), but it is there
			v = &VMStatus{Name: name}
			vms[name] = v
		}
		v.State, v.StateReason = st.State, st.Reason
	}
	list := make([]VMStatus, 0, len(vms))
	for _, v := range vms {
		list = append(list, *v)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	a.m.publish(&cycleSnapshot{points: points, states: states, owned: owned, settled: a.recon.settled, vms: len(list), vmStates: vmStates,
		connected: connected, reconnects: reconnects, tainted: len(tainted), storeOK: !a.refusing()})

	a.mu.Lock()
	defer a.mu.Unlock()
	s := &a.status
	s.Backend, s.Connected, s.Reconnects, s.DryRun = a.src.Name(), connected, reconnects, a.cfg.DryRun
	s.StoreError = a.storeErr
	s.Interval, s.LastCycle, s.CycleDuration = a.cfg.Interval.String(), now, dur.Round(time.Millisecond).String()
	s.VMs, s.Rules, s.Owned, s.Tainted = list, states, owned, tainted
	s.OwnedError, s.OwnedSettled = a.recon.ownedErr, a.recon.settled
	s.Findings = a.checks.findings()
	s.Errors = map[string]string{}
	for vm, err := range errs {
		s.Errors[vm] = err.Error()
	}
	for _, act := range acts {
		if act.Result == string(tuning.ResultNoOp) || repeats(s.Actions, act) {
			continue // a knob already as wanted, or the same outcome again, is not news
		}
		s.Actions = append(s.Actions, act)
	}
	if n := len(s.Actions); n > keepActions {
		s.Actions = append([]ActionStatus(nil), s.Actions[n-keepActions:]...)
	}
	a.history = append(a.history, Cycle{At: now, Points: points})
	a.historyN += len(points)
	drop := 0
	for len(a.history)-drop > 1 && (len(a.history)-drop > historyCycles || a.historyN > historyPoints) {
		a.historyN -= len(a.history[drop].Points)
		drop++
	}
	if drop > 0 {
		a.history = append(a.history[:0:0], a.history[drop:]...)
	}
}

// repeats reports whether the latest recorded action on the same knob had
// the same outcome.
func repeats(list []ActionStatus, a ActionStatus) bool {
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		if p.VM == a.VM && p.Disk == a.Disk && p.Knob == a.Knob {
			return p.Rule == a.Rule && p.Result == a.Result && p.After == a.After && p.Error == a.Error &&
				a.Result != string(tuning.ResultApplied) && a.Result != string(tuning.ResultReverted)
		}
	}
	return false
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Snapshot returns a copy of the current status.
func (a *Agent) Snapshot() Status {
	a.mu.Lock()
	st, jm := a.status, a.jobs
	a.mu.Unlock()
	if jm != nil {
		st.Jobs, _ = jm.Jobs()
	}
	st.Version = buildinfo.Get()
	return st
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		last := a.status.LastCycle
		a.mu.Unlock()
		if since := a.clock.Now().Sub(last); last.IsZero() || since > 3*a.cfg.Interval {
			http.Error(w, "no cycle completed in the last three intervals", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Snapshot()) })
	mux.HandleFunc("/v1/history", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		h := append([]Cycle(nil), a.history...)
		a.mu.Unlock()
		writeJSON(w, h)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
