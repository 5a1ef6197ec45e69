package tuning_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/qmpfake"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// queueSpec is the spec and the state of a made-up knob, a disk's queue
// depth, that a fake QEMU reads with x-get-queue and sets with
// x-set-queue.
type queueSpec struct {
	Depth uint64 `json:"depth"`
}

const knobQueue policy.Knob = "test_queue"

// registerQueueKind is everything the made-up knob needs, in one place
// and through the registries alone (this file is outside the package):
// its policy block (schema, decoding, validation, plan text) and its
// executor hooks (desired state, bounds, QMP read and apply).
func registerQueueKind(t *testing.T) {
	policy.RegisterAction(policy.ActionKind{Knob: knobQueue, Attrs: []string{"depth"},
		Parse: func(b *policy.Block) any {
			n, ok := b.Number("depth", false)
			if !ok || n == 0 {
				b.Errorf("depth", "test_queue needs depth, a whole number above 0", "")
			}
			return queueSpec{Depth: n}
		},
		Describe: func(spec any) string { return fmt.Sprintf("queue depth %d", spec.(queueSpec).Depth) },
	})
	tuning.RegisterKnob(tuning.KnobKind{Knob: knobQueue,
		Desired: func(_ *tuning.Executor, d policy.Decision, _, _ state.KnobState, _ state.Target) (state.KnobState, error) {
			return state.Raw(d.Action.Spec(d.Knob))
		},
		Bounds: func(_ *tuning.Executor, want state.KnobState) error {
			var q queueSpec
			json.Unmarshal(want.RawValue(), &q)
			if q.Depth > 64 {
				return &tuning.Refusal{Code: tuning.RefuseBounds, Reason: fmt.Sprintf("queue depth %d is above 64", q.Depth)}
			}
			return nil
		},
		QMPRead: func(ctx context.Context, r *tuning.VMHandle, d sample.Disk) (state.KnobState, error) {
			var q queueSpec
			if err := r.Block().Call(ctx, "x-get-queue", map[string]any{"id": d.QOMPath}, &q); err != nil {
				return state.KnobState{}, err
			}
			return state.Raw(q)
		},
		QMPApply: func(ctx context.Context, r *tuning.VMHandle, d sample.Disk, s state.KnobState) error {
			var q queueSpec
			if err := json.Unmarshal(s.RawValue(), &q); err != nil {
				return err
			}
			return r.Block().Call(ctx, "x-set-queue", map[string]any{"id": d.QOMPath, "depth": q.Depth}, nil)
		},
	})
	t.Cleanup(func() {
		policy.UnregisterAction(knobQueue)
		tuning.UnregisterKnob(knobQueue)
	})
}

// queueVM is a fake QEMU with the disks of qmp/testdata and a queue
// depth per disk.
func queueVM(t *testing.T) (*qmpfake.Server, func(id string) uint64) {
	s := qmpfake.New(t)
	for cmd, file := range map[string]string{"query-block": "query-block.json", "query-blockstats": "query-blockstats.json"} {
		b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		json.Unmarshal(b, &v)
		s.Reply(cmd, v)
	}
	var mu sync.Mutex
	depth := map[string]uint64{}
	s.Handle("x-get-queue", func(args json.RawMessage) (any, string, string) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		mu.Lock()
		defer mu.Unlock()
		d, ok := depth[a.ID]
		if !ok {
			d = 8
		}
		return queueSpec{Depth: d}, "", ""
	})
	s.Handle("x-set-queue", func(args json.RawMessage) (any, string, string) {
		var a struct {
			ID    string
			Depth uint64
		}
		json.Unmarshal(args, &a)
		mu.Lock()
		defer mu.Unlock()
		depth[a.ID] = a.Depth
		return struct{}{}, "", ""
	})
	return s, func(id string) uint64 {
		mu.Lock()
		defer mu.Unlock()
		return depth[id]
	}
}

