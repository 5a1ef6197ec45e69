package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
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
	name string
	vm   *lab.VM
	args []string
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
	e := lab.StartEtcdT(t)
	bin := buildQtune(t)
	ctx := context.Background()
	shared := t.TempDir()
	prefix := fmt.Sprintf("/qtune-e2e/%d/", os.Getpid())
	rule := fmt.Sprintf("rule \"move\" {\n  when = disk.cluster_size > 0\n  mirror { target_dir = %q }\n}\n", shared)

	var hosts []*fleetAgent
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("hv%d", i)
		src := filepath.Join(t.TempDir(), name+"-disk.qcow2")
		if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			t.Fatal(err)
		}
		if err := lab.WritePattern(ctx, src, "qcow2", byte(0x40+i), 0, 24<<20); err != nil {
			t.Fatal(err)
		}
		vm := lab.StartVMT(t, lab.VMConfig{Name: name + "-vm", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}})
		qmpDir := t.TempDir()
		if err := os.Symlink(vm.QMPPath(), filepath.Join(qmpDir, vm.Name+".sock")); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "agent.hcl")
		if err := os.WriteFile(cfg, []byte(fleetHostConfig(e, name, prefix, shared)), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"--config", cfg, "--qmp-dir", qmpDir, "--allow-mirror-dir", shared}
		hosts = append(hosts, &fleetAgent{runningAgent: startAgentWith(t, bin, rule, args...), name: name, vm: vm, args: args})
	}

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
}
