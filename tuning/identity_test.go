package tuning

import (
	"context"
	"testing"

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
