package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/logonce"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/internal/sdnotify"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// source is where VMs come from and how they are read and tuned.
type source interface {
	Name() string
	// Run discovers VMs until ctx ends, then releases the connection.
	Run(ctx context.Context)
	// Sample reads every VM it can; errs holds the ones it could not, gone
	// the VMs that disappeared since the last call.
	Sample(ctx context.Context) (disks []sample.Disk, errs map[string]error, gone []string)
	Backend() tuning.Backend
	Tainted() []string
	Connected() (bool, uint64)
}

// historyCycles is how many recent cycles are kept for qtune plan, and
// historyPoints caps the points they hold: at 400 disks 120 cycles are
// ~30 MiB, so a big host keeps fewer cycles.
const (
	historyCycles = 120
	historyPoints = 12000
)

// Agent is the daemon.
type Agent struct {
	cfg     config.Config
	cfgPath string
	log     hclog.InterceptLogger
	clock   clock.Clock
	notify  func(string)
	wd      *watchdog // nil outside systemd or without WatchdogSec

	src      source
	store    *state.Store
	storeErr string // why the state store was refused; set before any goroutine starts
	exec     *tuning.Executor
	eval     *policy.Evaluator
	host     *hoststat.Reader
	m        *metrics
	jobs     *jobs.Manager // nil when the backend runs no block jobs
	fleet    *fleet.Fleet  // the fleet budgets on etcd; nil without a fleet block
	checks   *diskChecks   // the disk checks; nil when disabled

	failLog *logonce.Limiter // repeated failures: logged at start, change, reminder
	recon   *reconciler      // owned knobs, reconciled every cycle
	// reloadActions are the reverts a policy reload executed (a removed
	// rule lets go of its knob), published with the next cycle's actions.
	reloadActions []api.ActionStatus

	ruleNames atomic.Pointer[map[string]bool] // the rules in force, for the job manager

	rates *sample.Rater // last sample per disk, for rates
	watch watchList     // the VMs sampled every interval whatever their I/O (cadence.go)
	kept  retained      // each VM's last points, shown between its samples

	// afterCycle, when set (by tests), is told each cycle's time once
	// the cycle is published.
	afterCycle func(now time.Time)

	mu       sync.Mutex // guards what the HTTP handlers read
	status   api.Status
	history  []api.Cycle
	historyN int // points in history
}

// New builds an agent from a validated config. cfgPath (may be empty) is
// read again on SIGHUP for the log level.
func New(cfg config.Config, cfgPath string, log hclog.InterceptLogger) *Agent {
	return &Agent{cfg: cfg, cfgPath: cfgPath, log: log, clock: clock.Real{}, notify: func(string) {},
		host: hoststat.NewReader(), m: newMetrics(), rates: sample.NewRater(),
		failLog: logonce.New(clock.Real{}, failureReminder), recon: newReconciler()}
}

// recordsHost is the name this host goes by in the records a domain
// carries: its name in the fleet when the config gives one, so that a
// record and the fleet's slots name a host alike; the hostname otherwise.
func recordsHost(c config.Config) string {
	if c.JobsConfig.FleetHost != "" {
		return c.JobsConfig.FleetHost
	}
	h, _ := os.Hostname()
	return h
}

// SetNotify sets the service manager hook (READY=1, RELOADING=1, ...).
func (a *Agent) SetNotify(f func(state string)) { a.notify = f }

