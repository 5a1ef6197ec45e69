package manpage

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"--state-dir":      `\-\-state\-dir`,
		`a\b`:              `a\eb`,
		".starts a macro":  `\&.starts a macro`,
		"x\n'quote":        "x\n\\&'quote",
		"plain text, 10 %": "plain text, 10 %",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

type inner struct {
	N *int     `hcl:"n,optional"`
	L []string `hcl:"l,optional"`
}

type outer struct {
	S    *string `hcl:"s,optional"`
	In   *inner  `hcl:"in,block"`
	Rest any     `hcl:",remain"`
	Skip string
}

func TestHCLKeys(t *testing.T) {
	var got []string
	for _, k := range HCLKeys(outer{}) {
		got = append(got, k.Path+":"+k.Type)
	}
	want := "s:string in:block in.n:number in.l:list of string"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestPage(t *testing.T) {
	p := New("qtune", 1, "2026-01-02", "qtune 1.0", "qtune manual")
	p.SH("name")
	p.Item("--addr", "ADDR", "the agent's address")
	p.Verbatim(".x = 1")
	want := `.TH "QTUNE" 1 "2026\-01\-02" "qtune 1.0" "qtune manual"
.SH "NAME"
.TP
\fB\-\-addr\fR \fIADDR\fR
the agent's address
.PP
.RS 4
.nf
\&.x = 1
.fi
.RE
`
	if p.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", p.String(), want)
	}
}
