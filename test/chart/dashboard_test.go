package chart_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/test/controlplane"
)

// metric is a Prometheus metric the manager registers.
type metric struct {
	labels    []string
	histogram bool
}

// registeredMetrics reads the metric definitions (prometheus.New* calls with an agentry_ name)
// from the manager's controllers and gateway packages.
func registeredMetrics(t *testing.T) map[string]metric {
	t.Helper()
	metrics := map[string]metric{}
	fset := token.NewFileSet()
	for _, dir := range []string{"controllers", "gateway"} {
		files, err := filepath.Glob(filepath.Join(controlplane.RepoRoot(), dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "prometheus" {
					return true
				}
				var name string
				var labels []string
				switch fn := sel.Sel.Name; {
				case fn == "NewDesc" && len(call.Args) >= 3: // NewDesc(name, help, labels, constLabels)
					name, labels = stringLit(call.Args[0]), stringList(call.Args[2])
				case len(call.Args) >= 1: // NewCounterVec(opts, labels), NewGauge(opts), ...
					name = optsName(call.Args[0])
					if len(call.Args) >= 2 {
						labels = stringList(call.Args[1])
					}
				}
				if strings.HasPrefix(name, "agentry_") {
					metrics[name] = metric{labels: labels, histogram: strings.HasPrefix(sel.Sel.Name, "NewHistogram")}
				}
				return true
			})
		}
	}
	return metrics
}

func stringLit(e ast.Expr) string {
	if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
		s, _ := strconv.Unquote(lit.Value)
		return s
	}
	return ""
}

func stringList(e ast.Expr) []string {
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range cl.Elts {
		out = append(out, stringLit(el))
	}
	return out
}

func optsName(e ast.Expr) string {
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return ""
	}
	for _, el := range cl.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
				return stringLit(kv.Value)
			}
		}
	}
	return ""
}

// targetLabels are the labels Prometheus adds to every series it scrapes through the
// ServiceMonitor (honorLabels keeps the metric's own namespace label where they clash).
var targetLabels = []string{"namespace", "pod", "instance", "job", "service", "endpoint", "container"}

var (
	metricRef   = regexp.MustCompile(`\bagentry_[a-z_]+`)
	byClause    = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchers    = regexp.MustCompile(`\{([^}]*)\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	labelValues = regexp.MustCompile(`label_values\(\s*(agentry_[a-z_]+)\s*,\s*([a-zA-Z_]+)\s*\)`)
)

// TestDashboardQueriesRegisteredMetrics: every metric the Grafana dashboard queries is one
// the manager registers, with the labels it has, so no panel is silently empty.
func TestDashboardQueriesRegisteredMetrics(t *testing.T) {
	registered := registeredMetrics(t)
	for _, want := range []string{"agentry_sessions", "agentry_sessions_finished_total", "agentry_gateway_requests_total", "agentry_llm_tokens_total"} {
		if _, ok := registered[want]; !ok {
			t.Fatalf("did not find %s among the metric definitions in controllers/ and gateway/ (found %v)", want, registered)
		}
	}
	// series resolves a name the dashboard uses to its metric: histograms are queried by
	// their _bucket, _sum and _count series (and _bucket has the le label).
	series := func(name string) (metric, bool) {
		if m, ok := registered[name]; ok {
			return m, true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if m, ok := registered[strings.TrimSuffix(name, suffix)]; ok && m.histogram && strings.HasSuffix(name, suffix) {
				if suffix == "_bucket" {
					m.labels = append(slices.Clone(m.labels), "le")
				}
				return m, true
			}
		}
		return metric{}, false
	}

	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "charts", "agentry", "dashboards", "agentry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboards/agentry.json: %v", err)
	}

	used := map[string]bool{}
	check := func(where, expr, legend string) {
		names := metricRef.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q queries no agentry_ metric", where, expr)
		}
		var labels []string
		for _, n := range names {
			m, ok := series(n)
			if !ok {
				t.Errorf("%s: %s is not a metric the manager registers", where, n)
				continue
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			labels = append(labels, m.labels...)
		}
		labels = append(labels, targetLabels...)
		var refs []string
		for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				refs = append(refs, strings.TrimSpace(l))
			}
		}
		for _, m := range matchers.FindAllStringSubmatch(expr, -1) {
			for _, l := range matcherName.FindAllStringSubmatch(m[1], -1) {
				refs = append(refs, l[1])
			}
		}
		for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
			refs = append(refs, m[1])
		}
		for _, l := range refs {
			if l != "" && !slices.Contains(labels, l) {
				t.Errorf("%s: label %q is not a label of %v (labels %v)", where, l, names, labels)
			}
		}
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			check("panel "+strconv.Quote(p.Title), tg.Expr, tg.LegendFormat)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: unexpected query %q", v.Name, v.Definition)
			continue
		}
		if reg, ok := registered[m[1]]; !ok || !slices.Contains(reg.labels, m[2]) {
			t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
		}
	}
	// The panels the dashboard promises: sessions, tokens, model latency and errors, tools,
	// gateway requests.
	for _, want := range []string{"agentry_sessions", "agentry_sessions_finished_total", "agentry_llm_tokens_total", "agentry_llm_request_duration_seconds",
		"agentry_llm_errors_total", "agentry_tool_duration_seconds", "agentry_tool_errors_total", "agentry_gateway_requests_total"} {
		if !used[want] {
			t.Errorf("the dashboard has no panel for %s", want)
		}
	}
}
