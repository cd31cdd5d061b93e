package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// What a fetched body is read as.
type bodyKind int

const (
	kindOther bodyKind = iota
	kindHTML
	kindText
)

// textKind classifies a media type: HTML is converted, plain text, Markdown
// and JSON pass through, anything else is refused.
func textKind(mediaType string) bodyKind {
	switch mediaType {
	case "text/html", "application/xhtml+xml":
		return kindHTML
	case "text/plain", "text/markdown", "text/x-markdown", "text/csv", "application/json", "text/json":
		return kindText
	}
	if strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json") {
		return kindText
	}
	return kindOther
}

// pageText decodes the body (its declared charset, else UTF-8) and, for HTML,
// renders the readable text.
func pageText(body []byte, mediaType, cs string, base *url.URL) string {
	var r io.Reader = bytes.NewReader(body)
	if cs != "" && !strings.EqualFold(cs, "utf-8") {
		if dr, err := charset.NewReaderLabel(cs, r); err == nil {
			r = dr
		}
	}
	if textKind(mediaType) == kindHTML {
		doc, err := html.Parse(r)
		if err != nil {
			// The parser refuses pathological nesting (more than 512 open elements).
			return fmt.Sprintf("[the page's HTML could not be read: %v]\n", err)
		}
		return htmlText(doc, base)
	}
	b, _ := io.ReadAll(r)
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// htmlText renders a document as Markdown-like text: the title, headings,
// paragraphs, list items, links with their (absolute) targets and
// preformatted blocks. Scripts, styles, forms and elements marked hidden are
// left out; they are not what a reader of the page sees.
func htmlText(doc *html.Node, base *url.URL) string {
	w := &textWriter{base: base}
	if t := findFirst(doc, atom.Title); t != nil {
		if title := collapse(nodeText(t)); title != "" {
			w.block("# " + title)
		}
	}
	body := findFirst(doc, atom.Body)
	if body == nil {
		body = doc
	}
	w.walk(body)
	w.flush()
	return strings.TrimSpace(w.out.String()) + "\n"
}

type textWriter struct {
	base   *url.URL
	out    strings.Builder
	line   strings.Builder
	prefix string
}

// skipped elements are never rendered.
var skipped = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true, atom.Svg: true,
	atom.Iframe: true, atom.Object: true, atom.Embed: true, atom.Form: true, atom.Button: true,
	atom.Select: true, atom.Input: true, atom.Textarea: true, atom.Head: true, atom.Canvas: true,
}

// blocks end the current line before and after them.
var blocks = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Section: true, atom.Article: true, atom.Main: true, atom.Header: true,
	atom.Footer: true, atom.Nav: true, atom.Aside: true, atom.Ul: true, atom.Ol: true, atom.Table: true,
	atom.Tr: true, atom.Blockquote: true, atom.Dl: true, atom.Dt: true, atom.Dd: true, atom.Figure: true,
	atom.Hr: true, atom.Details: true, atom.Summary: true,
}

var headings = map[atom.Atom]string{
	atom.H1: "# ", atom.H2: "## ", atom.H3: "### ", atom.H4: "#### ", atom.H5: "##### ", atom.H6: "###### ",
}

func (w *textWriter) walk(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch c.Type {
		case html.TextNode:
			w.text(c.Data)
		case html.ElementNode:
			w.element(c)
		}
	}
}

func (w *textWriter) element(n *html.Node) {
	if skipped[n.DataAtom] || hidden(n) {
		return
	}
	switch {
	case n.DataAtom == atom.Br:
		w.flush()
	case n.DataAtom == atom.Pre:
		w.flush()
		w.block("```\n" + strings.TrimRight(nodeText(n), "\n") + "\n```")
	case headings[n.DataAtom] != "":
		w.flush()
		w.block(headings[n.DataAtom] + collapse(nodeText(n)))
	case n.DataAtom == atom.Li:
		w.flush()
		w.prefix = "- "
		w.walk(n)
		w.flush()
	case n.DataAtom == atom.A:
		w.link(n)
	case n.DataAtom == atom.Code:
		w.text("`" + nodeText(n) + "`")
	case n.DataAtom == atom.Img:
		if alt := collapse(attr(n, "alt")); alt != "" {
			w.text("[image: " + alt + "]")
		}
	case n.DataAtom == atom.Td || n.DataAtom == atom.Th:
		w.text(" | ")
		w.walk(n)
	case blocks[n.DataAtom]:
		w.flush()
		w.walk(n)
		w.flush()
	default:
		w.walk(n)
	}
}

