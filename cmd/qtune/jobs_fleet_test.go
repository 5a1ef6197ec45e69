package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
)

func TestPrintFleet(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	f := api.Fleet{Host: "hv1", LeaseOK: true,
		Held: []api.FleetSlot{{Budget: "nfs-a", Job: "j1", Host: "hv2", VM: "web1", Disk: "vda", Kind: "mirror", Speed: 16 << 20, Since: now.Add(-90 * time.Second)}},
		Waiting: []api.FleetSlot{{Budget: "nfs-a", Job: "j2", Host: "hv3", VM: "db1", Disk: "vdb", Kind: "stream", Since: now.Add(-time.Minute), Running: true},
			{Budget: "nfs-a", Job: "j3", Host: "hv1", VM: "app", Disk: "vda", Kind: "convert", Speed: 1 << 20, Since: now.Add(-time.Second)}}}
	var b bytes.Buffer
	printFleet(&b, f, now)
	out := b.String()
	for _, want := range []string{"host hv1, fleet lease held", "hv2", "web1/vda", "mirror", "16.0MiB/s", "1m30s",
		"waiting, in the order they will be served", "db1/vdb", "unbounded"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Index(out, "db1/vdb") > strings.Index(out, "app/vda") {
		t.Errorf("waiters out of their order:\n%s", out)
	}
	b.Reset()
	printFleet(&b, api.Fleet{Host: "hv1"}, now)
	if out := b.String(); !strings.Contains(out, "LOST") || !strings.Contains(out, "(no slots held)") || !strings.Contains(out, "(none)") {
		t.Errorf("an empty fleet without a lease:\n%s", out)
	}
}
