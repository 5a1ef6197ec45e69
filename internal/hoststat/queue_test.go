package hoststat

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInForce(t *testing.T) {
	for in, want := range map[string]string{"none [mq-deadline] kyber bfq\n": "mq-deadline", "[none] mq-deadline\n": "none", "none\n": "none"} {
		if got := inForce(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// A fake sysfs root: the queue of the device that holds a real file.
func TestQueueForFakeSysfs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dev := filepath.Join(root, "sys/dev/block", itoa(unix.Major(st.Dev))+":"+itoa(unix.Minor(st.Dev)))
	for name, v := range map[string]string{"scheduler": "none mq-deadline [bfq]\n", "rotational": "1\n", "nr_requests": "64\n", "read_ahead_kb": "128\n"} {
		if err := os.MkdirAll(filepath.Join(dev, "queue"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dev, "queue", name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q, err := (&Reader{Root: root}).QueueFor(file)
	if err != nil || q.Scheduler != "bfq" || !q.Rotational || q.NrRequests != 64 || q.ReadAheadKB != 128 {
		t.Fatalf("%+v %v", q, err)
	}
	if _, err := (&Reader{Root: t.TempDir()}).QueueFor(file); err == nil {
		t.Fatal("no sysfs: no error")
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