// Run runs the agent until ctx ends or a fatal error.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.cfg.Validate(); err != nil {
		return err
	}
	a.rates.KeepFor(int(raterKeep(a.cfg.Interval, a.cfg.IdleInterval)/a.cfg.Interval) + 1)
	closeStore, err := a.openStore()
	if err != nil {
		return err
	}
	defer closeStore()
	if a.src, err = a.openSource(ctx); err != nil {
		return err
	}
	a.exec = tuning.NewExecutor(a.src.Backend(), a.store, tuning.Options{
		DryRun: a.cfg.DryRun || a.refusing(), Clock: a.clock, Log: a.log.Named("tuning"), Identify: a.vmIdentity,
		Host: recordsHost(a.cfg),
		Limits: tuning.Limits{PerVMPerHour: a.cfg.Limits.PerVMPerHour, PerHostPerMinute: a.cfg.Limits.PerHostPerMinute,
			MinChange: a.cfg.Limits.MinChange, L2Budget: a.cfg.Limits.L2CacheBudget, CallTimeout: a.cfg.CallTimeout},
	})
	a.loadInitialPolicy()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	a.startJobs(runCtx, &wg)
	a.startDiskChecks(runCtx, &wg)
	wg.Add(1)
	go func() { defer wg.Done(); a.src.Run(runCtx) }()
	srv, err := a.serve(runCtx, &wg)
	if err != nil {
		stop()
		wg.Wait()
		return err
	}
	reload := make(chan struct{}, 1)
	a.watchReloads(runCtx, &wg, reload)
	if err := a.serveControl(runCtx, &wg); err != nil {
		stop()
		srv.Shutdown(context.Background())
		wg.Wait()
		return err
	}

	a.startWatchdog(runCtx, &wg)
	a.notify("READY=1")
	a.log.Info("agent running", "backend", a.src.Name(), "interval", a.cfg.Interval.String(), "listen", a.cfg.Listen, "dry_run", a.cfg.DryRun)
	a.loop(runCtx, reload)

	a.notify("STOPPING=1")
	a.log.Info("agent stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(sctx)
	cancel()
	stop()
	wg.Wait()
	return nil
}

func (a *Agent) openSource(ctx context.Context) (source, error) {
	return openSource(ctx, a.cfg, a.log, a.m, a.watch.reason)
}

// loadInitialPolicy loads the policy directory. When it does not load,
// the last set that loaded cleanly (kept in the state store) is run
// instead; with no such set the agent runs no rules, and then nothing it
// owns is released: a policy that cannot be read never means "every
// rule was removed".
func (a *Agent) loadInitialPolicy() {
	_, set, problems, err := a.readPolicy()
	a.recordReload(set, problems, err)
	if err == nil {
		a.eval = policy.NewEvaluator(set)
		a.eval.MaxAge = 3 * a.cfg.Interval
		return
	}
	set, loadedAt := a.lastGoodPolicy()
	if set != nil {
		a.log.Error("policy directory does not load; running the last good policy from the state store until it is fixed",
			"dir", a.cfg.PolicyDir, "loaded_at", loadedAt.Format(time.RFC3339), "rules", len(set.Rules), "error", err.Error())
		a.setInForce(set, api.PolicyFromStore, loadedAt)
	} else {
		a.log.Error("policy directory does not load and no earlier policy is stored; running with no rules, and keeping every knob qtune holds until it is fixed",
			"dir", a.cfg.PolicyDir, "error", err.Error())
		set = &policy.Set{}
		a.setInForce(set, api.PolicyNone, time.Time{})
	}
	a.eval = policy.NewEvaluator(set)
	a.eval.MaxAge = 3 * a.cfg.Interval
}

// readPolicy reads and parses the policy directory; a set that loads
// cleanly is recorded in the store as the last good one.
func (a *Agent) readPolicy() (map[string][]byte, *policy.Set, policy.Problems, error) {
	srcs, err := policy.ReadDir(a.cfg.PolicyDir)
	if err != nil {
		return nil, nil, nil, err
	}
	set, problems, err := policy.Parse(srcs)
	if err != nil {
		return srcs, nil, problems, err
	}
	if !a.refusing() {
		if err := a.store.PutLastGoodPolicy(srcs, a.clock.Now()); err != nil {
			a.log.Warn("policy loaded but not recorded as the last good set", "error", err.Error())
		}
	}
	return srcs, set, problems, nil
}

