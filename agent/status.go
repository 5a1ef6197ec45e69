package agent

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/buildinfo"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// domainStater is a source that knows each VM's run state.
type domainStater interface {
	DomainStates() map[string]vmState
}

// vmCapabler is a source that knows what each VM's QEMU offers;
// backendCapabler one that knows what its backend offers.
type (
	vmCapabler      interface{ Capabilities() map[string][]string }
	backendCapabler interface{ BackendCapabilities() []string }
)

const keepActions = 50

// publish updates status, metrics and history after a cycle.
// points are this cycle's samples (the rules' and qtune plan's), shown
// those with the last samples of the VMs not sampled this cycle.
func (a *Agent) publish(now time.Time, dur time.Duration, points, shown []sample.Point, errs map[string]error, acts []api.ActionStatus) {
	stored, err := a.store.AllOwned()
	if err != nil && a.recon.ownedErr == "" {
		a.noteOwnedError(err)
	}
	owned := a.ownedStates(now, stored)
	states := a.eval.States()
	connected, reconnects := a.src.Connected()
	tainted := a.src.Tainted()

	vms := map[string]*api.VMStatus{}
	for _, p := range shown {
		v := vms[p.Disk.VM]
		if v == nil {
			v = &api.VMStatus{Name: p.Disk.VM}
			vms[p.Disk.VM] = v
		}
		ds := api.DiskStatus{Name: p.Disk.Name, Format: p.Disk.Format, Cache: policy.CacheModeName(p.Disk.CacheDirect, p.Disk.CacheNoFlush),
			ReadIOPS: p.Rates.ReadIOPS, WriteIOPS: p.Rates.WriteIOPS, ReadBPS: p.Rates.ReadBPS, WriteBPS: p.Rates.WriteBPS,
			ReadLatency: finite(p.Rates.ReadLatencyMs), WriteLatency: finite(p.Rates.WriteLatencyMs), QueueDepth: p.Rates.QueueDepth,
			SampledAt: p.Disk.Time, L2CacheSize: p.Disk.L2CacheSize, Recorded: p.Disk.Recorded,
			LatencySource: p.Disk.LatencySource(), ReadMax: finite(p.Rates.ReadMaxMs), WriteMax: finite(p.Rates.WriteMaxMs)}
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
			v = &api.VMStatus{Name: name}
			vms[name] = v
		}
		v.State, v.StateReason = st.State, st.Reason
	}
	if cs, ok := a.src.(vmCapabler); ok {
		for name, c := range cs.Capabilities() {
			if v := vms[name]; v != nil {
				v.Capabilities = c
			}
		}
	}
	a.noteMigrations(vms)
	var cads map[string]facts.CadenceInfo
	if c, ok := a.src.(cadencer); ok {
		cads = c.Cadences()
	}
	for name, c := range cads {
		if v := vms[name]; v != nil {
			v.Cadence, v.CadenceReason, v.LastSampled = c.Every.String(), c.Reason, c.Last
		}
	}
	list := make([]api.VMStatus, 0, len(vms))
	for _, v := range vms {
		list = append(list, *v)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	a.m.publish(&cycleSnapshot{at: now, points: shown, states: states, owned: owned, settled: a.recon.settled, vms: len(list), vmStates: vmStates,
		connected: connected, reconnects: reconnects, tainted: len(tainted), storeOK: !a.refusing()})

	a.mu.Lock()
	defer a.mu.Unlock()
	s := &a.status
	s.Backend, s.Connected, s.Reconnects, s.DryRun = a.src.Name(), connected, reconnects, a.cfg.DryRun
	s.StoreError = a.storeErr
	s.Interval, s.LastCycle, s.CycleDuration = a.cfg.Interval.String(), now, dur.Round(time.Millisecond).String()
	s.VMs, s.Rules, s.Owned, s.Tainted = list, states, owned, tainted
	if bc, ok := a.src.(backendCapabler); ok {
		s.BackendCapabilities = bc.BackendCapabilities()
	}
	s.OwnedError, s.OwnedSettled = a.recon.ownedErr, a.recon.settled
	s.Findings = a.checks.findings()
	s.Errors = map[string]string{}
	for vm, err := range errs {
		s.Errors[vm] = err.Error()
	}
	for _, act := range acts {
		if act.Result == string(state.ResultNoOp) || repeats(s.Actions, act) {
			continue // a knob already as wanted, or the same outcome again, is not news
		}
		s.Actions = append(s.Actions, act)
	}
	if n := len(s.Actions); n > keepActions {
		s.Actions = append([]api.ActionStatus(nil), s.Actions[n-keepActions:]...)
	}
	a.history = append(a.history, api.Cycle{At: now, Points: points})
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
func repeats(list []api.ActionStatus, a api.ActionStatus) bool {
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		if p.VM == a.VM && p.Disk == a.Disk && p.Knob == a.Knob {
			return p.Rule == a.Rule && p.Result == a.Result && p.After == a.After && p.Error == a.Error &&
				a.Result != string(state.ResultApplied) && a.Result != string(state.ResultReverted)
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
func (a *Agent) Snapshot() api.Status {
	a.mu.Lock()
	st, jm := a.status, a.jobs
	a.mu.Unlock()
	if jm != nil {
		jobs, _ := jm.Jobs()
		st.Jobs = wireJobs(jobs)
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
		h := append([]api.Cycle(nil), a.history...)
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
