package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// End-to-end tests: the real qtune binary, real QEMU VMs, a real libvirtd.

// e2ePolicy is the noisy-neighbour rule with short timings, written as an
// SRE would first write it: while the disk runs at the throttle the rule
// set, its write rate is censored, so the throttle holds for as long as
// the guest stays loud.
const e2ePolicy = `
rule "calm-noisy-writers" {
  when        = disk.write_iops > 400
  for         = "3s"
  clear_after = "4s"
  cooldown    = "2s"
  throttle {
    write_iops = 150
  }
}
`

const e2eInterval = time.Second

// buildQtune builds the qtune binary once per test run (every end-to-end
// test runs the same one; a build per test cost seconds of CPU each).
func buildQtune(t *testing.T) string { return builtBinary(t, "") }

var builds struct {
	mu   sync.Mutex
	dir  string            // removed by TestMain
	bins map[string]string // by build tags
	errs map[string]error
}

// builtBinary builds ./cmd/qtune with tags the first time it is asked
// for and returns the same file to every later caller.
func builtBinary(t *testing.T, tags string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if bin, ok := builds.bins[tags]; ok {
		if err := builds.errs[tags]; err != nil {
			t.Fatal(err)
		}
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "qtune-e2e-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.bins, builds.errs = dir, map[string]string{}, map[string]error{}
	}
	bin := filepath.Join(builds.dir, "qtune"+strings.ReplaceAll("-"+tags, ",", "-"))
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("build qtune (tags %q): %v\n%s", tags, err, out)
	}
	builds.bins[tags], builds.errs[tags] = bin, err
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestMain removes the binaries the end-to-end tests built. Its parallel
// tests run GOMAXPROCS at a time: at four, guests that must reach a
// rate (over 400 writes a second, or a throttle's limit) fell short
// beside three others on a 2-core host.
func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runningAgent is a qtune agent process.
type runningAgent struct {
	cmd    *exec.Cmd
	addr   string
	state  string
	policy string
	env    []string // added to the agent's environment
	log    *syncBuffer
	done   chan error
}

// syncBuffer is the agent's stderr, written by exec's copier while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startAgent(t *testing.T, bin string, args ...string) *runningAgent {
	t.Helper()
	return startAgentWith(t, bin, e2ePolicy, args...)
}

// startAgentWith is startAgent with another policy.
func startAgentWith(t *testing.T, bin, policy string, args ...string) *runningAgent {
	t.Helper()
	return startAgentEnv(t, bin, policy, nil, args...)
}

// startAgentEnv is startAgentWith with env added to the agent's
// environment (the test's own is shared by tests running in parallel).
func startAgentEnv(t *testing.T, bin, policy string, env []string, args ...string) *runningAgent {
	t.Helper()
	a := &runningAgent{addr: freePort(t), state: t.TempDir(), policy: t.TempDir(), env: env}
	if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return a.start(t, bin, args...)
}

// start runs the agent with a's state, policy and address (again, after
// a restart).
func (a *runningAgent) start(t *testing.T, bin string, args ...string) *runningAgent {
	t.Helper()
	a = &runningAgent{addr: a.addr, state: a.state, policy: a.policy, env: a.env, log: &syncBuffer{}, done: make(chan error, 1)}
	args = append([]string{"agent", "--policy", a.policy, "--state-dir", a.state, "--listen", a.addr,
		"--control-socket", filepath.Join(a.state, "control.sock"), "--interval", e2eInterval.String(), "--log-format", "text"}, args...)
	// An agent on a lab libvirtd gets a call deadline of one interval
	// unless the test gives one: the lab's daemons share two cores with
	// the guests of up to four tests, and a call through libvirtd (two
	// round trips for passthrough, a migration going on) can take longer
	// than the default half interval there; a cycle whose call times out
	// shows the domain's records orphaned until the next.
	if slices.Contains(args, "--libvirt-socket") && !slices.Contains(args, "--call-timeout") {
		args = append(args, "--call-timeout", e2eInterval.String())
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stderr = a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.done
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	a.waitFor(t, 20*time.Second, "first cycle", func(s api.Status) bool { return !s.LastCycle.IsZero() })
	return a
}

// stop ends the agent with SIGTERM, which keeps what it owns recorded,
// and waits for it.
func (a *runningAgent) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err // the cleanup waits for it again
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop within 20 s of SIGTERM")
	}
}

