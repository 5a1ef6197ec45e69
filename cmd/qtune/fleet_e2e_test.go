package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
)

// fleetHostConfig is an agent's configuration: the fleet on the lab's
// etcd, one budget of one copy and 16 MiB/s into shared.
func fleetHostConfig(e *lab.Etcd, host, prefix, shared string) string {
	eps, _ := json.Marshal(e.Endpoints())
	return fmt.Sprintf(`fleet {
  endpoints       = %s
  lease_ttl       = "3s"
  request_timeout = "1s"
  dial_timeout    = "3s"
  floor_speed     = "1MiB"
  host            = %q
  prefix          = %q
}
budget "shared" {
  dirs       = [%q]
  max_copies = 1
  max_speed  = "16MiB"
}
`, eps, host, prefix, shared)
}

// fleetAgent is one host of the test: its agent, its VM, its config.
type fleetAgent struct {
	*runningAgent
	name   string
	vm     *lab.VM
	args   []string
	qmpDir string
}

// add gives the agent another VM to look after.
func (h *fleetAgent) add(t *testing.T, vm *lab.VM) {
	t.Helper()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(h.qmpDir, vm.Name+".sock")); err != nil {
		t.Fatal(err)
	}
}

// mirrorOf is the host's mirror job, if it has one.
func mirrorOf(s api.Status) *api.Job {
	for i := range s.Jobs {
		if s.Jobs[i].Kind == policy.KnobMirror {
			return &s.Jobs[i]
		}
	}
	return nil
}

// fleetVM starts a paused VM whose disk of size MiB holds data MiB written, in a
// qmp directory of its own to link into an agent's; extra adds QEMU
// arguments (a second monitor for the test).
func fleetVM(t *testing.T, name string, size, data uint64, extra ...string) *lab.VM {
	t.Helper()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), name+"-disk.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", size<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0x5a, 0, data<<20); err != nil {
		t.Fatal(err)
	}
	return lab.StartVMT(t, lab.VMConfig{Name: name, Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}, Extra: extra})
}

// mirrorOn is the host's mirror job of vm, if it has one.
func mirrorOn(s api.Status, vm string) *api.Job {
	for i := range s.Jobs {
		if s.Jobs[i].Kind == policy.KnobMirror && s.Jobs[i].VM == vm {
			return &s.Jobs[i]
		}
	}
	return nil
}

