package tuning

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// The cache knob: cache.direct and cache.no-flush of a disk's file node,
// changed live by blockdev-reopen (under libvirt through passthrough).
func init() {
	registerKnob(knobKind{knob: policy.KnobCache,
		desired: func(_ *Executor, d policy.Decision, _, _ KnobState, _ Target) (KnobState, error) {
			c := d.Action.Cache
			if c == nil {
				return KnobState{}, &Refusal{Code: "bounds", Reason: "cache decision without a cache mode"}
			}
			if c.NoFlush && !c.AllowUnsafe {
				return KnobState{}, &Refusal{Code: "bounds", Reason: "cache.no-flush=on loses guest data on a host crash and the rule does not allow unsafe"}
			}
			return KnobState{Cache: &CacheState{Direct: c.Direct, NoFlush: c.NoFlush}}, nil
		},
		qmpRead:  qmpReadCache,
		qmpApply: qmpApplyCache,
		persist: func(driver string, s KnobState) (string, string, error) {
			mode, err := libvirtCacheMode(*s.Cache)
			if err != nil {
				return "", "", err
			}
			return setAttr(driver, "cache", mode), "", nil
		},
	})
}

func qmpReadCache(ctx context.Context, r *reopener, d sample.Disk) (KnobState, error) {
	node, err := r.fileNode(d)
	if err != nil {
		return KnobState{}, err
	}
	nodes, err := r.block.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return KnobState{}, err
	}
	for _, n := range nodes {
		if n.NodeName == node {
			return KnobState{Cache: &CacheState{Direct: n.Cache.Direct, NoFlush: n.Cache.NoFlush}}, nil
		}
	}
	return KnobState{}, fmt.Errorf("%s: file node %s not found", r.vm, node)
}

func qmpApplyCache(ctx context.Context, r *reopener, d sample.Disk, s KnobState) error {
	if s.Cache == nil {
		return errNothingToApply(policy.KnobCache)
	}
	node, err := r.fileNode(d)
	if err != nil {
		return err
	}
	return r.reopen(ctx, node, map[string]any{"cache.direct": s.Cache.Direct, "cache.no-flush": s.Cache.NoFlush},
		node+".cache.direct", node+".cache.no-flush")
}
