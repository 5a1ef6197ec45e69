// Package api holds the documents qtune's agent and its clients exchange:
// the status and history the HTTP listener serves (GET /v1/status,
// /v1/history), and the requests and replies of the control socket
// (/v1/jobs). The agent builds these values from its own records; the
// client commands (qtune status, jobs, plan, policy check
// --against-agent) and the benchmarks read them without importing the
// daemon.
//
// The JSON field names are a contract between an agent and clients of
// other versions: a field may be added, never renamed or dropped. The
// types here are copies of the agent's records made for the wire, so a
// record can change shape without the documents changing with it.
//
// api imports nothing of qtune's but internal/sample and policy.
package api
