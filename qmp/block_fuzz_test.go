package qmp

import (
	"context"
	"encoding/json"
	"os"
	"testing"
)

// FuzzDecodeReplies feeds arbitrary replies to the typed decoders: they
// may fail, never panic.
func FuzzDecodeReplies(f *testing.F) {
	for _, file := range []string{"query-block.json", "query-blockstats.json", "query-named-block-nodes-flat.json"} {
		b, err := os.ReadFile("testdata/" + file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"inserted":{"image":{"backing-image":{"backing-image":null}}}}]`))
	f.Add([]byte(`{"id":"j","status":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw := json.RawMessage(b)
		fe := &fakeExec{replies: map[string]json.RawMessage{
			"query-block": raw, "query-blockstats": raw, "query-jobs": raw,
			"query-block-jobs": raw, "query-named-block-nodes": raw, "query-qmp-schema": raw,
		}}
		blk := NewBlock(fe)
		ctx := context.Background()
		blk.SampleDisks(ctx, "vm", SampleOptions{})
		blk.QueryJobs(ctx)
		blk.QueryBlockJobs(ctx)
		blk.QueryNamedBlockNodes(ctx, true)
		if s, err := ParseSchema(raw); err == nil {
			s.HasArg("blockdev-add", "x")
		}
		for _, name := range []string{"JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR"} {
			DecodeJobEvent(Event{Name: name, Data: raw})
		}
	})
}
