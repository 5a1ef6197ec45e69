package state

import (
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/policy"
)

var vda = Target{VM: "vm1", Disk: "vda"}

type rig struct{ s *Store }

func storeRig(t *testing.T) rig {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return rig{s: s}
}

// A record as the previous version wrote it (no identity) reads as one
// of unknown identity, and the store writes none for it.
func TestRecordWithoutIdentityReads(t *testing.T) {
	r := storeRig(t)
	old := `{"vm":"vm1","disk":"vda","knob":"throttle","rule":"calm","original":{"throttle":{"bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}},` +
		`"applied":{"throttle":{"bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":256}},"phase":"applied","since":"2026-01-01T12:00:00Z","last_change":"2026-01-01T12:00:00Z","cooldown":0}`
	err := r.s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).Put(ownedKey(vda, policy.KnobThrottle), []byte(old))
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := r.s.AllOwned()
	if err != nil || len(all) != 1 || all[0].VMID.Known() || all[0].Applied.Throttle().IOPSWrite != 256 {
		t.Fatalf("owned %+v, %v: want the old record, identity unknown", all, err)
	}
}

// One record that does not decode is named and the others still listed.
func TestAllOwnedSkipsABadRecord(t *testing.T) {
	r := storeRig(t)
	r.s.PutOwned(&Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Phase: PhaseApplied})
	r.s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).Put([]byte("vm2\x00vdb\x00throttle"), []byte("{not json"))
	})
	all, err := r.s.AllOwned()
	if len(all) != 1 || err == nil || !strings.Contains(err.Error(), `"vm2/vdb/throttle"`) {
		t.Fatalf("AllOwned = %+v, %v; want the good record and an error naming the bad one", all, err)
	}
}

// The action log keeps its newest lines only.
func TestActionLogRetention(t *testing.T) {
	s := storeRig(t).s
	s.keepLog = 5
	for i := 0; i < 12; i++ {
		s.Append(&Record{Rule: "r"})
	}
	recs, _ := s.Records(100)
	if len(recs) != 5 || recs[4].Seq != 12 {
		t.Fatalf("retention: %d records, last %+v", len(recs), recs[len(recs)-1])
	}
}
