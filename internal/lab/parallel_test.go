package lab

import (
	"flag"
	"strconv"
	"testing"
)

// WaitBoundParallel raises -test.parallel when the command line left it
// at its default, never lowers it, and leaves a value given on the
// command line alone.
func TestWaitBoundParallel(t *testing.T) {
	f := flag.Lookup("test.parallel")
	before := f.Value.String()
	t.Cleanup(func() { flag.Set("test.parallel", before) })
	cur, _ := strconv.Atoi(before)
	explicit := false
	flag.Visit(func(g *flag.Flag) { explicit = explicit || g.Name == "test.parallel" })

	WaitBoundParallel(cur + 3)
	want := strconv.Itoa(cur + 3)
	if explicit {
		want = before
	}
	if got := f.Value.String(); got != want {
		t.Errorf("after WaitBoundParallel(%d) from %s (explicit %v): %s, want %s", cur+3, before, explicit, got, want)
	}
	WaitBoundParallel(1)
	if got := f.Value.String(); got != want {
		t.Errorf("WaitBoundParallel(1) changed %s to %s", want, got)
	}
}
