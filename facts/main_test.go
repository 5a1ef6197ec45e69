package facts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/qtune/qtune/internal/qmpfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeVM serves query-block and query-blockstats replies captured from
// QEMU 7.2, with the write counter moving 500 a call.
func fakeVM(t *testing.T) *qmpfake.Server {
	t.Helper()
	s := qmpfake.New(t)
	var block, stats []map[string]any
	for file, dst := range map[string]*[]map[string]any{"query-block.json": &block, "query-blockstats.json": &stats} {
		b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(b, dst)
	}
	s.Reply("query-block", block)
	writes := 0.0
	s.Handle("query-blockstats", func(json.RawMessage) (any, string, string) {
		writes += 500
		for _, st := range stats {
			st["stats"].(map[string]any)["wr_operations"] = writes
		}
		return stats, "", ""
	})
	return s
}
