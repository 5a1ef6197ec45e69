package jobs

import (
	"os"
	"testing"

	"github.com/qtune/qtune/internal/lab"
)

// TestMain runs four parallel tests at once: this package's real-QEMU
// tests wait on guests' phases and copies, and two at a time left a
// 2-core host half idle.
func TestMain(m *testing.M) {
	lab.WaitBoundParallel(4)
	os.Exit(m.Run())
}
