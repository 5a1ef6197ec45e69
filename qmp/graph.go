package qmp

import "context"

// BlockGraph is the block layer's graph: every node (devices' block
// backends, jobs, and block-driver nodes) and every parent-to-child edge.
// No stable command reports a node's parents, and deleting a node safely
// needs exactly that, so qtune reads x-debug-query-block-graph (present
// from QEMU 4.0 on, unchanged in 10.0) where the schema offers it; QEMU's
// blockdev-del refuses a node in use on its own as well.
type BlockGraph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// GraphNode is one node of the graph; Name is the node name of a
// block-driver node, the device or job name of the others.
type GraphNode struct {
	ID   uint64 `json:"id"`
	Type string `json:"type"` // "block-backend", "block-job", "block-driver"
	Name string `json:"name"`
}

// GraphEdge links a parent to a child under the child's role name
// ("file", "backing", "root", ...).
type GraphEdge struct {
	Parent uint64 `json:"parent"`
	Child  uint64 `json:"child"`
	Name   string `json:"name"`
}

// GraphCommand is the command QueryBlockGraph sends.
const GraphCommand = "x-debug-query-block-graph"

// QueryBlockGraph reads the block graph.
func (b *Block) QueryBlockGraph(ctx context.Context) (BlockGraph, error) {
	var g BlockGraph
	err := b.call(ctx, GraphCommand, nil, &g)
	return g, err
}

// Parents names what uses the block-driver node called node: "<type>
// <name>" of every parent, empty when nothing does. found is false when
// the graph has no such node.
func (g BlockGraph) Parents(node string) (parents []string, found bool) {
	byID := map[uint64]GraphNode{}
	var id uint64
	for _, n := range g.Nodes {
		byID[n.ID] = n
		if n.Type == "block-driver" && n.Name == node {
			id, found = n.ID, true
		}
	}
	if !found {
		return nil, false
	}
	for _, e := range g.Edges {
		if e.Child == id {
			p := byID[e.Parent]
			parents = append(parents, p.Type+" "+p.Name)
		}
	}
	return parents, true
}
