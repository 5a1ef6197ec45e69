package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func qemuProcess(pid int, ticks uint64) sample.VMIdentity {
	return sample.VMIdentity{Socket: "/run/qtune/a.sock", PID: pid, Boot: "boot-1", StartTicks: ticks,
		Started: time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC).Add(time.Duration(ticks) * 10 * time.Millisecond)}
}

func withID(o state.Owned, id sample.VMIdentity) state.Owned {
	o.VMID = id
	return o
}

// logged finds the decision log record of vm with result, and returns
// its reason.
func logged(t *testing.T, r *reconRig, vm string, result state.Result) (string, bool) {
	t.Helper()
	recs, err := r.a.store.Records(50)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.VM == vm && rec.Result == result {
			return rec.Reason, true
		}
	}
	return "", false
}

// A libvirt domain defined anew under the same name is another VM: the
// old domain's records are forgotten, its throttle (set by whoever
// defined it) is not qtune's drift, and nothing is changed.
func TestSameNameDifferentUUIDForgetsTheOldDomain(t *testing.T) {
	r := newReconRig(t, map[string]string{"calm.hcl": calmRule},
		withID(ownedThrottle("m", "calm", 256), sample.VMIdentity{UUID: "uuid-old"}))
	r.src.migrates = true
	r.step(t) // away: orphaned, kept
	r.b.vms["m"] = true
	r.b.state["m/disk0/throttle"] = wr(999)
	r.src.ids["m"] = sample.VMIdentity{UUID: "uuid-new"}
	st := r.step(t)
	if ownedState(st, "m") != "none" || st.OwnedSettled["throttle"] != 1 {
		t.Fatalf("owned %+v settled %v: want the old domain's record forgotten", st.Owned, st.OwnedSettled)
	}
	if r.holds("m") != 999 {
		t.Fatalf("m holds %d, want 999 as its definition says", r.holds("m"))
	}
	why, ok := logged(t, r, "m", state.ResultForgotten)
	if want := "vm m is a different domain (uuid uuid-new, was uuid-old): records of the old one forgotten"; !ok || why != want {
		t.Fatalf("decision log: %q (found %v), want %q", why, ok, want)
	}
	if _, drift := logged(t, r, "m", state.ResultDrift); drift {
		t.Fatal("the new domain was reported as drift")
	}
	if len(st.Actions) != 1 || st.Actions[0].Result != "forgotten" || st.Actions[0].Reason == "" {
		t.Fatalf("cycle's actions %+v, want the forgotten record with its reason", st.Actions)
	}
}

// A plain QEMU started again on the same socket lost qtune's live
// changes: every record of the VM is forgotten (the L2 budget with it),
// never reported as drift.
func TestQEMURestartedOnTheSameSocketForgetsItsRecords(t *testing.T) {
	old := withID(ownedThrottle("a", "calm", 256), qemuProcess(100, 5000))
	old.Original = wr(5000) // a limit set before qtune; the new QEMU has none
	l2 := state.Owned{Target: old.Target, Knob: policy.KnobL2Cache, Rule: "cover", Phase: state.PhaseApplied,
		Original: state.OfL2(state.L2State{Size: 1 << 20}), Applied: state.OfL2(state.L2State{Size: 64 << 20}),
		VMID: qemuProcess(100, 5000)}
	r := newReconRig(t, map[string]string{"calm.hcl": calmRule}, old, l2)
	r.b.vms["a"] = true
	r.src.ids["a"] = qemuProcess(231, 9000)
	st := r.step(t)
	if len(st.Owned) != 0 || st.OwnedSettled["throttle"] != 1 || st.OwnedSettled["l2_cache"] != 1 {
		t.Fatalf("owned %+v settled %v: want both records forgotten", st.Owned, st.OwnedSettled)
	}
	why, ok := logged(t, r, "a", state.ResultForgotten)
	if !ok || !strings.Contains(why, "vm a is a new QEMU process (pid 231 started 2026-01-01T11:01:30Z, was pid 100 started 2026-01-01T11:00:50Z)") {
		t.Fatalf("decision log: %q (found %v)", why, ok)
	}
	if _, drift := logged(t, r, "a", state.ResultDrift); drift || r.holds("a") != 0 {
		t.Fatalf("drift reported or knob touched (a holds %d)", r.holds("a"))
	}
}

// A domain migrated away and back (same UUID) is the same VM: reconciled
// as before, its throttle held again.
func TestSameIdentityReturnsIsHeld(t *testing.T) {
	r := newReconRig(t, map[string]string{"calm.hcl": calmRule},
		withID(ownedThrottle("m", "calm", 256), sample.VMIdentity{UUID: "uuid-1"}))
	r.src.migrates = true
	for i := 0; i < 2*goneCycles; i++ {
		r.step(t)
	}
	r.b.vms["m"] = true
	r.b.state["m/disk0/throttle"] = wr(256)
	r.src.ids["m"] = sample.VMIdentity{UUID: "uuid-1"}
	st := r.step(t)
	if ownedState(st, "m") != api.OwnedHeld || st.Owned[0].VMID.UUID != "uuid-1" {
		t.Fatalf("owned %+v, want held, identity uuid-1", st.Owned)
	}
}

// A record written before identities were kept adopts the first one
// seen; from then on a VM with another one is told apart.
func TestRecordWithoutIdentityAdoptsTheFirstSeen(t *testing.T) {
	r := newReconRig(t, map[string]string{"calm.hcl": calmRule}, ownedThrottle("a", "calm", 256))
	r.b.vms["a"] = true
	r.b.state["a/disk0/throttle"] = wr(256)
	r.src.ids["a"] = qemuProcess(100, 5000)
	if st := r.step(t); ownedState(st, "a") != api.OwnedHeld || st.Owned[0].VMID != qemuProcess(100, 5000) {
		t.Fatalf("owned %+v, want held with the identity adopted", st.Owned)
	}
	r.src.ids["a"] = qemuProcess(101, 7000)
	r.b.state["a/disk0/throttle"] = wr(0)
	if st := r.step(t); ownedState(st, "a") != "none" {
		t.Fatalf("owned %+v after a new QEMU process, want forgotten", st.Owned)
	}
}

// A VM whose process start cannot be read is matched by name, and
// status says so.
func TestUnreadableIdentityMatchesByName(t *testing.T) {
	r := newReconRig(t, map[string]string{"calm.hcl": calmRule},
		withID(ownedThrottle("a", "calm", 256), qemuProcess(100, 5000)))
	r.b.vms["a"] = true
	r.b.state["a/disk0/throttle"] = wr(256)
	r.src.ids["a"] = sample.VMIdentity{Socket: "/run/qtune/a.sock"}
	r.src.idNotes["a"] = "the QEMU process's start cannot be read: permission denied"
	st := r.step(t)
	if ownedState(st, "a") != api.OwnedHeld || !strings.Contains(st.Owned[0].IdentityNote, "permission denied") {
		t.Fatalf("owned %+v, want held by name with the note", st.Owned)
	}
	r.src.ids["a"], r.src.idNotes["a"] = qemuProcess(100, 5000), ""
	if st := r.step(t); ownedState(st, "a") != api.OwnedHeld || st.Owned[0].IdentityNote != "" {
		t.Fatalf("owned %+v, want held, the note gone", st.Owned)
	}
}
