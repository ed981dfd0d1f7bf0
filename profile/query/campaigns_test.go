package query_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// campaignEnv has segment "mums" (visitors 0..39 who viewed; every 10th
// without an email) and list "crm" (emails u30..u59).
func campaignEnv(t *testing.T) *segEnv {
	t.Helper()
	e := newSegEnv(t)
	var bs []*event.Batch
	for i := 0; i < 40; i++ {
		evs := []event.Event{profiletest.View(t0, nutrilon)}
		if i%10 != 9 {
			evs = append(evs, profiletest.Identify(t0, fmt.Sprintf("u%d@x.io", i)))
		}
		bs = append(bs, profiletest.Batch(site, profiletest.Visitor(i), evs...))
	}
	e.Send(t, bs...)
	if code, body := e.putSegment(t, "mums", "count(view) >= 1"); code != 201 {
		t.Fatalf("put segment: %d %s", code, body)
	}
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := 30; i < 60; i++ {
		fmt.Fprintf(&csv, "u%d@x.io\n", i)
	}
	if code, body := e.putList(t, "crm", "text/csv", csv.String()); code != 201 {
		t.Fatalf("put list: %d %s", code, body)
	}
	return e
}

func TestCampaignsAPI(t *testing.T) {
	e := campaignEnv(t)
	f := func(method, path, body string, code int, want string) string {
		t.Helper()
		gotCode, got := e.Do(t, method, path, "application/json", []byte(body), true)
		if gotCode != code || !strings.Contains(got, want) {
			t.Fatalf("%s %s: got %d %q; want %d containing %q", method, path, gotCode, got, code, want)
		}
		return got
	}
	f("GET", "/v1/campaigns/shop", "", 200, `{"site":"shop","campaigns":[]}`)
	// Every bad field: 400 naming it.
	f("POST", "/v1/campaigns/shop", `{"name":"p","arms":[{"name":"a","segment":"mums"}],"holdout":60,"window":"7d"}`, 400, `invalid holdout 60: want a percentage from 0 to 50`)
	f("POST", "/v1/campaigns/shop", `{"name":"p","arms":[{"name":"a","segment":"mums"}],"window":"7x"}`, 400, `invalid window "7x"`)
	f("POST", "/v1/campaigns/shop", `{"name":"p","arms":[{"name":"a","segment":"nope"}],"window":"7d"}`, 400, `invalid arm "a": no segment "nope" of site "shop"`)
	f("POST", "/v1/campaigns/shop", `{"name":"p",`, 400, `invalid campaign JSON`)
	f("GET", "/v1/campaigns/shop/x", "", 400, `invalid campaign id "x"`)
	f("GET", "/v1/campaigns/shop/9", "", 404, `no campaign 9 of site "shop"`)
	f("PUT", "/v1/campaigns/shop", "", 405, "allowed: GET, HEAD, POST")

	created := f("POST", "/v1/campaigns/shop", `{"name":"nutrilon-promo","arms":[{"name":"behaviour","segment":"mums","variants":["10%","20%"]},{"name":"crm","list":"crm"}],"holdout":10,"window":"7d"}`, 201,
		`{"id":"1","site":"shop","name":"nutrilon-promo","sent":"2026-`)
	var c struct {
		Recipients int `json:"recipients"`
		Arms       []struct {
			Audience         struct{ Members, NoEmail, InEarlierArm int } `json:"audience"`
			Treated, Control int
		}
	}
	if err := json.Unmarshal([]byte(created), &c); err != nil {
		t.Fatal(err)
	}
	// mums: 40 visitors, 4 without email; crm: 30 emails, u30..u38 in mums.
	if c.Recipients != 36+21 || c.Arms[0].Audience.Members != 40 || c.Arms[1].Treated+c.Arms[1].Control != 21 {
		t.Errorf("created %s", created)
	}
	f("GET", "/v1/campaigns/shop/1", "", 200, `"name":"nutrilon-promo"`)
	f("GET", "/v1/campaigns/shop", "", 200, `"campaigns":[{"id":"1"`)
	f("GET", "/v1/campaigns/other/1", "", 404, `no campaign 1 of site "other"`)

	// Recipients: treated by default, control on request, per arm.
	csv := f("GET", "/v1/campaigns/shop/1/recipients?format=csv", "", 200, "email,arm,variant,token\n")
	rows := strings.Split(strings.TrimSpace(csv), "\n")[1:]
	ctl := f("GET", "/v1/campaigns/shop/1/recipients?format=ndjson&group=control", "", 200, `"token":"`)
	ctlRows := strings.Split(strings.TrimSpace(ctl), "\n")
	if len(rows) != c.Arms[0].Treated+c.Arms[1].Treated || len(ctlRows) != c.Arms[0].Control+c.Arms[1].Control {
		t.Errorf("%d treated rows, %d control rows; want %+v", len(rows), len(ctlRows), c.Arms)
	}
	for _, r := range rows {
		fs := strings.Split(r, ",")
		if len(fs) != 4 || fs[1] == "behaviour" && fs[2] != "10%" && fs[2] != "20%" || fs[1] == "crm" && fs[2] != "" || len(fs[3]) < 16 {
			t.Errorf("row %q", r)
		}
	}
	for _, r := range ctlRows {
		var row struct{ Email, Arm, Variant, Token string }
		if err := json.Unmarshal([]byte(r), &row); err != nil || row.Variant != "" || row.Token == "" {
			t.Errorf("control row %q: %v", r, err)
		}
	}
	crmOnly := f("GET", "/v1/campaigns/shop/1/recipients?format=csv&arm=crm", "", 200, "email,arm,variant,token\n")
	if n := strings.Count(crmOnly, "\n") - 1; n != c.Arms[1].Treated {
		t.Errorf("%d crm rows; want %d", n, c.Arms[1].Treated)
	}
	f("GET", "/v1/campaigns/shop/1/recipients?format=csv&arm=nope", "", 400, `invalid arm="nope"`)
	f("GET", "/v1/campaigns/shop/1/recipients?format=csv&group=x", "", 400, `invalid group="x"`)
	f("GET", "/v1/campaigns/shop/1/recipients", "", 400, `invalid format="": want csv or ndjson`)

	// Report: sizes now, nothing opened yet.
	rep := f("GET", "/v1/campaigns/shop/1/report", "", 200, `"state":"live","holdout":10,"engagement":"opens and clicks unique per recipient; converted: `)
	var doc struct {
		Arms []struct {
			Name    string
			Treated struct{ Recipients int }
			Control struct{ Recipients int }
			Uplift  map[string]any
		}
	}
	if err := json.Unmarshal([]byte(rep), &doc); err != nil || len(doc.Arms) != 2 || doc.Arms[0].Treated.Recipients != c.Arms[0].Treated || doc.Arms[1].Control.Recipients != c.Arms[1].Control {
		t.Errorf("report %s: %v", rep, err)
	}
	f("GET", "/v1/campaigns/shop/1/report?format=csv", "", 200, "arm,group,variant,recipients,opened,clicked,converted,orders,revenue,open_rate,click_rate,conversion_rate,revenue_per_recipient\nbehaviour,treated,,")
	f("GET", "/v1/campaigns/shop/1/report?format=xml", "", 400, `invalid format="xml"`)
	f("GET", "/v1/campaigns/shop/1/nope", "", 404, "")

	// The audience stays frozen when the segment changes.
	e.Send(t, profiletest.Batch(site, profiletest.Visitor(99), profiletest.View(t0, nutrilon), profiletest.Identify(t0, "late@x.io")))
	if again := f("GET", "/v1/campaigns/shop/1/recipients?format=csv", "", 200, ""); again != csv {
		t.Errorf("recipients changed after a new member")
	}
	f("DELETE", "/v1/campaigns/shop/1", "", 204, "")
	f("DELETE", "/v1/campaigns/shop/1", "", 404, "")
	f("GET", "/v1/campaigns/shop/1/report", "", 404, "")
	if code, _ := e.Do(t, http.MethodGet, "/v1/campaigns/shop", "", nil, false); code != 401 {
		t.Errorf("campaigns without the token: %d; want 401", code)
	}
}
