package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qtune/qtune/agent"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Each owned knob says what VM it was taken on, or why that is unknown.
func TestStatusPrintsOwnedKnobIdentity(t *testing.T) {
	owned := func(vm string, id sample.VMIdentity, note string) agent.OwnedStatus {
		return agent.OwnedStatus{Owned: state.Owned{Target: state.Target{VM: vm, Disk: "vda"}, Knob: policy.KnobThrottle,
			Rule: "calm", VMID: id}, State: agent.OwnedHeld, IdentityNote: note}
	}
	var b bytes.Buffer
	printStatus(&b, agent.Status{Owned: []agent.OwnedStatus{
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
