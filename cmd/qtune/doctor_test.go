package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtune/qtune/internal/lab"
)

// The exit status follows the worst finding: monitoring runs the doctor
// as a probe.
func TestDoctorExitStatus(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir := t.TempDir()
	mk := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, args...), p)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return p
	}
	clean := mk("clean.qcow2", "-o", "size=64M")
	small := mk("small.qcow2", "-o", "cluster_size=4k,size=32G")
	base := mk("base.qcow2", "-o", "size=64M")
	top := mk("top.qcow2", "-F", "qcow2", "-b", base)
	if err := os.Remove(base); err != nil {
		t.Fatal(err)
	}
	// A qcow2 whose L1 table offset was overwritten reads fine: it is
	// damaged (critical, 2), not unreadable (3).
	broken := mk("broken.qcow2", "-o", "size=64M")
	if f, err := os.OpenFile(broken, os.O_RDWR, 0); err != nil {
		t.Fatal(err)
	} else if _, err := f.WriteAt([]byte("AAAAAAAA"), 40); err != nil || f.Close() != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--image", clean}, 0},
		{[]string{"--image", clean, "--image", small}, 1},
		{[]string{"--image", small, "--l2-cache", "64MiB"}, 0}, // small clusters alone are info
		{[]string{"--image", top, "--image", small}, 2},
		{[]string{"--image", filepath.Join(dir, "none.qcow2")}, 3},
		{[]string{"--image", broken}, 2},
		{[]string{"--image", dir}, 3}, // a directory is no image
		{[]string{"--image", clean, "--l2-cache", "lots"}, exitUsage},
		{nil, exitUsage},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"doctor"}, c.args...), &out, &errb); code != c.code {
			t.Errorf("doctor %v: exit %d, want %d\n%s%s", c.args, code, c.code, out.String(), errb.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"doctor", "--json", "--image", small}, &out, &out); code != 1 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var doc struct {
		Worst   string `json:"worst"`
		Reports []struct {
			Findings []struct{ Check, Severity string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Worst != "warn" || !strings.Contains(out.String(), `"check": "l2_coverage"`) {
		t.Fatalf("%v %+v\n%s", err, doc, out.String())
	}
}
