package tuning

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// The cache knob: cache.direct and cache.no-flush of a disk's file node,
// changed live by blockdev-reopen (under libvirt through passthrough).
func init() {
	RegisterKnob(KnobKind{Knob: policy.KnobCache,
		Desired: func(_ *Executor, d policy.Decision, _, _ state.KnobState, _ state.Target) (state.KnobState, error) {
			c := d.Action.Cache
			if c == nil {
				return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "cache decision without a cache mode"}
			}
			if c.NoFlush && !c.AllowUnsafe {
				return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "cache.no-flush=on loses guest data on a host crash and the rule does not allow unsafe"}
			}
			return state.OfCache(state.CacheState{Direct: c.Direct, NoFlush: c.NoFlush}), nil
		},
		QMPRead:  qmpReadCache,
		QMPApply: qmpApplyCache,
		Persist: func(driver string, s state.KnobState) (string, string, error) {
			mode, err := libvirtCacheMode(*s.Cache())
			if err != nil {
				return "", "", err
			}
			return setAttr(driver, "cache", mode), "", nil
		},
	})
}

func qmpReadCache(ctx context.Context, r *VMHandle, d sample.Disk) (state.KnobState, error) {
	node, err := r.FileNode(d)
	if err != nil {
		return state.KnobState{}, err
	}
	nodes, err := r.block.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return state.KnobState{}, err
	}
	for _, n := range nodes {
		if n.NodeName == node {
			return state.OfCache(state.CacheState{Direct: n.Cache.Direct, NoFlush: n.Cache.NoFlush}), nil
		}
	}
	return state.KnobState{}, fmt.Errorf("%s: file node %s not found", r.vm, node)
}

func qmpApplyCache(ctx context.Context, r *VMHandle, d sample.Disk, s state.KnobState) error {
	if s.Cache() == nil {
		return errNothingToApply(policy.KnobCache)
	}
	node, err := r.FileNode(d)
	if err != nil {
		return err
	}
	return r.Reopen(ctx, node, map[string]any{"cache.direct": s.Cache().Direct, "cache.no-flush": s.Cache().NoFlush},
		node+".cache.direct", node+".cache.no-flush")
}
