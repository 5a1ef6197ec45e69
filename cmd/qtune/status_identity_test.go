package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// Each owned knob says what VM it was taken on, or why that is unknown.
func TestStatusPrintsOwnedKnobIdentity(t *testing.T) {
	owned := func(vm string, id sample.VMIdentity, note string) api.OwnedStatus {
		return api.OwnedStatus{Owned: api.Owned{Target: api.Target{VM: vm, Disk: "vda"}, Knob: policy.KnobThrottle,
			Rule: "calm", VMID: id}, State: api.OwnedHeld, IdentityNote: note}
	}
	var b bytes.Buffer
	printStatus(&b, api.Status{Owned: []api.OwnedStatus{
		owned("web-1", sample.VMIdentity{UUID: "5f2c0d6e-0000-4000-8000-000000000001"}, ""),
		owned("db-1", sample.VMIdentity{Socket: "/run/qtune/db-1.sock"}, "the QEMU process's start cannot be read: permission denied"),
		owned("old-1", sample.VMIdentity{}, ""),
	}})
	out := b.String()
	for _, want := range []string{
		"taken on uuid 5f2c0d6e-0000-4000-8000-000000000001",
		"VM identity unknown, matched by name only: the QEMU process's start cannot be read: permission denied",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "taken on") != 1 {
		t.Errorf("a record of unknown identity shows one:\n%s", out)
	}
}
