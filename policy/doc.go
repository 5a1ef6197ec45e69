// Package policy parses qtune's HCL policy files, validates them with
// file:line:col errors, and evaluates their rules over disk samples. Each
// rule is a state machine per (rule, VM, disk); evaluation is given the time
// and never reads a clock.
package policy
