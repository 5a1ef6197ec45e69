package tuning

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/qtune/qtune/internal/qmpfake"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

const (
	qdevDrive1 = "/machine/peripheral/drive1/virtio-backend"
	qdevDisk0  = "/machine/peripheral/disk0/virtio-backend"
)

// histVM is a fake QEMU whose query-blockstats shows the histograms
// block-latency-histogram-set gave its disks. onSet runs inside each set
// call, before it takes effect.
type histVM struct {
	srv   *qmpfake.Server
	mu    sync.Mutex
	hists map[string]map[string][]uint64 // qdev: kind (rd, wr, flush): boundaries
	sets  int
	onSet func()
}

func newHistVM(t *testing.T) *histVM {
	v := &histVM{srv: qmpfake.New(t), hists: map[string]map[string][]uint64{}}
	b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", "query-block.json"))
	if err != nil {
		t.Fatal(err)
	}
	var qb any
	json.Unmarshal(b, &qb)
	v.srv.Reply("query-block", qb)
	v.srv.Handle("query-blockstats", func(json.RawMessage) (any, string, string) {
		b, _ := os.ReadFile(filepath.Join("..", "qmp", "testdata", "query-blockstats.json"))
		var stats []map[string]any
		json.Unmarshal(b, &stats)
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, st := range stats {
			for kind, bounds := range v.hists[st["qdev"].(string)] {
				st["stats"].(map[string]any)[kind+"_latency_histogram"] = map[string]any{"boundaries": bounds, "bins": make([]uint64, len(bounds)+1)}
			}
		}
		return stats, "", ""
	})
	v.srv.Handle("block-latency-histogram-set", func(args json.RawMessage) (any, string, string) {
		var a map[string]any
		json.Unmarshal(args, &a)
		if v.onSet != nil {
			v.onSet()
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		v.sets++
		id := a["id"].(string)
		all, hasAll := a["boundaries"]
		if len(a) == 1 {
			delete(v.hists, id)
			return struct{}{}, "", ""
		}
		if v.hists[id] == nil {
			v.hists[id] = map[string][]uint64{}
		}
		for kind, key := range map[string]string{"rd": "boundaries-read", "wr": "boundaries-write", "flush": "boundaries-flush"} {
			x, ok := a[key]
			if !ok && hasAll {
				x, ok = all, true
			}
			if ok {
				var bounds []uint64
				b, _ := json.Marshal(x)
				json.Unmarshal(b, &bounds)
				v.hists[id][kind] = bounds
			}
		}
		return struct{}{}, "", ""
	})
	return v
}

func (v *histVM) set(qdev string, bounds []uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if bounds == nil {
		delete(v.hists, qdev)
		return
	}
	v.hists[qdev] = map[string][]uint64{"rd": bounds, "wr": bounds, "flush": bounds}
}

func (v *histVM) get(qdev string) map[string][]uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hists[qdev]
}

func (v *histVM) setCalls() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sets
}

func histExecutor(t *testing.T, v *histVM, dryRun bool) (*Executor, *state.Store) {
	t.Helper()
	conn, err := qmp.Dial(context.Background(), v.srv.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := NewQMPBackend()
	b.AddVM("vm1", conn, 0)
	s, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Rate limits of one change: a histogram is not counted in them.
	return NewExecutor(b, s, Options{DryRun: dryRun, Limits: Limits{PerVMPerHour: 1, PerHostPerMinute: 1}}), s
}

func histOn(disk string) policy.Decision {
	return policy.Decision{Rule: "tail", VM: "vm1", Disk: disk, Knob: policy.KnobHistogram, Mode: policy.ModeEnforce,
		Action: policy.Action{Other: &policy.HistogramSpec{Boundaries: []uint64{1000, 5000}}}}
}

func histOff(disk string) policy.Decision {
	d := histOn(disk)
	d.Revert, d.Action = true, policy.Action{}
	return d
}

// Turning a histogram on writes the intent record before the set call,
// in dry-run too and outside the rate limits; the revert turns exactly
// it off and forgets it.
func TestHistogramIntentBeforeSetAndRevert(t *testing.T) {
	v := newHistVM(t)
	e, s := histExecutor(t, v, true)
	ctx := context.Background()
	var atSet *state.Owned
	v.onSet = func() { atSet, _ = s.Owned(state.Target{VM: "vm1", Disk: "drive1"}, policy.KnobHistogram) }
	if out, err := e.Execute(ctx, histOn("drive1")); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("on: %+v %v", out, err)
	}
	if atSet == nil || atSet.Phase != state.PhaseIntent || Histogram(atSet.Original).On || !Histogram(atSet.Applied).On {
		t.Fatalf("record at the set call: %+v, want the intent to turn it on from off", atSet)
	}
	if h := v.get(qdevDrive1); len(h) != 3 || len(h["flush"]) != 2 {
		t.Fatalf("histograms of drive1 %v, want rd, wr and flush", h)
	}
	if o, _ := s.Owned(state.Target{VM: "vm1", Disk: "drive1"}, policy.KnobHistogram); o == nil || o.Phase != state.PhaseApplied {
		t.Fatalf("record after the set: %+v", o)
	}
	v.onSet = nil
	if out, err := e.Execute(ctx, histOff("drive1")); err != nil || out.Result != state.ResultReverted || v.get(qdevDrive1) != nil {
		t.Fatalf("off: %+v %v, histograms %v", out, err, v.get(qdevDrive1))
	}
	if o, _ := s.Owned(state.Target{VM: "vm1", Disk: "drive1"}, policy.KnobHistogram); o != nil {
		t.Fatalf("record after the revert: %+v", o)
	}
	if out, err := e.Execute(ctx, histOn("drive1")); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("on again within the hour (limit of one change): %+v %v", out, err)
	}
}

