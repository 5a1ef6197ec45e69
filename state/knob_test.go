package state

import (
	"encoding/json"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// Audit lines and status show limits as the integers an SRE wrote.
func TestKnobStateStringIntegers(t *testing.T) {
	for _, tc := range []struct {
		s    KnobState
		want string
	}{
		{OfThrottle(sample.Throttle{BPSWrite: 100 << 20}), "bps_wr=104857600"},
		{OfThrottle(sample.Throttle{IOPSWrite: 256, IOPSWriteMax: 1 << 40}), "iops_wr=256 iops_wr_max=1099511627776"},
		{OfThrottle(sample.Throttle{}), "unthrottled"},
		{OfThrottle(sample.Throttle{IOPS: 10, Group: "g1"}), "iops=10 group=g1"},
		{OfL2(L2State{Size: 64 << 20}), "l2-cache-size=67108864"},
		{OfCache(CacheState{Direct: true}), "direct=true no-flush=false"},
		{KnobState{}, "unset"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// An owned record as stores written before the state's one form hold
// it (a typed field per built-in kind, "raw" for the others) loads into
// the same values, compares as it did, and is written back byte for
// byte the same.
func TestOwnedRecordOfEarlierFormatLoads(t *testing.T) {
	const old = `{"vm":"web","disk":"vda","knob":"l2_cache","rule":"l2","original":{"l2":{"size":1048576,"needed":8388608,"defined":{"metadata_cache":""}}},` +
		`"applied":{"l2":{"size":8388608,"needed":8388608}},"phase":"applied","since":"2026-11-01T10:00:00Z","last_change":"2026-11-01T10:00:00Z","cooldown":600000000000,"persist":true}`
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tgt := Target{VM: "web", Disk: "vda"}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).Put(ownedKey(tgt, policy.KnobL2Cache), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	o, err := s.Owned(tgt, policy.KnobL2Cache)
	if err != nil || o == nil {
		t.Fatalf("read the earlier record: %v %v", o, err)
	}
	l2 := o.Applied.L2()
	if l2 == nil || l2.Size != 8<<20 || o.Original.L2() == nil || o.Original.L2().Defined == nil || o.Original.L2().Size != 1<<20 {
		t.Fatalf("decoded %+v / %+v", o.Original, o.Applied)
	}
	if o.Phase != PhaseApplied || !o.Persist || o.Cooldown != 10*time.Minute {
		t.Fatalf("decoded %+v", o)
	}
	// Needed is a fact, not the setting.
	if !o.Applied.Equal(OfL2(L2State{Size: 8 << 20})) || o.Applied.Equal(o.Original) {
		t.Error("L2 states compare otherwise than by size")
	}
	back, _ := json.Marshal(o)
	var a, b map[string]any
	json.Unmarshal([]byte(old), &a)
	json.Unmarshal(back, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("written back differently:\n%s\n%s", ja, jb)
	}
	for _, tc := range []struct{ json, str string }{
		{`{"throttle":{"iops_wr":300,"group":"g"}}`, "iops_wr=300 group=g"},
		{`{"cache":{"direct":true,"no_flush":false}}`, "direct=true no-flush=false"},
		{`{"raw":{"depth":16}}`, `{"depth":16}`},
		{`{}`, "unset"},
	} {
		var k KnobState
		if err := json.Unmarshal([]byte(tc.json), &k); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if k.String() != tc.str {
			t.Errorf("%s reads as %q, want %q", tc.json, k, tc.str)
		}
		if out, _ := json.Marshal(k); string(out) != tc.json {
			t.Errorf("%s written back as %s", tc.json, out)
		}
	}
	var two KnobState
	if err := json.Unmarshal([]byte(`{"throttle":{},"cache":{}}`), &two); err == nil {
		t.Error("a state with two values was taken")
	}
}

// Job steps are typed in the log and read as they always did.
func TestRecordOutcome(t *testing.T) {
	for _, tc := range []struct {
		r    Record
		want string
	}{
		{Record{Result: ResultApplied}, "applied"},
		{Record{Job: JobRunning}, "job-running"},
		{Record{Result: "job-failed"}, "job-failed"}, // written before Job had a field
	} {
		if got := tc.r.Outcome(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// A kind from elsewhere says how its values compare and read.
func TestRegisterKey(t *testing.T) {
	RegisterKey("test_depth", func(a, b json.RawMessage) bool { return len(a) == len(b) },
		func(v json.RawMessage) string { return "depth " + string(v) })
	t.Cleanup(func() { UnregisterKey("test_depth") })
	a, _ := Of("test_depth", 16)
	b, _ := Of("test_depth", 32)
	c, _ := Of("test_depth", 128)
	if !a.Equal(b) || a.Equal(c) || a.String() != "depth 16" {
		t.Fatalf("registered key: %v %v %q", a.Equal(b), a.Equal(c), a)
	}
	r, _ := Raw(16)
	if r.Equal(a) {
		t.Fatal("values under different keys compare equal")
	}
}