// lastGoodPolicy returns the stored last good set, or nil when there is
// none or it no longer parses with this qtune (then nothing is released
// either).
func (a *Agent) lastGoodPolicy() (*policy.Set, time.Time) {
	if a.refusing() {
		return nil, time.Time{}
	}
	p, err := a.store.LastGoodPolicy()
	if err != nil {
		a.log.Error("last good policy in the state store is unusable", "error", err.Error())
		return nil, time.Time{}
	}
	if p == nil {
		return nil, time.Time{}
	}
	set, _, err := policy.Parse(p.Sources())
	if err != nil {
		a.log.Error("last good policy in the state store does not load with this qtune; running with no rules", "error", err.Error())
		return nil, time.Time{}
	}
	return set, p.LoadedAt
}

func (a *Agent) recordReload(set *policy.Set, problems policy.Problems, err error) {
	for _, w := range problems.Warnings() {
		a.log.Warn("policy warning", "warning", w.String())
	}
	if err != nil {
		a.mu.Lock()
		a.status.Policy.Dir = a.cfg.PolicyDir
		a.status.Policy.Error = err.Error()
		if a.status.Policy.BrokenSince.IsZero() {
			a.status.Policy.BrokenSince = a.clock.Now()
		}
		a.mu.Unlock()
		a.m.reloads.WithLabelValues("error").Inc()
		a.m.policyOK.Set(0)
		return
	}
	a.mu.Lock()
	a.status.Policy.Error = ""
	a.status.Policy.BrokenSince = time.Time{}
	a.mu.Unlock()
	a.setInForce(set, api.PolicyFromFiles, a.clock.Now())
	a.m.reloads.WithLabelValues("ok").Inc()
	a.m.policyOK.Set(1)
}

// setInForce records which set runs, where it came from and when it loaded.
func (a *Agent) setInForce(set *policy.Set, source string, loadedAt time.Time) {
	a.setRuleNames(set)
	if a.src != nil {
		a.applyHistograms(set)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Policy.Dir = a.cfg.PolicyDir
	a.status.Policy.Source = source
	a.status.Policy.LoadedAt = loadedAt
	a.status.Policy.Rules = nil
	a.status.Policy.Defs = set.Defs()
	for _, r := range set.Rules {
		a.status.Policy.Rules = append(a.status.Policy.Rules, r.Name)
	}
	a.m.policyRules.Set(float64(len(set.Rules)))
	a.m.setPolicyLoadedAt(loadedAt)
}

func (a *Agent) policySource() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status.Policy.Source
}

// rulesCanBeRemoved says whether the set in force may release knobs of
// rules it does not have: only a set that loaded cleanly (now, or as the
// stored last good set) can say a rule was removed.
func (a *Agent) rulesCanBeRemoved() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status.Policy.Source != api.PolicyNone
}

// watchReloads turns SIGHUP and changes in the policy directory into
// reload requests (coalesced: several changes make one reload).
func (a *Agent) watchReloads(ctx context.Context, wg *sync.WaitGroup, reload chan<- struct{}) {
	request := func() {
		select {
		case reload <- struct{}{}:
		default:
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err := w.Add(a.cfg.PolicyDir); err != nil {
			a.log.Warn("not watching the policy directory; reload with SIGHUP", "dir", a.cfg.PolicyDir, "error", err.Error())
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer signal.Stop(hup)
		var events <-chan fsnotify.Event
		if w != nil {
			defer w.Close()
			events = w.Events
		}
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				request()
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				if strings.HasSuffix(ev.Name, ".hcl") {
					debounce = time.After(300 * time.Millisecond)
				}
			case <-debounce:
				request()
			}
		}
	}()
}

