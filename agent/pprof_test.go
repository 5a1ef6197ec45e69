package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWithPprof(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inner "+r.URL.Path) })
	srv := httptest.NewServer(withPprof(inner))
	defer srv.Close()
	for path, want := range map[string]string{
		"/debug/pprof/heap?debug=1": "heap profile",
		"/metrics":                  "inner /metrics",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %.80q, want %q", path, resp.StatusCode, body, want)
		}
	}
}
