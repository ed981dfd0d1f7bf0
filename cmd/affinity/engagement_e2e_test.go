package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/affinityhq/affinity/profile/profiletest"
)

// TestClusterCollectorEngagement: campaign opens and clicks sent to
// `affinity collect` processes of a build group — one running before the
// campaign is created, one started after it, both reading the
// definitions topic — are logged, applied by the builders and counted
// once in the report every member gives. A forged or altered token is
// 404 and logs nothing; a click's redirect obeys --redirect-origin; once
// the campaign's delete is read, its tokens are 404.
func TestClusterCollectorEngagement(t *testing.T) {
	const (
		parts  = 4
		site   = "e2e"
		topic  = "events"
		origin = "https://shop.example"
	)
	brokers := profiletest.StartKafka(t, kfake.SeedTopics(parts, topic))
	kafka := strings.Join(brokers, ",")
	collect := func() *proc {
		return startAffinity(t, "collect", "--data", t.TempDir(), "--kafka", kafka, "--topic", topic, "--site", site, "--redirect-origin", site+"="+origin)
	}
	early := collect()
	// Small chunks: the campaign's record travels in many, and the
	// collectors keep the head's only.
	common := []string{"build", "--kafka", kafka, "--topic", topic, "--changes-topic", "", "--defs-chunk-bytes", "256",
		"--group-session-timeout", "6s", "--group-rebalance-timeout", "6s"}
	a := startAffinity(t, append(common, "--data", t.TempDir())...)
	b := startAffinity(t, append(common, "--data", t.TempDir())...)
	waitOwned(t, "two members share", []*proc{a, b}, []string{"*", "*"})

	var list strings.Builder
	list.WriteString("email\n")
	for i := range 40 {
		fmt.Fprintf(&list, "r%d@example.com\n", i)
	}
	if code, body := apiDo(t, "PUT", a.api+"/v1/lists/e2e/crm", "text/csv", []byte(list.String())); code != http.StatusCreated {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := apiDo(t, "POST", a.api+"/v1/campaigns/e2e", "application/json", []byte(`{"name":"spring","arms":[{"name":"crm","list":"crm"}],"holdout":10,"window":"7d"}`)); code != http.StatusCreated {
		t.Fatalf("campaign: %d %s", code, body)
	}
	code, body := apiDo(t, "GET", a.api+"/v1/campaigns/e2e/1/recipients?format=csv", "", nil)
	if code != http.StatusOK {
		t.Fatalf("recipients: %d %s", code, body)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) < 21 || rows[0][3] != "token" {
		t.Fatalf("recipients: %v %q; want a header and at least 20 rows with a token", err, body)
	}
	var toks []string
	for _, r := range rows[1:] {
		toks = append(toks, r[3])
	}
	late := collect()

	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (int, http.Header, string) {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %s", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	// engage asks until the collector has read far enough to tell (503:
	// nothing logged), and wants the answer want.
	engage := func(u string, want int) http.Header {
		t.Helper()
		var (
			code int
			h    http.Header
			body string
		)
		waitUntil(t, "an answer other than 503 to "+u, func() bool {
			code, h, body = get(u)
			return code != http.StatusServiceUnavailable
		})
		if code != want {
			t.Fatalf("GET %s: %d %s; want %d", u, code, body, want)
		}
		return h
	}

	// Opens of recipients 0..9 (twice each, through both collectors);
	// clicks of 5..14, through the late one, which read the campaign from
	// the topic's start.
	opened, clicked := map[int]bool{}, map[int]bool{}
	for i := range 10 {
		for _, p := range []*proc{early, late} {
			engage(p.collector+"/e/o/"+toks[i]+".gif", http.StatusOK)
		}
		opened[i] = true
	}
	for i := 5; i < 15; i++ {
		to := origin + "/p/" + fmt.Sprint(i)
		h := engage(late.collector+"/e/c/"+toks[i]+"?to="+url.QueryEscape(to), http.StatusFound)
		if want := to + "?aff_t=" + toks[i]; h.Get("Location") != want {
			t.Errorf("click %d: Location %q; want %q", i, h.Get("Location"), want)
		}
		opened[i], clicked[i] = true, true
	}

	// Refused: nothing reaches the events topic.
	before := profiletest.TopicEnds(t, brokers, topic)
	forged := []byte(toks[0])
	forged[len(forged)-2] ^= 1 // an altered MAC
	for _, u := range []string{
		early.collector + "/e/o/" + string(forged) + ".gif",
		late.collector + "/e/c/" + string(forged) + "?to=" + url.QueryEscape(origin+"/"),
		early.collector + "/e/o/AQkAAAAAAAAAAAAAAA.gif", // campaign 9: none
	} {
		engage(u, http.StatusNotFound)
	}
	if code, _, body := get(early.collector + "/e/c/" + toks[20] + "?to=" + url.QueryEscape("https://evil.example/")); code != http.StatusBadRequest || !strings.Contains(body, "evil.example") {
		t.Errorf("click to another origin: %d %s; want 400 naming it", code, body)
	}
	if after := profiletest.TopicEnds(t, brokers, topic); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused requests: the events topic went from %v to %v; want nothing logged", before, after)
	}

	type group struct{ Recipients, Opened, Clicked int }
	report := func(p *proc) (group, string) {
		code, body := apiDo(t, "GET", p.api+"/v1/campaigns/e2e/1/report", "", nil)
		var r struct{ Arms []struct{ Treated group } }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil || len(r.Arms) != 1 {
			return group{}, fmt.Sprint(code, " ", body)
		}
		return r.Arms[0].Treated, body
	}
	want := group{Recipients: len(toks), Opened: len(opened), Clicked: len(clicked)}
	var got [2]group
	waitUntil(t, "both members' reports counting every open and click once", func() bool {
		got[0], _ = report(a)
		got[1], _ = report(b)
		return got[0] == want && got[1] == want
	})
	for _, p := range []*proc{early, late} {
		if code, body := apiDo(t, "GET", p.api+"/healthz", "", nil); code != http.StatusOK || !strings.Contains(body, "caught_up=true campaigns=1") {
			t.Errorf("collector /healthz: %d %q; want its reader caught up holding 1 campaign", code, body)
		}
	}

	// The delete: once each collector read it, the campaign's tokens are 404.
	if code, body := apiDo(t, "DELETE", b.api+"/v1/campaigns/e2e/1", "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	for _, p := range []*proc{early, late} {
		waitUntil(t, "the deleted campaign's token refused", func() bool {
			code, _, _ := get(p.collector + "/e/o/" + toks[1] + ".gif")
			return code == http.StatusNotFound
		})
	}
}