// Three agents on this machine, each with its own state and a paused
// VM, one fleet budget of one copy into one directory on a real
// three-member etcd, a rule that wants every disk moved there: at every
// instant at most one copy runs fleet-wide (the jobs' own start and end
// times), and every VM is moved in the end. Then a copy's holder is
// killed with SIGKILL (another host starts within the TTL and an
// interval), and the whole etcd cluster stopped during a copy: nothing
// new starts, the running copy is slowed to the floor speed (read back
// from QEMU), and both go on when etcd is back.
func TestFleetEndToEndOneCopyAtATime(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	e := lab.StartEtcdT(t)
	bin := buildQtune(t)
	shared := t.TempDir()
	prefix := fmt.Sprintf("/qtune-e2e/%d/", os.Getpid())
	rule := fmt.Sprintf("rule \"move\" {\n  when = disk.cluster_size > 0\n  for  = \"1s\"\n  mirror { target_dir = %q }\n}\n", shared)

	var hosts []*fleetAgent
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("hv%d", i)
		vm := fleetVM(t, name+"-vm", 32, 8)
		qmpDir := t.TempDir()
		if err := os.Symlink(vm.QMPPath(), filepath.Join(qmpDir, vm.Name+".sock")); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "agent.hcl")
		if err := os.WriteFile(cfg, []byte(fleetHostConfig(e, name, prefix, shared)), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"--config", cfg, "--qmp-dir", qmpDir, "--allow-mirror-dir", shared}
		hosts = append(hosts, &fleetAgent{runningAgent: startAgentWith(t, bin, rule, args...), name: name, vm: vm, args: args, qmpDir: qmpDir})
	}
	began := time.Now()
	t.Logf("etcd, three VMs and three agents up")

	// Watch the fleet as etcd has it, through qtune jobs --fleet, until
	// every VM is moved: never more than one slot held.
	sock := filepath.Join(hosts[0].state, "control.sock")
	deadline := time.Now().Add(90 * time.Second)
	sawHeld := false
	for {
		out, err := qtuneCmd(t, bin, "jobs", "--fleet", "--json", "--socket", sock)
		var f api.Fleet
		if err != nil || json.Unmarshal([]byte(out), &f) != nil {
			t.Fatalf("qtune jobs --fleet --json: %v\n%s", err, out)
		}
		if len(f.Held) > 1 {
			t.Fatalf("%d slots held at once in a budget of one: %+v", len(f.Held), f.Held)
		}
		if len(f.Held) == 1 {
			sawHeld = true
			if s := f.Held[0]; s.Budget != "shared" || s.Kind != "mirror" || s.Speed != 16<<20 || !strings.HasSuffix(s.VM, "-vm") {
				t.Fatalf("slot held: %+v", s)
			}
		}
		done := 0
		for _, h := range hosts {
			if j := mirrorOf(h.status(t)); j != nil && j.State.Final() {
				done++
			}
		}
		if done == len(hosts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d VMs moved after 90s", done, len(hosts))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !sawHeld {
		t.Error("qtune jobs --fleet never showed a slot held")
	}
	type span struct {
		host       string
		start, end time.Time
	}
	var spans []span
	for _, h := range hosts {
		j := mirrorOf(h.status(t))
		if j.State != api.JobDone || !j.Pivoted || !strings.HasPrefix(j.Dest, shared+"/") {
			t.Fatalf("%s: %s %q (dest %s)", h.name, j.State, j.Error, j.Dest)
		}
		spans = append(spans, span{h.name, j.Started, j.Ended})
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Fatalf("copies overlap: %s ran %s-%s, %s started %s", spans[i-1].host, spans[i-1].start.Format(time.StampMilli),
				spans[i-1].end.Format(time.StampMilli), spans[i].host, spans[i].start.Format(time.StampMilli))
		}
	}
	out, err := qtuneCmd(t, bin, "jobs", "--fleet", "--socket", sock)
	if err != nil || !strings.Contains(out, "fleet lease held") || !strings.Contains(out, "(no slots held)") {
		t.Errorf("qtune jobs --fleet at the end (%v):\n%s", err, out)
	}
	if m := hosts[0].metrics(t); !strings.Contains(m, "qtune_fleet_lease_ok 1") || !strings.Contains(m, `qtune_fleet_budget_slots{budget="shared",state="limit"} 1`) {
		t.Errorf("fleet metrics:\n%s", grepLines(m, "qtune_fleet_"))
	}
	t.Logf("every VM moved, one copy at a time, after %s", time.Since(began).Round(time.Millisecond))

	// SIGKILL the agent holding the slot: its lease runs out, and the
	// other host waiting starts within the TTL and one interval.
	const ttl, interval = 3 * time.Second, time.Second
	h1, h2 := hosts[0], hosts[1]
	v1, v2 := fleetVM(t, "hv1-b", 64, 32), fleetVM(t, "hv2-b", 64, 32)
	h1.add(t, v1)
	h2.add(t, v2)
	var holder, other *fleetAgent
	var holderVM, otherVM string
	wait(t, 30*time.Second, "a second copy running", func() bool {
		for _, c := range []struct {
			h, o   *fleetAgent
			vm, ov string
		}{{h1, h2, "hv1-b", "hv2-b"}, {h2, h1, "hv2-b", "hv1-b"}} {
			if j := mirrorOn(c.h.status(t), c.vm); j != nil && j.State == api.JobRunning {
				holder, other, holderVM, otherVM = c.h, c.o, c.vm, c.ov
				return true
			}
		}
		return false
	})
	if j := mirrorOn(other.status(t), otherVM); j != nil && j.State != api.JobPlanned {
		t.Fatalf("%s's copy %s while %s holds the slot", other.name, j.State, holder.name)
	}
	holder.cmd.Process.Signal(syscall.SIGKILL)
	holder.done <- <-holder.done // the cleanup waits for it again
	killed := time.Now()
	wait(t, 20*time.Second, "the other host's copy started", func() bool {
		j := mirrorOn(other.status(t), otherVM)
		return j != nil && j.State != api.JobPlanned
	})
	took := time.Since(killed)
	t.Logf("%s killed holding the slot; %s started %s later", holder.name, other.name, took.Round(time.Millisecond))
	// TTL + one interval, and the time it takes to ask etcd on a host
	// shared with the rest of the lab.
	if took > ttl+interval+2*time.Second {
		t.Errorf("%s started %s after the holder was killed, want within TTL %s + interval %s", other.name, took, ttl, interval)
	}
	restarted := holder.start(t, bin, holder.args...)
	holder.runningAgent = restarted
	for _, c := range []struct {
		h  *fleetAgent
		vm string
	}{{holder, holderVM}, {other, otherVM}} {
		c.h.waitFor(t, 60*time.Second, c.vm+" moved", func(s api.Status) bool {
			j := mirrorOn(s, c.vm)
			return j != nil && j.State.Final()
		})
		if j := mirrorOn(c.h.status(t), c.vm); j.State != api.JobDone || !j.Pivoted {
			t.Fatalf("%s: %s %q", c.vm, j.State, j.Error)
		}
	}
	if !strings.Contains(restarted.log.String(), "adopting it") {
		t.Errorf("the restarted agent did not adopt its running copy:\n%s", restarted.log.String())
	}
	t.Logf("both moved, %s", time.Since(began).Round(time.Millisecond))

	// The whole etcd cluster stopped during a copy: nothing new starts,
	// the running copy slows to the floor speed (QEMU's own word), and
	// both go on when etcd is back.
	h3 := hosts[2]
	probeSock := filepath.Join(t.TempDir(), "probe.sock")
	v3 := fleetVM(t, "hv3-b", 128, 96, "-qmp", "unix:"+probeSock+",server=on,wait=off")
	v1c := fleetVM(t, "hv1-c", 16, 8)
	probe, err := qmp.Dial(context.Background(), probeSock)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	speed := func() (uint64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		jobs, err := qmp.NewBlock(probe).QueryBlockJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			return 0, false
		}
		return jobs[0].Speed, true
	}
	h3.add(t, v3)
	wait(t, 30*time.Second, "hv3-b's copy moving", func() bool {
		s, ok := speed()
		return ok && s == 16<<20
	})
	if err := e.StopAll(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	h1.add(t, v1c)
	wait(t, 15*time.Second, "hv3-b's copy at the floor speed", func() bool {
		s, ok := speed()
		if !ok {
			t.Fatal("hv3-b's copy ended or was cancelled with etcd down")
		}
		return s == 1<<20
	})
	t.Logf("etcd stopped; hv3-b's copy at the floor speed %s later", time.Since(stopped).Round(time.Millisecond))
	h1.waitFor(t, 15*time.Second, "hv1-c waiting for etcd", func(s api.Status) bool {
		j := mirrorOn(s, "hv1-c")
		return j != nil && strings.Contains(j.Waiting, "etcd unreachable")
	})
	if j := mirrorOn(h3.status(t), "hv3-b"); j.State != api.JobRunning || j.SlowedTo != 1<<20 || j.Waiting == "" {
		t.Errorf("hv3-b's job with etcd down: %s slowed_to %d waiting %q", j.State, j.SlowedTo, j.Waiting)
	}
	if out, _ := qtuneCmd(t, bin, "jobs", "--socket", filepath.Join(h3.state, "control.sock")); !strings.Contains(out, "waiting:") {
		t.Errorf("qtune jobs does not say why hv3-b's copy is slow:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, 30*time.Second, "hv3-b's copy back to its speed", func() bool {
		s, ok := speed()
		if !ok {
			t.Fatal("hv3-b's copy ended before its speed was seen back")
		}
		return s == 16<<20
	})
	var ends []*api.Job
	for _, c := range []struct {
		h  *fleetAgent
		vm string
	}{{h3, "hv3-b"}, {h1, "hv1-c"}} {
		c.h.waitFor(t, 60*time.Second, c.vm+" moved", func(s api.Status) bool {
			j := mirrorOn(s, c.vm)
			return j != nil && j.State.Final()
		})
		j := mirrorOn(c.h.status(t), c.vm)
		if j.State != api.JobDone || !j.Pivoted {
			t.Fatalf("%s: %s %q", c.vm, j.State, j.Error)
		}
		ends = append(ends, j)
	}
	if ends[1].Started.Before(ends[0].Ended) {
		t.Errorf("hv1-c started at %s, before hv3-b's copy ended at %s", ends[1].Started.Format(time.StampMilli), ends[0].Ended.Format(time.StampMilli))
	}
	t.Logf("all done after %s", time.Since(began).Round(time.Millisecond))
}

// wait polls cond every 200 ms until it holds, or fails after limit.
func wait(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