func (a *runningAgent) status(t *testing.T) api.Status {
	t.Helper()
	var s api.Status
	if err := agentGet(context.Background(), a.addr, "/v1/status", &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (a *runningAgent) history(t *testing.T) []api.Cycle {
	t.Helper()
	var h []api.Cycle
	if err := agentGet(context.Background(), a.addr, "/v1/history", &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func (a *runningAgent) waitFor(t *testing.T, limit time.Duration, what string, ok func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var s api.Status
		err := agentGet(context.Background(), a.addr, "/v1/status", &s)
		if err == nil && ok(s) {
			return s
		}
		select {
		case err := <-a.done:
			t.Fatalf("agent exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v (last status error %v):\n%+v", what, limit, err, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (a *runningAgent) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + a.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

func action(s api.Status, vm, result string) *api.ActionStatus {
	for i := len(s.Actions) - 1; i >= 0; i-- {
		if s.Actions[i].VM == vm && s.Actions[i].Result == result {
			return &s.Actions[i]
		}
	}
	return nil
}

// loudNow is the e2e policy's condition on one point. A disk running at
// its write throttle is censored: the policy neither fires nor clears on
// it, so it counts as still loud here.
func loudNow(p sample.Point) bool {
	limit := float64(p.Disk.Throttle.IOPSWrite)
	pinned := limit > 0 && p.Rates.WriteIOPS >= policy.PinnedShare*limit
	return p.Rates.WriteIOPS > 400 || pinned
}

// onset is when the condition began to hold without a break before at
// (want true) or to fail without a break (want false): the cycle after
// the last one, before at, that broke the run. A cycle without a sample
// of the VM breaks a run either way, as it does for the policy engine.
func onset(h []api.Cycle, vm string, at time.Time, want bool) time.Time {
	var start time.Time
	for _, c := range h {
		if c.At.After(at) {
			break
		}
		held := false
		for _, p := range c.Points {
			if p.Disk.VM == vm {
				held = loudNow(p) == want
			}
		}
		switch {
		case !held:
			start = time.Time{}
		case start.IsZero():
			start = c.At
		}
	}
	return start
}

func qmpLabVMs(t *testing.T) (dir string, noisy, reader *lab.VM) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	img := func(name string) string {
		p := filepath.Join(t.TempDir(), name+".qcow2")
		if err := lab.CreateImage(ctx, p, "qcow2", 128<<20, lab.ImageOpts{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	loud := loadgen.Defaults()
	loud.Loops, loud.Span = 0, 32<<20
	// Quiet, then as loud as the guest can be: the contrast holds on a
	// loaded machine too.
	loud.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 50, Duration: 6 * time.Second},
		{Pattern: loadgen.RandWrite, Rate: 0, Duration: 14 * time.Second}}
	steady := loadgen.Defaults()
	steady.Loops, steady.Span = 0, 32<<20
	steady.Phases = []loadgen.Phase{{Pattern: loadgen.RandRead, Rate: 300, Duration: time.Hour}}
	noisy = lab.StartVMT(t, lab.VMConfig{Name: "noisy", Workload: &loud, Disks: []lab.Disk{{ID: "disk0", Image: img("noisy"), CacheDirect: true}}})
	reader = lab.StartVMT(t, lab.VMConfig{Name: "reader", Workload: &steady, Disks: []lab.Disk{{ID: "disk0", Image: img("reader"), CacheDirect: true}}})
	for _, vm := range []*lab.VM{noisy, reader} {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := vm.WaitSerial(wctx, "qtune-load ready")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, vm.Name+".sock")); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a socket: ignored"), 0o644)
	return dir, noisy, reader
}

func TestAgentEndToEndQMP(t *testing.T) {
	lab.NeedQEMU(t) // not in parallel: its timings need a guest at full speed
	bin := buildQtune(t)
	dir, noisy, _ := qmpLabVMs(t)
	a := startAgent(t, bin, "--qmp-dir", dir)

	// Throttled within for + one interval of turning loud.
	s := a.waitFor(t, 40*time.Second, "a throttle on the noisy VM", func(s api.Status) bool { return action(s, "noisy", "applied") != nil })
	applied := action(s, "noisy", "applied").At
	h := a.history(t)
	loud := onset(h, "noisy", applied, true)
	if loud.IsZero() {
		t.Fatal("history does not show the noisy VM loud before the throttle")
	}
	if lag := applied.Sub(loud); lag > 3*time.Second+e2eInterval+500*time.Millisecond {
		t.Errorf("throttled %v after turning loud (for 3s + interval 1s)", lag)
	}
	t.Logf("loud from %s, throttled at %s", loud.Format("15:04:05.0"), applied.Format("15:04:05.0"))

	// Reverted within clear_after + one interval of calming down.
	s = a.waitFor(t, 40*time.Second, "the throttle lifted", func(s api.Status) bool {
		r := action(s, "noisy", "reverted")
		return r != nil && r.At.After(applied)
	})
	reverted := action(s, "noisy", "reverted").At
	h = a.history(t)
	calm := onset(h, "noisy", reverted, false)
	if calm.IsZero() {
		t.Fatal("history does not show the noisy VM calm before the revert")
	}
	if lag := reverted.Sub(calm); lag > 4*time.Second+e2eInterval+500*time.Millisecond || lag < 4*time.Second-e2eInterval {
		t.Errorf("reverted %v after calming (clear_after 4s + interval 1s)", lag)
	}
	t.Logf("calm from %s, reverted at %s", calm.Format("15:04:05.0"), reverted.Format("15:04:05.0"))

	// The steady reader was never touched.
	for _, act := range s.Actions {
		if act.VM == "reader" {
			t.Errorf("the reader was acted on: %+v", act)
		}
	}

	t.Run("metrics parse", func(t *testing.T) {
		p := expfmt.NewTextParser(model.LegacyValidation)
		families, err := p.TextToMetricFamilies(strings.NewReader(a.metrics(t)))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"qtune_disk_write_iops", "qtune_actions_total", "qtune_cycle_duration_seconds", "qtune_policy_last_reload_success", "qtune_backend_call_duration_seconds"} {
			if families[name] == nil {
				t.Errorf("metric %s missing", name)
			}
		}
		applied := 0.0
		for _, m := range families["qtune_actions_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "applied" {
					applied += m.GetCounter().GetValue()
				}
			}
		}
		if applied < 1 {
			t.Errorf("qtune_actions_total{result=applied} = %v", applied)
		}
	})

	t.Run("status and plan", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"status", "--addr", a.addr}, &out, &errOut); code != exitOK {
			t.Fatalf("status: %s", errOut.String())
		}
		for _, want := range []string{"backend qmp:", "noisy", "reader", "RECENT ACTIONS", "calm-noisy-writers",
			"noisy            qemu offers: blockdev-reopen, latency-histograms, blockdev-del, block-graph"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("status lacks %q:\n%s", want, out.String())
			}
		}
		// A stricter policy that would throttle the reader too.
		pdir := t.TempDir()
		os.WriteFile(filepath.Join(pdir, "strict.hcl"), []byte(`
rule "cap-readers" {
  when = disk.read_iops > 100
  for  = "2s"
  throttle { read_iops = 50 }
}`), 0o644)
		out.Reset()
		if code := run(context.Background(), []string{"plan", "--addr", a.addr, "--policy", pdir}, &out, &errOut); code != exitOK {
			t.Fatalf("plan: %s", errOut.String())
		}
		if !strings.Contains(out.String(), "+ would set throttle of reader/disk0 (rule cap-readers)") {
			t.Errorf("plan:\n%s", out.String())
		}
	})

	t.Run("a broken policy on SIGHUP keeps the old one", func(t *testing.T) {
		before := a.status(t)
		os.WriteFile(filepath.Join(a.policy, "broken.hcl"), []byte("rule \"x\" { when = disk.nope > 1 }\n"), 0o644)
		a.cmd.Process.Signal(syscall.SIGHUP)
		s := a.waitFor(t, 10*time.Second, "the reload error", func(s api.Status) bool { return s.Policy.Error != "" })
		if !strings.Contains(s.Policy.Error, "broken.hcl:1:") || len(s.Policy.Rules) != len(before.Policy.Rules) {
			t.Errorf("policy status after a broken reload: %+v", s.Policy)
		}
		if !strings.Contains(a.metrics(t), "qtune_policy_last_reload_success 0") {
			t.Error("metric does not show the failed reload")
		}
		os.Remove(filepath.Join(a.policy, "broken.hcl"))
		a.cmd.Process.Signal(syscall.SIGHUP)
		a.waitFor(t, 10*time.Second, "a clean reload", func(s api.Status) bool { return s.Policy.Error == "" })
	})

	t.Run("a hung VM does not hold up the others", func(t *testing.T) {
		noisy.Signal(syscall.SIGSTOP)
		defer noisy.Signal(syscall.SIGCONT)
		from := time.Now()
		time.Sleep(8 * time.Second)
		h := a.history(t)
		var cycles, withReader int
		var prev time.Time
		for _, c := range h {
			if c.At.Before(from.Add(time.Second)) {
				continue
			}
			cycles++
			if !prev.IsZero() && c.At.Sub(prev) > e2eInterval+500*time.Millisecond {
				t.Errorf("cycle gap %v with a hung VM", c.At.Sub(prev))
			}
			prev = c.At
			for _, p := range c.Points {
				if p.Disk.VM == "reader" {
					withReader++
				}
			}
		}
		if cycles < 6 || withReader < cycles-1 {
			t.Errorf("%d cycles in 7 s with a hung VM, %d sampled the reader", cycles, withReader)
		}
		if s := a.status(t); s.Errors["noisy"] == "" {
			t.Errorf("the hung VM's error is not in status: %+v", s.Errors)
		}
	})

	t.Run("SIGTERM exits promptly with owned knobs recorded", func(t *testing.T) {
		a.waitFor(t, 40*time.Second, "the noisy VM throttled again", func(s api.Status) bool { return len(s.Owned) > 0 })
		start := time.Now()
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-a.done:
			if err != nil {
				t.Errorf("exit: %v", err)
			}
			a.done <- err // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatal("no exit within 10 s of SIGTERM")
		}
		t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
		store, err := state.OpenStore(a.state)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		owned, _ := store.AllOwned()
		if len(owned) != 1 || owned[0].VM != "noisy" || owned[0].Knob != policy.KnobThrottle || owned[0].Original.Throttle() == nil {
			t.Errorf("owned knobs after exit: %+v", owned)
		}
		if !strings.Contains(a.log.String(), "agent stopping") {
			t.Error("no stopping line in the log")
		}
	})
}