// A knob kind is added in one place: the made-up knob above is
// registered by this test alone, and a policy using it goes through
// parse and validation (errors with their place), evaluation, plan text,
// the executor's guarded path on a QMP backend (bounds, intent, apply,
// verify, audit) and a revert when the rule stops firing.
func TestRegisteredKnobKindEndToEnd(t *testing.T) {
	registerQueueKind(t)
	if _, _, err := policy.Parse(map[string][]byte{"bad.hcl": []byte("rule \"q\" {\n  when = true\n  test_queue { depth = 0 }\n}\n")}); err == nil ||
		!strings.Contains(err.Error(), "bad.hcl:3:24: rule \"q\": test_queue needs depth") {
		t.Fatalf("validation: %v", err)
	}
	set, _, err := policy.Parse(map[string][]byte{"q.hcl": []byte(`
rule "deep-queue" {
  when        = disk.write_iops > 100
  for         = "0s"
  clear_after = "0s"
  cooldown    = "0s"
  test_queue { depth = 32 }
}
rule "too-deep" {
  match { disk = "nothing-matches" }
  when = true
  test_queue { depth = 100 }
}`)})
	if err != nil {
		t.Fatal(err)
	}

	srv, depthOf := queueVM(t)
	ctx := context.Background()
	conn, err := qmp.Dial(ctx, srv.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := tuning.NewQMPBackend()
	b.AddVM("vm1", conn, 0)
	vm, err := b.VM("vm1")
	if err != nil {
		t.Fatal(err)
	}
	disk, err := vm.Disk(ctx, "drive1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := tuning.NewExecutor(b, s, tuning.Options{})

	ev := policy.NewEvaluator(set)
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	pt := func(at time.Time, iops float64) []sample.Point {
		return []sample.Point{{Disk: sample.Disk{VM: "vm1", Name: "drive1", Time: at, Format: "qcow2"},
			Rates: sample.Rates{WriteIOPS: iops, ReadLatencyMs: math.NaN()}}}
	}
	ds := ev.Evaluate(t0, pt(t0, 500))
	if len(ds) != 1 || ds[0].Knob != knobQueue || ds[0].Describe() != "queue depth 32" {
		t.Fatalf("decisions %+v", ds)
	}
	out, err := e.Execute(ctx, ds[0])
	if err != nil || out.Result != state.ResultApplied || depthOf(disk.QOMPath) != 32 {
		t.Fatalf("apply: %+v %v, depth %d", out, err, depthOf(disk.QOMPath))
	}
	if o, _ := s.Owned(state.Target{VM: "vm1", Disk: "drive1"}, knobQueue); o == nil || o.Phase != state.PhaseApplied ||
		o.Original.String() != `{"depth":8}` || o.Applied.String() != `{"depth":32}` {
		t.Fatalf("owned %+v", o)
	}

	// The executor stays the gate: the kind's bounds refuse, nothing is sent.
	too := ds[0]
	too.Rule, too.Action = "too-deep", policy.Action{Other: queueSpec{Depth: 100}}
	if _, err := e.Execute(ctx, too); err == nil || !strings.Contains(err.Error(), "above 64") || depthOf(disk.QOMPath) != 32 {
		t.Fatalf("bounds: %v, depth %d", err, depthOf(disk.QOMPath))
	}

	t1 := t0.Add(10 * time.Second)
	ds = ev.Evaluate(t1, pt(t1, 5))
	if len(ds) != 1 || !ds[0].Revert {
		t.Fatalf("after calming: %+v", ds)
	}
	if out, err := e.Execute(ctx, ds[0]); err != nil || out.Result != state.ResultReverted || depthOf(disk.QOMPath) != 8 {
		t.Fatalf("revert: %+v %v, depth %d", out, err, depthOf(disk.QOMPath))
	}
	recs, _ := s.Records(10)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %s %s->%s", r.Knob, r.Result, r.Before, r.After))
	}
	want := []string{`test_queue applied {"depth":8}->{"depth":32}`, `test_queue refused {"depth":32}->{"depth":100}`,
		`test_queue reverted {"depth":32}->{"depth":8}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
