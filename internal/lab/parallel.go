package lab

import (
	"flag"
	"strconv"
)

// WaitBoundParallel, called from a package's TestMain before m.Run, lets
// n of its parallel tests run at once instead of GOMAXPROCS, unless the
// command line set -test.parallel (which then wins). It is for packages
// whose parallel real-QEMU tests mostly wait on a guest's phases, a copy
// or a migration: at two at a time such a package keeps a 2-core host
// about half idle. Tests whose checks need a guest at full speed must
// not call t.Parallel (they run alone, before the parallel ones).
func WaitBoundParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			set = true
		}
	})
	if f := flag.Lookup("test.parallel"); f != nil && !set {
		if cur, err := strconv.Atoi(f.Value.String()); err == nil && cur < n {
			flag.Set("test.parallel", strconv.Itoa(n))
		}
	}
}
