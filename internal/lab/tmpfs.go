package lab

import (
	"os"
	"os/exec"
	"testing"
)

// TmpfsT mounts a tmpfs of size ("4m", "64k") on a new directory and
// unmounts it when the test ends: a filesystem small enough to run full.
// Mounting needs root; without it the test is skipped, or fails when the
// lab is required.
func TmpfsT(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if Required() {
			t.Fatal("needs root to mount a tmpfs")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}
