// Package config reads the agent's configuration file (agent.hcl) over
// its defaults and validates it, naming every problem with its file and
// line. It is its own package so that the commands that only need a
// setting (the listen address for completion, the schema for the manual)
// do not link the daemon.
package config
