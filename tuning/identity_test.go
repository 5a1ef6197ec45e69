package tuning

import (
	"context"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// A knob taken is recorded with its VM's identity; a later change keeps
// it, and a record without one adopts the first seen.
func TestRecordKeepsTheVMIdentity(t *testing.T) {
	id := sample.VMIdentity{UUID: "u1"}
	r := newRig(t, Options{Identify: func(vm string) sample.VMIdentity {
		if vm == "vm1" {
			return id
		}
		return sample.VMIdentity{}
	}})
	if _, err := r.e.Execute(context.Background(), throttle(300)); err != nil {
		t.Fatal(err)
	}
	o, _ := r.s.Owned(vda, policy.KnobThrottle)
	if o == nil || o.VMID != id {
		t.Fatalf("record %+v, want identity %v", o, id)
	}
	o.VMID = sample.VMIdentity{}
	if err := r.s.PutOwned(o); err != nil {
		t.Fatal(err)
	}
	if err := r.e.AdoptIdentity(*o, sample.VMIdentity{UUID: "u2"}); err != nil {
		t.Fatal(err)
	}
	if err := r.e.AdoptIdentity(*o, sample.VMIdentity{UUID: "u3"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.s.Owned(vda, policy.KnobThrottle); got.VMID.UUID != "u2" {
		t.Fatalf("identity %v, want the first adopted (u2) kept", got.VMID)
	}
}

// A record as the previous version wrote it (no identity) reads as one
// of unknown identity, and the store writes none for it.
func TestRecordWithoutIdentityReads(t *testing.T) {
	r := newRig(t, Options{})
	old := `{"vm":"vm1","disk":"vda","knob":"throttle","rule":"calm","original":{"throttle":{"bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}},` +
		`"applied":{"throttle":{"bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":256}},"phase":"applied","since":"2026-01-01T12:00:00Z","last_change":"2026-01-01T12:00:00Z","cooldown":0}`
	err := r.s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).Put(ownedKey(vda, policy.KnobThrottle), []byte(old))
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := r.s.AllOwned()
	if err != nil || len(all) != 1 || all[0].VMID.Known() || all[0].Applied.Throttle.IOPSWrite != 256 {
		t.Fatalf("owned %+v, %v: want the old record, identity unknown", all, err)
	}
}
