package agent

import (
	"context"
	"sync"
	"testing"

	"github.com/qtune/qtune/config"
)

// startQMPSource opens the agent's source over cfg.QMPDir for a, as Run
// does, and follows the directory until stop (which may be called more
// than once; the test's end calls it too).
func startQMPSource(t *testing.T, cfg config.Config, a *Agent) (stop func()) {
	t.Helper()
	src, err := openSource(context.Background(), cfg, a.log, a.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
