package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/qtune/qtune/internal/buildinfo"
)

func init() {
	register(command{name: "version", summary: "print the version, commit, build date and Go version", run: runVersion})
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune version")
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the build as JSON")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "qtune version: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	bi := buildinfo.Get()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(bi); err != nil {
			return exitFailure
		}
		return exitOK
	}
	fmt.Fprintln(stdout, bi.String())
	return exitOK
}

// printAgentVersion heads qtune status: which build the agent runs, and
// whether it is this one (an upgraded package runs the old binary until
// the service restarts).
func printAgentVersion(w io.Writer, agentBuild buildinfo.Info) {
	if agentBuild.Version == "" {
		fmt.Fprintln(w, "agent: version not reported (a build older than this qtune)")
		return
	}
	fmt.Fprintf(w, "agent: %s\n", agentBuild)
	if here := buildinfo.Get(); here != agentBuild {
		fmt.Fprintf(w, "  this qtune is %s: restart the agent (systemctl restart qtune) to run it\n", here)
	}
}
