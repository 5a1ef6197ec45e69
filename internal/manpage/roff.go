// Package manpage writes qtune's manual pages in roff (man(7) macros)
// from the program's own definitions: the FlagSets its commands parse
// and the schemas its config and policy files are decoded with. Written
// here rather than taken from a library: the pages are built from Go
// structures, not from Markdown (go-md2man) or cobra commands (cobra's
// doc package), and the handful of man(7) macros they use fit in this
// file.
package manpage

import (
	"fmt"
	"io"
	"strings"
)

// Page accumulates one manual page.
type Page struct {
	b strings.Builder
}

// New starts a page: name, section, date (YYYY-MM-DD), source
// ("qtune 1.2.3") and manual title.
func New(name string, section int, date, source, manual string) *Page {
	p := &Page{}
	fmt.Fprintf(&p.b, ".TH %s %d %s %s %s\n", quote(strings.ToUpper(name)), section, quote(date), quote(source), quote(manual))
	return p
}

// SH starts a section.
func (p *Page) SH(title string) { fmt.Fprintf(&p.b, ".SH %s\n", quote(strings.ToUpper(title))) }

// SS starts a subsection.
func (p *Page) SS(title string) { fmt.Fprintf(&p.b, ".SS %s\n", quote(title)) }

// P is a paragraph of running text.
func (p *Page) P(text string) { fmt.Fprintf(&p.b, ".PP\n%s\n", Escape(text)) }

// Item is a tagged paragraph: tag in bold (arg in italics), then text.
func (p *Page) Item(tag, arg, text string) {
	fmt.Fprintf(&p.b, ".TP\n\\fB%s\\fR", Escape(tag))
	if arg != "" {
		fmt.Fprintf(&p.b, " \\fI%s\\fR", Escape(arg))
	}
	fmt.Fprintf(&p.b, "\n%s\n", Escape(text))
}

// Verbatim is a block printed as is (no filling), e.g. a usage or an
// example file.
func (p *Page) Verbatim(text string) {
	p.b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		p.b.WriteString(Escape(l) + "\n")
	}
	p.b.WriteString(".fi\n.RE\n")
}

// WriteTo writes the page.
func (p *Page) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, p.b.String())
	return int64(n), err
}

// String is the page's roff source.
func (p *Page) String() string { return p.b.String() }

// Escape makes text safe as roff input: backslashes and hyphens escaped
// (a bare "-" may be typeset as a hyphen, which breaks copying a flag
// from the page), and a line that would start with a control character
// guarded by \&.
func Escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func quote(s string) string { return `"` + strings.ReplaceAll(Escape(s), `"`, `\(dq`) + `"` }
