package policy

import "github.com/hashicorp/hcl/v2"

// RuleAttributes names the attributes a rule block takes, in the order
// the parser declares them; the manual page qtune-policy(5) lists them.
func RuleAttributes() []string { return attrNames(ruleAttrs) }

// MatchAttributes names the attributes of a rule's match block.
func MatchAttributes() []string { return attrNames(matchSchema.Attributes) }

func attrNames(as []hcl.AttributeSchema) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Name)
	}
	return out
}
