package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A benchmark rewrites only its own section; others' sections stay as
// they were and new ones are appended.
func TestUpdateResultsKeepsOtherSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	other := "<!-- bench:control -->\n## Control\nkept\n<!-- /bench:control -->\n"
	os.WriteFile(path, []byte(resultsHeader+"\n"+other), 0o644)
	if err := updateResults(path, map[string]string{"machine": "## Machine\nv1", "sampling-qmp": "## Sampling\nold"}); err != nil {
		t.Fatal(err)
	}
	if err := updateResults(path, map[string]string{"machine": "## Machine\nv2", "sampling-qmp": "## Sampling\nnew"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := string(b)
	for _, want := range []string{"kept", "v2", "new"} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %q in\n%s", want, doc)
		}
	}
	for _, gone := range []string{"v1", "old"} {
		if strings.Contains(doc, gone) {
			t.Errorf("stale %q left in\n%s", gone, doc)
		}
	}
	if strings.Count(doc, "<!-- bench:machine -->") != 1 {
		t.Errorf("machine section duplicated:\n%s", doc)
	}
	// A partial run (-only) leaves the machine section alone.
	if err := updateResults(path, map[string]string{"sampling-qmp": "## Sampling\nnewer"}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if doc := string(b); !strings.Contains(doc, "v2") || !strings.Contains(doc, "newer") {
		t.Errorf("partial run lost the machine section or its own:\n%s", doc)
	}
}
