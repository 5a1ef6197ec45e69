package api

import "time"

// FleetSlot is one copy's place in a fleet budget on etcd: a slot held,
// or a place in line (docs/fleet.md).
type FleetSlot struct {
	Budget string    `json:"budget"`
	Job    string    `json:"job"`
	Host   string    `json:"host"`
	VM     string    `json:"vm"`
	Disk   string    `json:"disk"`
	Kind   string    `json:"kind"`
	Speed  uint64    `json:"speed"` // bytes/s as counted; 0 = unbounded
	Since  time.Time `json:"since"`
	// Running marks a waiter already moving data (its slot went with its
	// host's lease, or its agent restarted): served before the others.
	Running bool `json:"running,omitempty"`
}

// Fleet is GET /v1/fleet on the control socket: the slots held and the
// copies waiting fleet-wide, read from etcd by this agent.
type Fleet struct {
	Host    string      `json:"host"`     // this agent's name in the fleet
	LeaseOK bool        `json:"lease_ok"` // this host holds its lease
	Held    []FleetSlot `json:"held"`     // by budget and age
	Waiting []FleetSlot `json:"waiting"`  // by budget, in the order they will be served
}
