package doctor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// A fragmented image file, made the way it happens on a host: a small
// ext4 (loop-mounted) is filled with 4 KiB files, every other one is
// deleted, and the image is copied into the 4 KiB holes that are left.
func TestFragmentedImageOnLoopExt4(t *testing.T) {
	lab.NeedQEMU(t)
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to build a fragmented filesystem", tool)
		}
	}
	if os.Geteuid() != 0 {
		if lab.Required() {
			t.Fatal("a loop mount needs root")
		}
		t.Skip("a loop mount needs root")
	}
	dir := t.TempDir()
	fsImg, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	run(t, "truncate", "-s", "48M", fsImg)
	run(t, "mkfs.ext4", "-q", "-b", "4096", "-N", "20000", fsImg)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-o", "loop", fsImg, mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	holes(t, mnt)

	src := filepath.Join(dir, "src.qcow2")
	qimg(t, "create", "-q", "-f", "qcow2", src, "9M")
	qio(t, src, "write -P 0x5a 0 8M")
	img := filepath.Join(mnt, "frag.qcow2")
	run(t, "cp", src, img)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := QemuImg{}.Gather(ctx, img, 32<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	r := CheckImage(f)
	t.Logf("%d extents, fs %s %s free %d of %d", f.Extents, f.FS.Type, f.FS.Options, f.FS.Free, f.FS.Size)
	if f.FS.Type != "ext4" || f.FS.Mount != mnt {
		t.Errorf("filesystem %+v, want the ext4 at %s", f.FS, mnt)
	}
	if f.QueueErr != nil || f.Queue.Scheduler == "" {
		t.Errorf("no queue for the loop device: %+v %v", f.Queue, f.QueueErr)
	}
	assertOnly(t, r, "fragmentation", Warn)
}

// holes fills the filesystem with 4 KiB files, then deletes every other.
func holes(t *testing.T, mnt string) {
	t.Helper()
	buf := make([]byte, 4096)
	n := 0
	for ; ; n++ {
		err := os.WriteFile(filepath.Join(mnt, "f"+strconv.Itoa(n)), buf, 0o644)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	syscall.Sync()
	for i := 0; i < n; i += 2 {
		if err := os.Remove(filepath.Join(mnt, "f"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Sync()
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v %s", name, args, err, out)
	}
}
