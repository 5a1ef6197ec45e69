package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qtune/qtune/agent"
)

func TestStatusPrintsDiskFindings(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, agent.Status{Findings: []agent.FindingStatus{
		{VM: "web-1", Disk: "vda", Check: "io_status", Severity: "critical", Summary: "io-status nospace"},
		{VM: "db-1", Disk: "vdb", Check: "internal_snapshots", Severity: "warn", Summary: "6 internal snapshots"},
	}})
	out := b.String()
	i, j := strings.Index(out, "critical web-1/vda io_status: io-status nospace"), strings.Index(out, "warn     db-1/vdb internal_snapshots: 6 internal snapshots")
	if !strings.Contains(out, "DISK FINDINGS") || i < 0 || j < i {
		t.Fatalf("status output:\n%s", out)
	}
}
