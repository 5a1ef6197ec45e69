package agent

import (
	"net/http"
	"net/http/pprof"
)

// withPprof adds Go's profiling endpoints under /debug/pprof/ in front of
// h. They are served on a loopback or unix listener only: a profile shows
// the agent's memory, which holds VM names and disk paths.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