// A disk that has a histogram someone else set (disk0 in the captured
// reply has a read histogram) is never owned: no record, no call, and a
// revert finds nothing to undo.
func TestHistogramOfSomeoneElseUntouched(t *testing.T) {
	v := newHistVM(t)
	e, s := histExecutor(t, v, false)
	ctx := context.Background()
	if out, err := e.Execute(ctx, histOn("disk0")); err != nil || out.Result != state.ResultNoOp || !Histogram(out.Before).On {
		t.Fatalf("on: %+v %v, want a no-op on the histogram there", out, err)
	}
	if o, _ := s.Owned(state.Target{VM: "vm1", Disk: "disk0"}, policy.KnobHistogram); o != nil {
		t.Fatalf("someone else's histogram owned: %+v", o)
	}
	if out, err := e.Execute(ctx, histOff("disk0")); err != nil || out.Result != state.ResultNoOp {
		t.Fatalf("off: %+v %v", out, err)
	}
	if n := v.setCalls(); n != 0 {
		t.Fatalf("%d set calls on someone else's histogram", n)
	}
}

// Someone else changes or removes a histogram qtune turned on: qtune
// lets go (drift) and neither sets it again nor removes theirs; the
// record goes when histograms are no longer wanted.
func TestHistogramDriftLetGo(t *testing.T) {
	for _, c := range []struct {
		name  string
		their []uint64
	}{{"changed", []uint64{42}}, {"removed", nil}} {
		t.Run(c.name, func(t *testing.T) {
			v := newHistVM(t)
			e, s := histExecutor(t, v, false)
			ctx := context.Background()
			if _, err := e.Execute(ctx, histOn("drive1")); err != nil {
				t.Fatal(err)
			}
			v.set(qdevDrive1, c.their)
			calls := v.setCalls()
			if out, err := e.Execute(ctx, histOn("drive1")); !errors.Is(err, ErrDrift) || out.Result != state.ResultDrift {
				t.Fatalf("after someone else: %+v %v, want drift", out, err)
			}
			if out, err := e.Execute(ctx, histOn("drive1")); err == nil || out.Result != state.ResultRefused {
				t.Fatalf("asked again: %+v %v, want refused while let go", out, err)
			}
			if out, err := e.Execute(ctx, histOff("drive1")); err != nil || out.Result != state.ResultNoOp {
				t.Fatalf("off: %+v %v", out, err)
			}
			if o, _ := s.Owned(state.Target{VM: "vm1", Disk: "drive1"}, policy.KnobHistogram); o != nil {
				t.Fatalf("record kept: %+v", o)
			}
			if n := v.setCalls(); n != calls {
				t.Fatalf("%d set calls after someone else's change", n-calls)
			}
		})
	}
}

// After a restart, an applied record whose histogram is gone from the
// same QEMU is drift; an intent whose set never happened is dropped.
func TestHistogramReconcile(t *testing.T) {
	v := newHistVM(t)
	e, s := histExecutor(t, v, false)
	ctx := context.Background()
	t1 := state.Target{VM: "vm1", Disk: "drive1"}
	// Off as the store has kept it since histograms became a knob.
	var off state.KnobState
	if err := json.Unmarshal([]byte(`{"raw":{"on":false}}`), &off); err != nil {
		t.Fatal(err)
	}
	if now, _ := state.Raw(HistogramState{}); !now.Equal(off) {
		t.Fatalf("off is stored as %s, records hold %s", now, off)
	}
	on, _ := desiredHistogram(nil, histOn("drive1"), off, state.KnobState{}, t1)
	intent := state.Owned{Target: t1, Knob: policy.KnobHistogram, Rule: "tail", Original: off,
		Applied: on, Phase: state.PhaseIntent}
	s.PutOwned(&intent)
	if out, err := e.Reconcile(ctx, intent); err != nil || out.Result != state.ResultResolved {
		t.Fatalf("intent never carried out: %+v %v", out, err)
	}
	if o, _ := s.Owned(t1, policy.KnobHistogram); o != nil {
		t.Fatalf("intent record kept: %+v", o)
	}
	if _, err := e.Execute(ctx, histOn("drive1")); err != nil {
		t.Fatal(err)
	}
	o, _ := s.Owned(t1, policy.KnobHistogram)
	if !o.Applied.Equal(on) {
		t.Fatalf("applied %s, want %s", o.Applied, on)
	}
	if out, err := e.Reconcile(ctx, *o); err != nil || out.Result != state.ResultNoOp {
		t.Fatalf("in force: %+v %v", out, err)
	}
	v.set(qdevDrive1, nil)
	if out, err := e.Reconcile(ctx, *o); !errors.Is(err, ErrDrift) || out.Result != state.ResultDrift {
		t.Fatalf("removed by someone else: %+v %v, want drift", out, err)
	}
}
