package policy

import "time"

// Update puts a new policy set in force (the caller has loaded it whole;
// a set that failed to load never gets here, so the old one stays).
//
// State is kept by rule name:
//   - an unchanged rule keeps its state, timers and all;
//   - a changed rule that owns the same knob keeps firing or resolving,
//     now with its new action and condition, so that editing a live
//     throttle does not lift it and put it back; a pending timer restarts;
//   - a rule that is gone, or that now owns another knob, loses its
//     state, and where it had acted Update returns its revert.
func (e *Evaluator) Update(now time.Time, set *Set) []Decision {
	byName := map[string]*Rule{}
	for _, r := range set.Rules {
		byName[r.Name] = r
	}
	var reverts []Decision
	for k, st := range e.states {
		nr, ok := byName[k.rule]
		switch {
		case !ok || nr.Knob != st.rule.Knob:
			if st.state == StateFiring || st.state == StateResolving {
				d := Decision{At: now, Rule: k.rule, Priority: st.rule.Priority, Mode: st.rule.Mode, VM: k.vm, Disk: k.disk,
					Knob: st.rule.Knob, Revert: true, Persist: st.rule.Persist,
					Reason: "rule removed or changed to another knob: restore the original"}
				reverts = append(reverts, d)
			}
			delete(e.states, k)
		case nr.hash != st.rule.hash:
			st.rule = nr
			if st.state == StatePending {
				delete(e.states, k)
			}
		default:
			st.rule = nr
		}
	}
	e.set = set
	e.history.configure(set)
	return reverts
}

// Reload loads dir and, only if every file is valid, puts it in force
// (see Update). On any error the policy in force stays as it was and every
// problem is returned; reverts are those Update produced.
func (e *Evaluator) Reload(now time.Time, dir string) ([]Decision, Problems, error) {
	set, problems, err := LoadDir(dir)
	if err != nil {
		return nil, problems, err
	}
	return e.Update(now, set), problems, nil
}