func TestAgentSurvivesLibvirtdRestart(t *testing.T) {
	lab.NeedLibvirt(t) // not in parallel: its guest's rates need the host to itself
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "t1", 0)
	a := startAgent(t, bin, "--log-level", "debug", "--libvirt-socket", d.SocketPath(), "--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
	a.waitFor(t, 20*time.Second, "the domain sampled", func(s api.Status) bool { return len(s.VMs) == 1 && s.VMs[0].Name == "t1" && len(s.VMs[0].Disks) > 0 })
	// Facts bulk stats lack come from the XML and the image header: the
	// qcow2 cluster size and the L2 cache in force (64 MiB needs 8 KiB).
	h := a.history(t)
	last := h[len(h)-1].Points[0].Disk
	if last.Format != "qcow2" || last.ClusterSize != 64<<10 || last.L2CacheSize != 8<<10 || last.QOMPath == "" {
		t.Errorf("libvirt disk facts: %+v", last)
	}
	// The loud domain is throttled through libvirt's own API.
	a.waitFor(t, 30*time.Second, "a throttle on t1", func(s api.Status) bool { return action(s, "t1", "applied") != nil })
	if out, err := d.Virsh(ctx, "blkdeviotune", "t1", "vda"); err != nil || !regexp.MustCompile(`write_iops_sec\s*:\s*150\b`).MatchString(out) {
		t.Errorf("blkdeviotune after the agent acted: %s %v", out, err)
	}
	// t1 is defined anew under its name (not in a subtest: the new
	// domain lives on for the phases after it).
	libvirtRedefined(t, ctx, a, d)
	t.Run("drift seen through the tunable event", func(t *testing.T) { libvirtDriftByEvent(t, ctx, a, d) })
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	a.waitFor(t, 30*time.Second, "a reconnect and t1's writes sampled again", func(s api.Status) bool {
		return s.Reconnects >= 1 && s.Connected && s.LastCycle.After(restarted) && len(s.VMs) == 1 && len(s.VMs[0].Disks) > 0 &&
			s.VMs[0].Disks[0].WriteIOPS >= 100 && s.VMs[0].Disks[0].Throttle != nil
	})
	sc := bufio.NewScanner(strings.NewReader(a.log.String()))
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "libvirt reconnected") {
			found = true
		}
	}
	if !found {
		t.Errorf("no reconnect in the log")
	}

	// After the restart, with the guest's writes checked above: these
	// change the guest itself.
	t.Run("hot-plugged disk", func(t *testing.T) { libvirtHotPlug(t, ctx, a, d) })
	t.Run("paused domain", func(t *testing.T) { libvirtPausedDomain(t, ctx, a, d) })
}
