package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/internal/qemuimg"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// startJobs gives the executor a job manager when the backend can run
// block jobs, and drives it until ctx ends.
func (a *Agent) startJobs(ctx context.Context, wg *sync.WaitGroup) {
	if a.refusing() {
		return // the jobs' records are in the store it cannot trust
	}
	// One qemu-img for everything the agent runs: the doctor block's qemu_img.
	qemuImg := qemuimg.Runner{Path: a.cfg.Doctor.QemuImg}
	driver, ok := jobs.DriverFor(a.src.Backend(), jobs.DriverOptions{Log: a.log.Named("jobs"), QemuImg: qemuImg})
	if !ok {
		a.log.Info("block jobs are not available with this backend; stream, mirror and convert rules are refused", "backend", a.src.Name())
		return
	}
	c := a.cfg.JobsConfig
	var budget jobs.Budget = &jobs.LocalBudget{Host: c.HostBudget, PerDir: c.DirBudget, Windows: c.Windows}
	if c.Fleet != nil {
		// New returns without a lease when etcd does not answer: copies
		// under a fleet budget then wait, with the reason, until it does.
		f, err := fleet.New(ctx, *c.Fleet, c.FleetHost, a.log.Named("fleet"))
		if err != nil {
			// Fail closed: no copy may start without its fleet slot.
			a.log.Error("fleet budgets cannot be opened; block jobs are off", "error", err.Error())
			return
		}
		a.mu.Lock()
		a.fleet = f
		a.mu.Unlock()
		a.m.reg.MustRegister(f.Collector())
		budget = &jobs.FleetBudget{Local: budget, Fleet: f, Log: a.log.Named("fleet")}
		a.log.Info("fleet budgets on etcd", "host", c.FleetHost, "budgets", len(c.Fleet.Budgets), "lease_ok", f.LeaseOK(), "ttl", f.TTL().String())
	}
	jm := jobs.NewManager(driver, a.store, jobs.Options{
		MirrorDirs:      c.MirrorDirs,
		Budget:          budget,
		ConvergeTimeout: c.ConvergeTimeout, MaxAttempts: c.MaxAttempts, SpaceMargin: c.SpaceMargin,
		AllowWriteBlocking: c.AllowWriteBlocking, QemuImg: qemuImg,
		CallTimeout: a.cfg.CallTimeout, Clock: a.clock, Log: a.log.Named("jobs"),
		Wanted: a.ruleStillWants,
	})
	a.mu.Lock() // Snapshot may run already (it is public)
	a.jobs = jm
	a.mu.Unlock()
	if n, ok := driver.(interface{ SetJobNotify(func()) }); ok {
		n.SetJobNotify(a.jobs.Notify)
	}
	a.exec.SetJobs(a.jobs)
	a.m.reg.MustRegister(&jobCollector{m: a.jobs})
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.jobs.Run(ctx)
		if a.fleet != nil {
			// The lease is not revoked: copies keep running in their
			// VMs, and a restarted agent takes their slots back.
			a.fleet.Close()
		}
	}()
}

// fleetView is GET /v1/fleet: the fleet's slots as etcd has them now.
func (a *Agent) fleetView(ctx context.Context) (api.Fleet, error) {
	a.mu.Lock()
	f := a.fleet
	a.mu.Unlock()
	if f == nil {
		return api.Fleet{}, errNoFleet
	}
	held, waiting, err := f.Held(ctx)
	if err != nil {
		return api.Fleet{}, err
	}
	out := api.Fleet{Host: a.cfg.JobsConfig.FleetHost, LeaseOK: f.LeaseOK(), Held: []api.FleetSlot{}, Waiting: []api.FleetSlot{}}
	for _, s := range held {
		out.Held = append(out.Held, wireSlot(s))
	}
	for _, s := range waiting {
		out.Waiting = append(out.Waiting, wireSlot(s))
	}
	return out, nil
}

var errNoFleet = errors.New("no fleet block in the agent's configuration")

func wireSlot(s fleet.Slot) api.FleetSlot {
	return api.FleetSlot{Budget: s.Budget, Job: s.JobID, Host: s.Host, VM: s.VM, Disk: s.Disk, Kind: s.Kind,
		Speed: s.Speed, Since: s.Since, Running: s.Running}
}

// ruleStillWants: a ready copy a rule asked for pivots only while that
// rule is in the policy in force.
func (a *Agent) ruleStillWants(j *state.Job) bool {
	names := a.ruleNames.Load()
	return names != nil && (*names)[j.Rule]
}

// setRuleNames records the rules in force for the job manager's goroutine.
func (a *Agent) setRuleNames(set *policy.Set) {
	names := map[string]bool{}
	for _, r := range set.Rules {
		names[r.Name] = true
	}
	a.ruleNames.Store(&names)
}

// jobCollector reads the jobs at each scrape, so progress is never a
// cycle old.
type jobCollector struct{ m *jobs.Manager }

var (
	jobStateDesc    = prometheus.NewDesc("qtune_job_state", "1 for the state each block job is in; reason names a failed job's cause (target_full, target_gone, job_error, vm_gone, ...).", []string{"id", "kind", "vm", "disk", "state", "reason"}, nil)
	jobOffsetDesc   = prometheus.NewDesc("qtune_job_offset_bytes", "Bytes a block job has done.", []string{"id", "kind", "vm", "disk"}, nil)
	jobLengthDesc   = prometheus.NewDesc("qtune_job_length_bytes", "Bytes a block job has to do in all (it can grow while the guest writes).", []string{"id", "kind", "vm", "disk"}, nil)
	jobRateDesc     = prometheus.NewDesc("qtune_job_rate_bytes_per_second", "A block job's recent speed.", []string{"id", "kind", "vm", "disk"}, nil)
	jobETADesc      = prometheus.NewDesc("qtune_job_eta_seconds", "Estimated time left of a running block job.", []string{"id", "kind", "vm", "disk"}, nil)
	jobAttemptsDesc = prometheus.NewDesc("qtune_job_attempts", "Starts of a block job so far.", []string{"id", "kind", "vm", "disk"}, nil)
)

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobStateDesc, jobOffsetDesc, jobLengthDesc, jobRateDesc, jobETADesc, jobAttemptsDesc} {
		ch <- d
	}
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	jobs, err := c.m.Jobs()
	if err != nil {
		return
	}
	for _, j := range jobs {
		l := []string{j.ID, string(j.Kind), j.VM, j.Disk}
		reason := "" // one series per job: the label does not change while it runs
		if j.State == state.JobFailed {
			reason = j.Cause
		}
		ch <- prometheus.MustNewConstMetric(jobStateDesc, prometheus.GaugeValue, 1, append(l, string(j.State), reason)...)
		ch <- prometheus.MustNewConstMetric(jobAttemptsDesc, prometheus.GaugeValue, float64(j.Attempts), l...)
		if j.State.Final() {
			continue
		}
		p := j.Progress
		ch <- prometheus.MustNewConstMetric(jobOffsetDesc, prometheus.GaugeValue, float64(p.Offset), l...)
		ch <- prometheus.MustNewConstMetric(jobLengthDesc, prometheus.GaugeValue, float64(p.Length), l...)
		ch <- prometheus.MustNewConstMetric(jobRateDesc, prometheus.GaugeValue, p.Rate, l...)
		ch <- prometheus.MustNewConstMetric(jobETADesc, prometheus.GaugeValue, p.ETA.Seconds(), l...)
	}
}
