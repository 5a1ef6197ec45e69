// Package agent is qtune's daemon: it discovers VMs, gives each a runner,
// samples every interval, evaluates the policy, acts through the tuning
// executor, reloads on SIGHUP or a policy change, and tells everyone what
// it is doing over Prometheus metrics, a JSON status and its logs.
//
// One loop goroutine owns the policy evaluator and the cycle:
//
//	tick ─> sample every VM in parallel (each with its deadline)
//	     ─> rates ─> policy ─> executor ─> status, metrics, log
//
// A hung VM or a wedged libvirtd costs its own deadline, never the others'.
package agent
