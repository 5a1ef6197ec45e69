package agent

import (
	"encoding/json"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/state"
)

// The agent's records become api documents here, field by field: a
// record can change shape without the documents clients read changing
// with it (wire_test.go checks nothing is lost on the way).

func wireOwned(o state.Owned) api.Owned {
	return api.Owned{Target: api.Target(o.Target), Knob: o.Knob, Rule: o.Rule,
		Original: wireKnobState(o.Original), Applied: wireKnobState(o.Applied), Phase: o.Phase,
		Since: o.Since, LastChange: o.LastChange, Cooldown: o.Cooldown, Persist: o.Persist, VMID: o.VMID, Host: o.Host, Seq: o.Seq}
}

func wireKnobState(s state.KnobState) api.KnobState {
	// The record's JSON is the document's: {"throttle": {...}},
	// {"cache": {...}}, {"l2": {...}} or {"raw": ...}.
	var w api.KnobState
	if b, err := json.Marshal(s); err == nil {
		json.Unmarshal(b, &w)
	}
	return w
}

func wireJob(j state.Job) api.Job {
	p := j.Progress
	return api.Job{ID: j.ID, Kind: j.Kind, Target: api.Target(j.Target), Rule: j.Rule, By: j.By,
		State: api.JobState(j.State), Source: j.Source, Dest: j.Dest, DestCreated: j.DestCreated,
		Layout: j.Layout, Base: j.Base, Speed: j.Speed, SlowedTo: j.SlowedTo, WriteBlocking: j.WriteBlocking,
		CancelAsked: j.CancelAsked, Restart: j.Restart, Attempts: j.Attempts, PivotTries: j.PivotTries,
		PivotAt: j.PivotAt, NextTry: j.NextTry, Created: j.Created, Updated: j.Updated,
		Started: j.Started, Ended: j.Ended, Waiting: j.Waiting, Error: j.Error, Cause: j.Cause, Pivoted: j.Pivoted,
		Progress: api.Progress{Offset: p.Offset, Length: p.Length, Rate: p.Rate, ETA: p.ETA, At: p.At},
		Chain:    j.Chain, Kept: wireKept(j.Kept)}
}

func wireKept(ks []state.Kept) []api.Kept {
	var out []api.Kept
	for _, k := range ks {
		out = append(out, api.Kept(k))
	}
	return out
}

func wireJobs(jobs []state.Job) []api.Job {
	out := make([]api.Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, wireJob(j))
	}
	return out
}

func wirePlanned(p jobs.Planned) api.Planned {
	w := api.Planned{Result: string(p.Result), Reason: p.Reason}
	if p.Job != nil {
		j := wireJob(*p.Job)
		w.Job = &j
	}
	return w
}

func jobRequest(r api.JobRequest) jobs.Request {
	return jobs.Request{Kind: r.Kind, Target: state.Target(r.Target), Rule: r.Rule,
		Base: r.Base, TargetDir: r.TargetDir, Layout: r.Layout, Speed: r.Speed, CopyMode: r.CopyMode}
}
