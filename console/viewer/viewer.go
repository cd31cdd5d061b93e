// Package viewer is the page behind a share link: one self-contained HTML document that
// renders an AgentSession's header, its transcript as a conversation, its summary and its
// patch. The page loads its data with relative URLs (console.PathSession, console.PathEvents,
// console.PathPatch), so it works under any link that ends in "/", and follows a running
// session by polling.
//
// Everything the page shows was written by a model, a repository or a person, so the page
// builds DOM nodes and never parses text as markup; the Content-Security-Policy it is served
// with allows only its own script and style (by hash), no network but its own origin, and
// enforces Trusted Types so an HTML sink cannot be reached even by mistake.
package viewer

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

//go:embed page.html
var page []byte

// csp is computed once from the embedded page, so an edit to its script or style can never
// ship with a stale hash.
var csp = policy(page)

// Page returns the page's HTML.
func Page() []byte { return bytes.Clone(page) }

// ContentSecurityPolicy returns the policy the page must be served with: its inline script
// and style are allowed by their SHA-256, nothing else runs or loads, it may fetch only from
// its own origin, and Trusted Types are required for every HTML and script sink.
func ContentSecurityPolicy() string { return csp }

// Handler serves the page for GET and HEAD of a path ending in "/" or "/index.html", with
// its security headers: a link is a capability, so the page sends no Referer, is never
// framed and is not stored by caches.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if p := r.URL.Path; !strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "/index.html") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(page)))
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(page)
		}
	})
}

// policy builds the Content-Security-Policy for a page with exactly one inline <script> and
// one inline <style>; it panics otherwise, which the package's tests catch at build time.
func policy(html []byte) string {
	return fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; connect-src 'self'; img-src data:; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "+
		"require-trusted-types-for 'script'; trusted-types 'none'",
		inlineHash(html, "script"), inlineHash(html, "style"))
}

// inlineHash is the CSP source expression of the single inline <tag> element's text.
func inlineHash(html []byte, tag string) string {
	open, end := []byte("<"+tag+">"), []byte("</"+tag+">")
	if bytes.Count(html, open) != 1 || bytes.Count(html, end) != 1 {
		panic(fmt.Sprintf("viewer: page.html must have exactly one <%s> element", tag))
	}
	_, rest, _ := bytes.Cut(html, open)
	body, _, _ := bytes.Cut(rest, end)
	sum := sha256.Sum256(body)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
