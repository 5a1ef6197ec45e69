package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/config"
)

// notQEMU listens on a unix socket and answers every connection with
// something that is not a QMP greeting.
func notQEMU(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
}

// A socket that is not QEMU fails every cycle but is logged once, not
// once a cycle (the reminder comes after minutes).
func TestBadSocketLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	notQEMU(t, filepath.Join(dir, "bad.sock"))
	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = dir, "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(t.TempDir(), "control.sock")
	cfg.Listen, cfg.Interval, cfg.CallTimeout = "127.0.0.1:0", time.Second, 500*time.Millisecond
	var logs syncBuffer
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	loop := onFakeClock(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	loop.cycled(t)
	for i := 1; i < 5; i++ {
		loop.tick(t)
	}
	if n, _ := sampleErrorCount(a); n != 5 {
		cancel()
		<-done
		t.Fatalf("bad socket failed %v of 5 cycles; log:\n%s", n, logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "sample failed"); n != 1 {
		t.Fatalf("%d 'sample failed' lines over 5 failing cycles, want 1:\n%s", n, logs.String())
	}
	t.Logf("log:\n%s", logs.String())
	os.Remove(filepath.Join(dir, "bad.sock"))
}

// sampleErrorCount reads qtune_sample_errors_total{vm="bad"}.
func sampleErrorCount(a *Agent) (float64, error) {
	fams, err := a.m.reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range fams {
		if f.GetName() == "qtune_sample_errors_total" {
			for _, m := range f.GetMetric() {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, nil
}