// link renders "text (target)" with the target made absolute; fragment-only
// and javascript: links render as their text.
func (w *textWriter) link(n *html.Node) {
	text := collapse(nodeText(n))
	href := strings.TrimSpace(attr(n, "href"))
	if href == "" || strings.HasPrefix(href, "#") || strings.HasPrefix(strings.ToLower(href), "javascript:") {
		w.walk(n)
		return
	}
	if u, err := w.base.Parse(href); err == nil {
		href = u.String()
	}
	if text == "" || text == href {
		w.text(" " + href + " ")
		return
	}
	w.text("[" + text + "](" + href + ")")
}

func (w *textWriter) text(s string) {
	s = collapseKeepEdges(s)
	if strings.TrimSpace(s) == "" {
		if w.line.Len() > 0 && !strings.HasSuffix(w.line.String(), " ") {
			w.line.WriteByte(' ')
		}
		return
	}
	if w.line.Len() == 0 {
		s = strings.TrimLeft(s, " ")
	}
	w.line.WriteString(s)
}

// flush ends the current line as a paragraph of its own.
func (w *textWriter) flush() {
	line := strings.TrimSpace(w.line.String())
	w.line.Reset()
	if line != "" {
		w.block(w.prefix + line)
	}
	w.prefix = ""
}

func (w *textWriter) block(s string) {
	if w.out.Len() > 0 {
		if strings.HasPrefix(s, "- ") && strings.HasSuffix(w.out.String(), "\n") && lastLineIsItem(w.out.String()) {
			w.out.WriteString(s + "\n")
			return
		}
		w.out.WriteString("\n")
	}
	w.out.WriteString(s + "\n")
}

func lastLineIsItem(s string) bool {
	s = strings.TrimSuffix(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.HasPrefix(s, "- ")
}

// hidden says whether an element is not shown to a reader: text only a model
// would read is a common way to plant instructions.
func hidden(n *html.Node) bool {
	for _, a := range n.Attr {
		switch strings.ToLower(a.Key) {
		case "hidden":
			return true
		case "aria-hidden":
			if strings.EqualFold(a.Val, "true") {
				return true
			}
		case "style":
			st := strings.ToLower(strings.ReplaceAll(a.Val, " ", ""))
			if strings.Contains(st, "display:none") || strings.Contains(st, "visibility:hidden") {
				return true
			}
		}
	}
	return false
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func findFirst(n *html.Node, a atom.Atom) *html.Node {
	if n.Type == html.ElementNode && n.DataAtom == a {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findFirst(c, a); f != nil {
			return f
		}
	}
	return nil
}

// nodeText is the visible text under n, as is.
func nodeText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			switch {
			case c.Type == html.TextNode:
				b.WriteString(c.Data)
			case c.Type == html.ElementNode && !skipped[c.DataAtom] && !hidden(c):
				if c.DataAtom == atom.Br {
					b.WriteByte('\n')
				}
				walk(c)
			}
		}
	}
	walk(n)
	return b.String()
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// collapseKeepEdges collapses runs of white space to one space, keeping one
// at either end when there was some, so words of adjacent inline elements do
// not run together.
func collapseKeepEdges(s string) string {
	if s == "" {
		return s
	}
	inner := collapse(s)
	lead := strings.TrimLeft(s, " \t\r\n\f") != s
	trail := strings.TrimRight(s, " \t\r\n\f") != s
	if inner == "" {
		return " "
	}
	if lead {
		inner = " " + inner
	}
	if trail {
		inner += " "
	}
	return inner
}
