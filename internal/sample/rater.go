package sample

// Rater keeps the last sample of each disk and derives rates from it. It
// is the one place rates come from, for the agent and for qtune stats.
// Not safe for concurrent use.
type Rater struct {
	prev map[diskKey]seen
	gen  uint64 // Sweep generation
	keep uint64 // Sweeps an unseen disk survives; 0: SweepAfter
}

// KeepFor makes a disk Next has not seen survive n Sweeps (at least
// SweepAfter): a sampler that reads quiet disks only every so many
// cycles keeps their last samples until the next.
func (r *Rater) KeepFor(n int) { r.keep = uint64(max(n, SweepAfter)) }

type diskKey struct{ vm, disk string }

type seen struct {
	d   Disk
	gen uint64 // the Sweep generation of the last Next
}

// NewRater returns a Rater that has seen nothing.
func NewRater() *Rater { return &Rater{prev: map[diskKey]seen{}} }

// Next records d as its disk's latest sample and returns the rates since
// the one before. ok is false on a disk's first sample, when no time
// passed, and when a counter went back (QEMU restarted or the disk was
// replaced): d then counts from scratch.
func (r *Rater) Next(d Disk) (Rates, bool) {
	k := diskKey{d.VM, d.Name}
	old, had := r.prev[k]
	r.prev[k] = seen{d: d, gen: r.gen}
	if !had {
		return Rates{}, false
	}
	rt, err := Derive(old.d, d)
	return rt, err == nil
}

// ForgetVM drops every disk of vm: a VM that comes back starts afresh.
func (r *Rater) ForgetVM(vm string) {
	for k := range r.prev {
		if k.vm == vm {
			delete(r.prev, k)
		}
	}
}

// SweepAfter is how many Sweeps a disk Next does not see survives: a VM
// whose sample failed for a cycle or two keeps its disks' last samples,
// and its rates resume over the longer interval.
const SweepAfter = 10

// Sweep drops the disks Next has not seen in the last SweepAfter Sweeps
// (a disk unplugged, a VM gone without notice), so that what is kept is
// bounded by the disks there are, not by every disk there ever was. Call
// it once a cycle, after the cycle's Next calls.
func (r *Rater) Sweep() {
	keep := r.keep
	if keep == 0 {
		keep = SweepAfter
	}
	for k, s := range r.prev {
		if r.gen-s.gen >= keep-1 {
			delete(r.prev, k)
		}
	}
	r.gen++
}

// Len is how many disks the Rater holds.
func (r *Rater) Len() int { return len(r.prev) }
