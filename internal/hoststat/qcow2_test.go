package hoststat

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestParseQcow2Header(t *testing.T) {
	b := make([]byte, 104)
	be := binary.BigEndian
	be.PutUint32(b[0:], 0x514649fb)
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], 1<<40)
	be.PutUint64(b[72:], 1<<4)
	h, err := parseQcow2Header(b)
	if err != nil || h.ClusterSize != 64<<10 || h.VirtualSize != 1<<40 || !h.ExtendedL2 {
		t.Fatalf("%+v %v", h, err)
	}
	be.PutUint32(b[0:], 0)
	if _, err := parseQcow2Header(b); !errors.Is(err, ErrNotQcow2) {
		t.Fatalf("raw image: %v", err)
	}
}

// A real image from qemu-img when it is installed (the integration tests
// require it in CI; here it only adds a check).
func TestReadQcow2HeaderOfRealImage(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return
	}
	p := filepath.Join(t.TempDir(), "x.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=128k,extended_l2=on", p, "3G").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	h, err := ReadQcow2Header(p)
	if err != nil || h.ClusterSize != 128<<10 || h.VirtualSize != 3<<30 || !h.ExtendedL2 {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := ReadQcow2Header(filepath.Join(t.TempDir(), "none")); !os.IsNotExist(errors.Unwrap(err)) && !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}
