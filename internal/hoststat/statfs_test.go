package hoststat

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestStatFS(t *testing.T) {
	fs, err := StatFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fs.Size == 0 || fs.Free > fs.Size || fs.ReadOnly {
		t.Fatalf("temp dir's filesystem: %+v", fs)
	}
	if _, err := StatFS("/nonexistent/qtune"); !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing directory: %v", err)
	}
}
