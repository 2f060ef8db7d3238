package deploy

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/flock-net/flock-netpol/internal/controller"
)

// The Grafana dashboard in config/grafana: its queries must name only metrics and labels the
// agent exports, so that a renamed metric breaks this test rather than a panel that silently
// shows "No data".

const (
	dashboardFile = "config/grafana/flock-netpol-dashboard.json"
	dashboardUID  = "flock-netpol"
	// datasourceRef is the only datasource a panel or query may name: the dashboard's variable,
	// so that it imports into any Grafana whatever the uid of its Prometheus.
	datasourceRef = "${datasource}"
)

// ---------------------------------------------------------------------------------------------
// The exported metrics

// exportedMetric is a metric the agent exports: its variable labels, and whether it is a
// histogram (queried as _bucket, _sum and _count).
type exportedMetric struct {
	labels    []string
	histogram bool
}

// recordingRegisterer registers into a real registry and keeps the collectors it was given, whose
// descriptors list every metric, with or without samples (a Gather leaves out the vectors without
// children and the RuleCounters' metrics of an empty table).
type recordingRegisterer struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var (
	descFQName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)
)

// exportedMetrics returns the agent's own metrics by name, from the collectors the agent
// registers: controller.NewMetrics and the RuleCounters.
func exportedMetrics(t *testing.T) map[string]exportedMetric {
	t.Helper()
	reg := &recordingRegisterer{Registry: prometheus.NewRegistry()}
	controller.NewMetrics(reg)
	reg.MustRegister(controller.NewRuleCounters(nil, "t", logr.Discard()))

	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range reg.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	var descs []*prometheus.Desc
	for d := range ch { // drained before any t.Fatal, which would leave the sender blocked
		descs = append(descs, d)
	}
	metrics := map[string]exportedMetric{}
	for _, d := range descs {
		s := d.String()
		m := descFQName.FindStringSubmatch(s)
		l := descLabels.FindStringSubmatch(s)
		if m == nil || l == nil {
			t.Fatalf("cannot read the name and labels of descriptor %s", s)
		}
		var labels []string
		if l[1] != "" {
			labels = strings.Split(l[1], ",")
		}
		metrics[m[1]] = exportedMetric{labels: labels}
	}
	// The types come from a Gather: the histograms here are not vectors, so they always have a
	// sample. A histogram vector without children would be missing and its _bucket series
	// reported unknown: the test fails rather than passes.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		m, ok := metrics[mf.GetName()]
		if !ok {
			t.Fatalf("gathered metric %s has no descriptor", mf.GetName())
		}
		m.histogram = mf.GetType().String() == "HISTOGRAM"
		metrics[mf.GetName()] = m
	}
	for _, name := range []string{"flocknetpol_apply_duration_seconds", "flocknetpol_rule_packets_total"} {
		if _, ok := metrics[name]; !ok {
			t.Fatalf("the exported metrics %v do not include %s: the collection of descriptors is broken", slices.Sorted(maps.Keys(metrics)), name)
		}
	}
	return metrics
}

// resolveSeries maps a series name used in a query to the exported metric it belongs to: the
// metric itself, or a histogram's _bucket, _sum or _count. extra is the label the suffix adds
// (le for _bucket).
func resolveSeries(metrics map[string]exportedMetric, name string) (m exportedMetric, extra []string, ok bool) {
	if m, ok := metrics[name]; ok {
		return m, nil, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if m, ok := metrics[base]; found && ok && m.histogram {
			if suffix == "_bucket" {
				extra = []string{"le"}
			}
			return m, extra, true
		}
	}
	return exportedMetric{}, nil, false
}

// ---------------------------------------------------------------------------------------------
// The dashboard

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []dashVariable `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description"`
	Targets     []dashTarget `json:"targets"`
	Panels      []dashPanel  `json:"panels"` // of a collapsed row
}

type dashTarget struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type dashVariable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
	// Definition is the query as the variable editor shows it; Grafana runs Query.
	Definition string `json:"definition"`
}

// queryText returns a query variable's PromQL: Grafana stores it as a string, or (Grafana 10 and
// later) as an object with a query field.
func (v dashVariable) queryText(t *testing.T) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Fatalf("variable %s: query %s is neither a string nor an object with a query", v.Name, v.Query)
	}
	return o.Query
}

