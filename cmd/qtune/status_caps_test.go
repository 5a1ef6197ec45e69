package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qtune/qtune/api"
)

// Status says, per VM (plain QEMU) or per backend (libvirt), what the
// hypervisor was found to offer.
func TestStatusPrintsCapabilities(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{Backend: "libvirt", BackendCapabilities: []string{"libvirt 9.0.0", "qemu 7.2.0", "no timed-block-stats"},
		VMs: []api.VMStatus{{Name: "web-1", Capabilities: []string{"blockdev-reopen", "no block-job-change"}}, {Name: "web-2"}}})
	out := b.String()
	for _, want := range []string{"libvirt offers: libvirt 9.0.0, qemu 7.2.0, no timed-block-stats", "web-1            qemu offers: blockdev-reopen, no block-job-change"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Count(out, "offers:") != 2 {
		t.Errorf("a VM with nothing read claims capabilities:\n%s", out)
	}
}