func (a *Agent) reload(ctx context.Context) {
	a.notify(sdnotify.Reloading())
	defer a.notify("READY=1")
	if a.cfgPath != "" {
		if cfg, err := config.Load(a.cfgPath); err == nil {
			if lvl := hclog.LevelFromString(cfg.LogLevel); lvl != hclog.NoLevel {
				a.log.SetLevel(lvl)
			}
		} else {
			a.log.Error("config reload: keeping the running settings", "error", err.Error())
		}
	}
	_, set, problems, err := a.readPolicy()
	a.recordReload(set, problems, err)
	if err != nil {
		a.log.Error("policy reload failed; the previous policy stays in force", "dir", a.cfg.PolicyDir, "error", err.Error())
		return
	}
	reverts := a.eval.Update(a.clock.Now(), set)
	a.log.Info("policy reloaded", "rules", len(set.Rules))
	for _, d := range reverts {
		a.reloadActions = append(a.reloadActions, a.execute(ctx, d))
	}
	// Knobs of removed rules the evaluator did not hold (owned since
	// before a restart, or while its VM was away) are released by the
	// next cycle's reconciliation, once their VM is reachable.
}

// startWatchdog checks interval against systemd's watchdog window and
// starts the pings, which come from their own goroutine.
func (a *Agent) startWatchdog(ctx context.Context, wg *sync.WaitGroup) {
	half, ok := sdnotify.WatchdogInterval()
	if !ok {
		return
	}
	window := 2 * half
	if w := watchdogWarning(window, a.cfg.Interval); w != "" {
		a.log.Warn(w, "interval", a.cfg.Interval.String(), "watchdog", window.String())
	}
	a.wd = newWatchdog(clock.Real{}, window, a.cfg.Interval, a.cfg.CallTimeout, a.notify)
	a.wd.run(ctx, wg)
}

// progress tells the watchdog the main loop is alive.
func (a *Agent) progress() {
	if a.wd != nil {
		a.wd.progress()
	}
}

// loop runs a cycle every interval until ctx ends.
func (a *Agent) loop(ctx context.Context, reload <-chan struct{}) {
	t := a.clock.NewTicker(a.cfg.Interval)
	defer t.Stop()
	a.cycle(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			a.reload(ctx)
		case <-t.C():
			a.cycle(ctx)
		}
		a.progress()
	}
}

func (a *Agent) cycle(ctx context.Context) {
	start := time.Now()
	now := a.clock.Now()
	disks, errs, gone := a.src.Sample(ctx)
	disks = a.withoutArriving(disks)
	for _, vm := range gone {
		a.eval.ForgetVM(vm)
		a.rates.ForgetVM(vm)
	}
	// What a reload did since the last cycle is news of this one.
	outcomes := a.reloadActions
	a.reloadActions = nil
	if !a.refusing() {
		a.reconcileOwned(ctx, now, disks, errs, gone)
		outcomes = append(outcomes, a.recon.actions...)
	}
	// After reconciliation, which may have restored or released some:
	// a knob QEMU cannot report is what the records say, from the first
	// sample after a start or a reconnect on.
	owned, _ := a.store.AllOwned() // a bad record is reported by reconcileOwned and publish
	tuning.OverlayRecorded(disks, owned, a.vmIdentity)
	points := a.points(now, disks)
	decisions := a.eval.Evaluate(now, points)
	for _, d := range decisions {
		outcomes = append(outcomes, a.execute(ctx, d))
	}
	dur := time.Since(start)
	a.m.cycle.Observe(dur.Seconds())
	if dur > a.cfg.Interval {
		a.m.late.Inc()
	}
	a.logSampleErrors(disks, errs, gone)
	a.publish(now, dur, points, a.kept.merge(points, errs, gone), errs, outcomes)
	a.updateWatched()
	if a.afterCycle != nil {
		a.afterCycle(now)
	}
}