func readDashboard(t *testing.T) ([]byte, *dashboard) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return b, &d
}

// allPanels returns the panels, rows included, with the panels of collapsed rows.
func (d *dashboard) allPanels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// queries returns every PromQL query of the dashboard, by where it is: the panels' targets and
// the query variables.
func (d *dashboard) queries(t *testing.T) map[string]string {
	t.Helper()
	q := map[string]string{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			q["panel "+p.Title+", query "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			q["variable "+v.Name] = v.queryText(t)
		}
	}
	return q
}

var (
	// seriesName matches the agent's metric names in a query, and the selector after one.
	seriesName   = regexp.MustCompile(`flocknetpol_[a-zA-Z0-9_]*`)
	seriesSelect = regexp.MustCompile(`(flocknetpol_[a-zA-Z0-9_]*)\s*(\{[^}]*\})?`)
	labelMatcher = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	// variableUse matches $name and ${name} (or ${name:format}) in a query.
	variableUse = regexp.MustCompile(`\$(?:\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|([a-zA-Z0-9_]+))`)
)

// scrapeLabels are the labels the scrape adds that the dashboard may filter on: instance tells
// the agents (the nodes) apart.
var scrapeLabels = []string{"instance", "job"}

// ---------------------------------------------------------------------------------------------
// Tests

// The dashboard has the uid that links, provisioning and the README refer to, and its title.
func TestDashboardHasItsUIDAndTitle(t *testing.T) {
	_, d := readDashboard(t)
	if d.UID != dashboardUID {
		t.Errorf("uid = %q, want %q", d.UID, dashboardUID)
	}
	if d.Title != "flock-netpol NetworkPolicy" {
		t.Errorf("title = %q, want %q", d.Title, "flock-netpol NetworkPolicy")
	}
}

// Every panel has a title; every panel but a row also has a description and at least one
// query, each with an expression and its own refId. Panel ids are unique (Grafana links and
// the panel editor use them).
func TestDashboardPanelsHaveTitlesAndQueries(t *testing.T) {
	_, d := readDashboard(t)
	ids := map[int]string{}
	queries := 0
	for _, p := range d.allPanels() {
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("panel %d (%s) has no title", p.ID, p.Type)
		}
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if strings.TrimSpace(p.Description) == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: query %q has no expression", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: query refId %q is empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no queries")
	}
}

// Every metric a query names (panels and variables) is one the agent exports, by its exported
// name (a histogram through its _bucket, _sum or _count series), and every label a selector
// matches on is one of that metric's labels or instance/job from the scrape. The metrics the
// panels' descriptions name as their source are exported too.
func TestDashboardQueriesUseOnlyExportedMetrics(t *testing.T) {
	metrics := exportedMetrics(t)
	_, d := readDashboard(t)
	for _, p := range d.allPanels() {
		for _, name := range seriesName.FindAllString(p.Description, -1) {
			if _, _, ok := resolveSeries(metrics, name); !ok {
				t.Errorf("panel %q: its description names %s, which the agent does not export", p.Title, name)
			}
		}
	}
	for where, expr := range d.queries(t) {
		names := seriesName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no flocknetpol_ metric", where, expr)
		}
		for _, name := range names {
			if _, _, ok := resolveSeries(metrics, name); !ok {
				t.Errorf("%s: %s is not a metric the agent exports (exported: %v)", where, name, slices.Sorted(maps.Keys(metrics)))
			}
		}
		for _, sel := range seriesSelect.FindAllStringSubmatch(expr, -1) {
			m, extra, ok := resolveSeries(metrics, sel[1])
			if !ok || sel[2] == "" {
				continue
			}
			for _, lm := range labelMatcher.FindAllStringSubmatch(sel[2], -1) {
				if l := lm[1]; !slices.Contains(m.labels, l) && !slices.Contains(extra, l) && !slices.Contains(scrapeLabels, l) {
					t.Errorf("%s: %s has no label %s (its labels: %v; from the scrape: %v)", where, sel[1], l, m.labels, scrapeLabels)
				}
			}
		}
	}
}

