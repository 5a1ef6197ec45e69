package qmp

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestStatStartTicks(t *testing.T) {
	// A command name with spaces and a parenthesis, as QEMU's can be
	// when renamed with -name ...,process=.
	line := "4242 (qemu (vm a)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 50 20 0 0 20 0 3 0 987654 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n"
	n, err := statStartTicks([]byte(line))
	if err != nil || n != 987654 {
		t.Fatalf("start ticks %d, %v; want 987654", n, err)
	}
	for _, bad := range []string{"4242 qemu S 1", "4242 (qemu) S 1 2 3", ""} {
		if _, err := statStartTicks([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The start of a process this test starts is within a few seconds of
// now, is the same read twice, and differs from the next process's.
func TestStartOfRealProcesses(t *testing.T) {
	start := func() (ProcessStart, func()) {
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		st, err := StartOf(c.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		return st, func() { c.Process.Kill(); c.Wait() }
	}
	a, stopA := start()
	defer stopA()
	if d := time.Since(a.Started); d < -2*time.Second || d > 30*time.Second || a.Boot == "" {
		t.Fatalf("start %+v: %v ago, want about now, with a boot id", a, d)
	}
	time.Sleep(30 * time.Millisecond) // at least one tick apart
	b, stopB := start()
	defer stopB()
	if b.Ticks <= a.Ticks || b.Boot != a.Boot {
		t.Fatalf("second process %+v, first %+v: want a later start, same boot", b, a)
	}
	again, _ := StartOf(os.Getpid())
	if again2, _ := StartOf(os.Getpid()); again != again2 {
		t.Fatalf("two reads differ: %+v %+v", again, again2)
	}
	if _, err := StartOf(1 << 30); err == nil {
		t.Fatal("no error for a pid that does not exist")
	}
}