// points derives rates from the previous sample of each disk and adds
// the host's side.
func (a *Agent) points(now time.Time, disks []sample.Disk) []sample.Point {
	host, err := a.host.Pressure()
	if err != nil {
		host = sample.Host{IOPressureSomeAvg10: nan, IOPressureSomeAvg60: nan, IOPressureFullAvg10: nan, IOPressureFullAvg60: nan}
	}
	out := make([]sample.Point, 0, len(disks))
	for _, d := range disks {
		r, ok := a.rates.Next(d)
		if !ok {
			continue
		}
		d.HostDevUtil, d.HostDevReadBPS, d.HostDevWriteBPS, d.HostDevReadLatencyMs, d.HostDevWriteLatencyMs, d.HostDevQueueDepth = nan, nan, nan, nan, nan, nan
		if d.Path != "" && strings.HasPrefix(d.Path, "/") {
			if img, err := a.host.ForImage(d.Path, now); err == nil {
				d.HostDevUtil, d.FSFreeBytes, d.HostDevice = img.Util, img.FreeBytes, img.Device
				d.HostDevReadBPS, d.HostDevWriteBPS, d.HostDevQueueDepth = img.Dev.ReadBPS, img.Dev.WriteBPS, img.Dev.QueueDepth
				d.HostDevReadLatencyMs, d.HostDevWriteLatencyMs = img.Dev.ReadLatencyMs, img.Dev.WriteLatencyMs
			}
		}
		d.Health = a.checks.health(d.VM + "/" + d.Name)
		out = append(out, sample.Point{Disk: d, Rates: r, Host: host})
	}
	a.rates.Sweep()
	// By VM/disk, without building that string for each comparison.
	slices.SortFunc(out, func(p, q sample.Point) int {
		return cmpVMDisk(p.Disk.VM, p.Disk.Name, q.Disk.VM, q.Disk.Name)
	})
	return out
}

func (a *Agent) execute(ctx context.Context, d policy.Decision) api.ActionStatus {
	if a.refusing() {
		return a.refused(d)
	}
	out, err := a.exec.Execute(ctx, d)
	a.m.actions.WithLabelValues(d.Rule, string(d.Knob), string(out.Result)).Inc()
	st := api.ActionStatus{At: a.clock.Now(), Rule: d.Rule, VM: d.VM, Disk: d.Disk, Knob: string(d.Knob), Result: string(out.Result),
		Before: out.Before.String(), After: out.After.String(), Reason: d.Reason}
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

var nan = math.NaN()

// cmpVMDisk orders as the strings vm1+"/"+disk1 and vm2+"/"+disk2 do.
func cmpVMDisk(vm1, disk1, vm2, disk2 string) int {
	if vm1 == vm2 {
		return strings.Compare(disk1, disk2)
	}
	// One name a prefix of the other: the "/" after it decides.
	a, b := vm1, vm2
	if n := min(len(a), len(b)); a[:n] == b[:n] {
		if len(a) == n {
			return strings.Compare("/"+disk1, b[n:]+"/"+disk2)
		}
		return strings.Compare(a[n:]+"/"+disk1, "/"+disk2)
	}
	return strings.Compare(a, b)
}

// serve starts the HTTP endpoints on a TCP address or "unix:PATH".
func (a *Agent) serve(ctx context.Context, wg *sync.WaitGroup) (*http.Server, error) {
	network, addr := "tcp", a.cfg.Listen
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
		os.Remove(p)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a.cfg.Listen, err)
	}
	if network == "tcp" && !loopback(ln.Addr()) {
		a.log.Warn("the metrics and status listener is reachable from other hosts; it shows VM names and disk paths", "listen", ln.Addr().String())
	}
	h := a.handler()
	if a.cfg.Pprof {
		if network == "tcp" && !loopback(ln.Addr()) {
			a.log.Warn("pprof is served on a loopback or unix listener only; not enabled", "listen", ln.Addr().String())
		} else {
			h = withPprof(h)
		}
	}
	if a.cfg.WebConfigFile != "" {
		if err := web.Validate(a.cfg.WebConfigFile); err != nil {
			ln.Close()
			return nil, fmt.Errorf("web config %s: %w", a.cfg.WebConfigFile, err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: a.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	flags := &web.FlagConfig{WebConfigFile: &a.cfg.WebConfigFile}
	// The toolkit's own start-up lines repeat what "agent running" says.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := web.Serve(ln, srv, flags, quiet); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("HTTP server", "error", err.Error())
		}
	}()
	return srv, nil
}

// loopback says whether addr can be reached from this host only.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
