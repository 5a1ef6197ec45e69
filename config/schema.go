package config

// FileSchema is a zero value of the struct agent.hcl decodes into:
// its hcl tags are the file's schema, which the manual page
// qtune-agent.hcl(5) is generated from.
func FileSchema() any { return fileConfig{} }
