package controllers

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/delivery/forge"
	"github.com/agentry-dev/agentry/display"
)

// PullRequestData is what a pull request's title and body templates see (documented in
// docs/delivery.md). Summary and Task are text the model or the user wrote.
type PullRequestData struct {
	Namespace, Name, UID string
	Task                 string
	Summary              string
	Repository           string
	Commit               string
	Model                string
	Branch               string
	FilesChanged         int32
	Additions            int32
	Deletions            int32
	Tokens               int64
	Transcript           string
}

const (
	defaultTitleTemplate = `{{ firstLine (or .Summary .Task) }}`
	defaultBodyTemplate  = `{{ .Summary }}

---

| | |
|---|---|
| Session | ` + "`{{ .Namespace }}/{{ .Name }}`" + ` |
| Files changed | {{ .FilesChanged }} (+{{ .Additions }} −{{ .Deletions }}) |
| Tokens | {{ .Tokens }}{{ with .Model }} ({{ . }}){{ end }} |
| Base commit | {{ .Commit }} |
| Transcript | {{ or .Transcript "not archived" }} |

Task:

{{ quote .Task }}
`
	maxTitle = 256
	maxBody  = 60000
)

var templateFuncs = template.FuncMap{
	"firstLine": display.Headline,
	"quote": func(s string) string {
		return "> " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n> ")
	},
	"trim":  strings.TrimSpace,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// allowedIdentifiers are the functions a template may call: the ones above and the
// built-in comparisons. printf, print, call, range and template are refused: they could make
// the manager allocate or loop without bound on a template a namespace user wrote.
var allowedIdentifiers = map[string]bool{
	"firstLine": true, "quote": true, "trim": true, "upper": true, "lower": true,
	"or": true, "and": true, "not": true, "eq": true, "ne": true, "len": true,
}

func templateDataFor(s *v1.AgentSession) PullRequestData {
	d := PullRequestData{Namespace: s.Namespace, Name: s.Name, UID: string(s.UID), Task: s.Spec.Task,
		Repository: s.Spec.Repository.URL, Branch: deliveryBranch(s)}
	if r := s.Status.Result; r != nil {
		d.Summary, d.FilesChanged, d.Additions, d.Deletions = r.Summary, r.FilesChanged, r.Additions, r.Deletions
	}
	if u := s.Status.Usage; u != nil {
		d.Tokens = u.TotalTokens
	}
	if r := s.Status.Resolved; r != nil {
		d.Commit, d.Model = r.CommitSHA, r.Model
	}
	if t := s.Status.Transcript; t != nil {
		d.Transcript = t.URI
	}
	return d
}

// renderPullRequest renders the title (one line, bounded) and body of the pull request,
// or the commit message's title for push.
func renderPullRequest(d *v1.DeliverySpec, data PullRequestData) (title, body string, err error) {
	titleT, bodyT := defaultTitleTemplate, defaultBodyTemplate
	if pr := d.PullRequest; pr != nil {
		if pr.Title != "" {
			titleT = pr.Title
		}
		if pr.Body != "" {
			bodyT = pr.Body
		}
	}
	if title, err = render("spec.delivery.pullRequest.title", titleT, data, maxTitle*4); err != nil {
		return "", "", err
	}
	title = contract.TruncateUTF8(display.Headline(title), maxTitle)
	if title == "" {
		title = "Agentry session " + data.Namespace + "/" + data.Name
	}
	if body, err = render("spec.delivery.pullRequest.body", bodyT, data, maxBody); err != nil {
		return "", "", err
	}
	return title, body, nil
}

func render(field, text string, data PullRequestData, limit int) (string, error) {
	t, err := template.New(field).Funcs(templateFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%s does not parse: %w", field, err)
	}
	if err := checkTemplate(t.Tree.Root); err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	if len(t.Templates()) > 1 {
		return "", fmt.Errorf("%s: define and block are not allowed", field)
	}
	w := &limitWriter{limit: limit}
	if err := t.Execute(w, data); err != nil && !errors.Is(err, errTooLong) {
		return "", fmt.Errorf("%s does not run: %w", field, err)
	}
	return w.buf.String(), nil
}

// checkTemplate refuses loops, template calls and functions outside allowedIdentifiers.
func checkTemplate(n parse.Node) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkTemplate(c); err != nil {
				return err
			}
		}
	case *parse.RangeNode:
		return errors.New("range is not allowed")
	case *parse.TemplateNode:
		return errors.New("template is not allowed")
	case *parse.BreakNode, *parse.ContinueNode:
		return errors.New("break and continue are not allowed")
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.ActionNode:
		return checkTemplate(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkTemplate(c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkTemplate(a); err != nil {
				return err
			}
		}
	case *parse.IdentifierNode:
		if !allowedIdentifiers[n.Ident] {
			return fmt.Errorf("function %q is not allowed (allowed: firstLine, quote, trim, upper, lower, or, and, not, eq, ne, len)", n.Ident)
		}
	case *parse.ChainNode:
		return checkTemplate(n.Node)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	for _, n := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if err := checkTemplate(n); err != nil {
			return err
		}
	}
	return nil
}

var errTooLong = errors.New("output limit reached")

// limitWriter keeps the first limit bytes and stops the template there.
type limitWriter struct {
	buf   bytes.Buffer
	limit int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if left := w.limit - w.buf.Len(); len(p) > left {
		w.buf.Write(p[:max(left, 0)])
		return 0, errTooLong
	}
	return w.buf.Write(p)
}

// ForgeFor builds the forge client for a GitHub or Gitea provider from its Secret.
func ForgeFor(p *v1.GitProvider, sec *corev1.Secret) (forge.Forge, error) {
	switch p.Spec.Type {
	case v1.GitProviderGitHub:
		cfg := forge.GitHubConfig{APIURL: githubAPIURL(p), Token: secretString(sec, "token")}
		if app := p.Spec.GitHubApp; app != nil {
			cfg.Token = ""
			cfg.AppID, cfg.InstallationID, cfg.PrivateKeyPEM = app.AppID, app.InstallationID, sec.Data["private-key.pem"]
			if len(cfg.PrivateKeyPEM) == 0 {
				return nil, fmt.Errorf("its Secret %s has no private-key.pem key for the GitHub App", sec.Name)
			}
		} else if cfg.Token == "" {
			return nil, fmt.Errorf("its Secret %s has no token key", sec.Name)
		}
		return forge.NewGitHub(cfg)
	case v1.GitProviderGitea:
		if secretString(sec, "token") == "" {
			return nil, fmt.Errorf("its Secret %s has no token key", sec.Name)
		}
		return forge.NewGitea(forge.GiteaConfig{URL: strings.TrimSuffix(p.Spec.URL, "/"), Token: secretString(sec, "token")})
	}
	return nil, fmt.Errorf("type %s opens no pull requests", p.Spec.Type)
}

func githubAPIURL(p *v1.GitProvider) string {
	if p.Spec.APIURL != "" {
		return p.Spec.APIURL
	}
	if u := strings.TrimSuffix(p.Spec.URL, "/"); u != "https://github.com" {
		return u + "/api/v3/"
	}
	return ""
}

// secretString is a Secret's value without the surrounding whitespace a file-made Secret
// often carries (a token with a trailing newline is not a valid header value).
func secretString(sec *corev1.Secret, key string) string {
	return strings.TrimSpace(string(sec.Data[key]))
}