// Every series a panel queries is filtered by the agent variable (instance=~"$instance"), and
// every series with a namespace label by the namespace variable (namespace=~"$namespace"), so
// that the variables narrow every panel they can.
func TestDashboardQueriesFollowTheVariables(t *testing.T) {
	metrics := exportedMetrics(t)
	_, d := readDashboard(t)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			for _, sel := range seriesSelect.FindAllStringSubmatch(tg.Expr, -1) {
				matchers := map[string]string{}
				for _, lm := range labelMatcher.FindAllStringSubmatch(sel[2], -1) {
					matchers[lm[1]] = lm[2] + `"` + lm[3] + `"`
				}
				if got := matchers["instance"]; got != `=~"$instance"` {
					t.Errorf("panel %q: %s%s does not select instance=~\"$instance\"", p.Title, sel[1], sel[2])
				}
				m, _, ok := resolveSeries(metrics, sel[1])
				if ok && slices.Contains(m.labels, "namespace") && matchers["namespace"] != `=~"$namespace"` {
					t.Errorf("panel %q: %s%s does not select namespace=~\"$namespace\"", p.Title, sel[1], sel[2])
				}
			}
		}
	}
}

// The dashboard defines the variables its queries use: a Prometheus datasource variable, and
// query variables for every $name a query or variable refers to (Grafana's own $__ variables
// aside). A query variable's definition, which the editor shows, is the query it runs.
func TestDashboardDefinesTheVariablesItUses(t *testing.T) {
	_, d := readDashboard(t)
	defined := map[string]dashVariable{}
	for _, v := range d.Templating.List {
		defined[v.Name] = v
	}
	ds, ok := defined["datasource"]
	if !ok || ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("want a variable datasource of type datasource and query prometheus, got %+v", ds)
	}
	for _, name := range []string{"instance", "namespace"} {
		if v, ok := defined[name]; !ok || v.Type != "query" {
			t.Errorf("want a query variable %s, got %+v", name, v)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && v.Definition != "" && v.Definition != v.queryText(t) {
			t.Errorf("variable %s: definition %q is not the query it runs, %q", v.Name, v.Definition, v.queryText(t))
		}
	}
	for where, expr := range d.queries(t) {
		for _, m := range variableUse.FindAllStringSubmatch(expr, -1) {
			name := m[1] + m[2]
			if strings.HasPrefix(name, "__") {
				continue
			}
			if _, ok := defined[name]; !ok {
				t.Errorf("%s uses $%s, which the dashboard does not define", where, name)
			}
		}
	}
}

// Every datasource a panel, query or variable names is the ${datasource} variable of type
// prometheus, never a uid from the Grafana the dashboard was exported from.
func TestDashboardDatasourcesAreTheVariable(t *testing.T) {
	b, _ := readDashboard(t)
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	refs := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "datasource" {
					refs++
					ref, ok := c.(map[string]any)
					if !ok || ref["uid"] != datasourceRef || ref["type"] != "prometheus" {
						t.Errorf("%s.datasource = %v, want {\"type\": \"prometheus\", \"uid\": %q}", path, c, datasourceRef)
					}
					continue
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				title := ""
				if m, ok := c.(map[string]any); ok {
					title, _ = m["title"].(string)
				}
				walk(path+"["+strings.TrimSpace(title+" #"+strconv.Itoa(i))+"]", c)
			}
		}
	}
	walk("$", doc)
	if refs == 0 {
		t.Error("no datasource references found")
	}
}

// The queries filter and group by the agent's own namespace and pod labels, which are also
// labels the Prometheus Operator puts on every target (the agent's namespace and pod). Without
// honorLabels the scraped ones are renamed exported_namespace and exported_pod, and every
// per-namespace panel would show the agent's namespace and pods. config/prometheus must keep
// the agent's labels.
func TestServiceMonitorKeepsTheAgentsLabels(t *testing.T) {
	root := repoRoot(t)
	objs := decodeAll(t, kustomize(t, root, "build", filepath.Join("config", "prometheus")))
	for _, o := range ofKind(objs, "ServiceMonitor") {
		var sm struct {
			Spec struct {
				Endpoints []struct {
					Port        string `json:"port"`
					HonorLabels bool   `json:"honorLabels"`
				} `json:"endpoints"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(o.raw, &sm); err != nil {
			t.Fatal(err)
		}
		for _, e := range sm.Spec.Endpoints {
			if !e.HonorLabels {
				t.Errorf("%s endpoint %q: honorLabels is not true; the metrics' namespace and pod labels "+
					"would be renamed exported_namespace and exported_pod, which %s does not query", o, e.Port, dashboardFile)
			}
		}
	}
}
