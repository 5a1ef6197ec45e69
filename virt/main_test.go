package virt

import (
	"os"
	"testing"

	"github.com/qtune/qtune/internal/lab"
)

// TestMain runs four parallel tests at once: this package's real-libvirt
// tests wait on daemons starting, guests booting and migrations.
func TestMain(m *testing.M) {
	lab.WaitBoundParallel(4)
	os.Exit(m.Run())
}
