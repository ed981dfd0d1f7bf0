package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/importer"
)

// The crash test of the orders import (issue 12): `affinity serve` killed
// with SIGKILL while its builder applies a large upload, restarted, and
// sent the same upload again, ends with every person's orders and a
// segment over purchases exactly as the upload itself says.

// importPerson is what an upload says of one person, summed here by brute
// force from the upload's own lines.
type importPerson struct {
	customer, email string
	orders          int
	revenue         float64
}

// crashUpload returns an NDJSON upload of n orders: person p has 1 + p%6
// of them (so a count rule splits the persons), every other person is
// named by customer id, the others by email only; totals are multiples of
// 0.5, so every sum is exact in a float64.
func crashUpload(n int) []byte {
	var b bytes.Buffer
	for i, p := 0, 0; i < n; p++ {
		for k := 0; k < 1+p%6 && i < n; k, i = k+1, i+1 {
			items := 1 + i%3
			fmt.Fprintf(&b, `{"order_id":"K-%d","email":"p%d@example.com"`, i, p)
			if p%2 == 0 {
				fmt.Fprintf(&b, `,"customer_id":"C%d"`, p)
			}
			fmt.Fprintf(&b, `,"ts":%d,"total":%g,"items":[`, 1767225600000-int64(i%900)*86_400_000, float64(items)*7.5+float64(i%4)*0.5)
			for j := range items {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"id":"p%d","qty":1,"price":7.5}`, (i+j)%300)
			}
			b.WriteString("]}\n")
		}
	}
	return b.Bytes()
}

// uploadPersons reads an NDJSON upload back, by person visitor.
func uploadPersons(t *testing.T, site string, body []byte) map[string]*importPerson {
	t.Helper()
	persons := map[string]*importPerson{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var o struct {
			Customer string  `json:"customer_id"`
			Email    string  `json:"email"`
			Total    float64 `json:"total"`
		}
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("upload line %q: %v", sc.Text(), err)
		}
		v := importer.Visitor(site, o.Customer, o.Email).String()
		p := persons[v]
		if p == nil {
			p = &importPerson{customer: o.Customer, email: o.Email}
			persons[v] = p
		}
		p.orders++
		p.revenue += o.Total
	}
	return persons
}

// importProgress is GET /v1/import/{site}/orders/{id}.
type importProgress struct {
	Done       bool `json:"done"`
	Partitions []struct {
		End       int64 `json:"end"`
		Committed int64 `json:"committed"`
	} `json:"partitions"`
}

func getImportProgress(t *testing.T, api, site, id string) importProgress {
	t.Helper()
	code, body := apiDo(t, http.MethodGet, api+"/v1/import/"+site+"/orders/"+id, "", nil)
	var pr importProgress
	if code != http.StatusOK || json.Unmarshal([]byte(body), &pr) != nil {
		t.Fatalf("import progress: %d %s", code, body)
	}
	return pr
}

// postImport posts the upload and returns its import id.
func postImport(t *testing.T, api, site string, body []byte) string {
	t.Helper()
	code, resp := apiDo(t, http.MethodPost, api+"/v1/import/"+site+"/orders", "application/x-ndjson", body)
	var r struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal([]byte(resp), &r) != nil || r.ID == "" {
		t.Fatalf("POST import: %d %s", code, resp)
	}
	return r.ID
}

// metricValue returns the value of the metric line name in /metrics.
func metricValue(t *testing.T, api, name string) float64 {
	t.Helper()
	code, body := apiDo(t, http.MethodGet, api+"/metrics", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// killPartlyApplied polls the progress of import id until the builder has
// applied part of it, then kills p; false if the upload was done first.
func killPartlyApplied(t *testing.T, p *proc, site, id string) bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pr := getImportProgress(t, p.api, site, id)
		var applied, end int64
		for _, pp := range pr.Partitions {
			applied += pp.Committed
			end += pp.End
		}
		if pr.Done {
			t.Logf("the builder applied the whole upload (%d records) before the test saw it part way", end)
			return false
		}
		if applied > 0 {
			p.stop(t, syscall.SIGKILL)
			t.Logf("SIGKILL at %d of %d log records applied", applied, end)
			return true
		}
		if time.Now().After(deadline) {
			t.Fatalf("the builder applied nothing of the upload within 60 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestServeImportSIGKILLReupload kills `affinity serve` while its builder
// is part way through a 100k-order upload, restarts it on the same data
// and posts the same file again: the restarted builder applies the rest of
// the first upload from its committed offset and drops every order of the
// second as already applied, so each person's order count and revenue and
// the members of a segment over purchases are those the file says.
func TestServeImportSIGKILLReupload(t *testing.T) {
	const (
		site   = "shop"
		rule   = `count(purchase) >= 4`
		minOrd = 4
	)
	// A machine fast enough to apply the whole upload before the test
	// sees it part way gets a larger one.
	var (
		orders int
		body   []byte
		data   string
		id     string
		p      *proc
	)
	for _, n := range []int{100_000, 400_000} {
		orders, body, data = n, crashUpload(n), t.TempDir()
		p = startAffinity(t, "serve", "--data", data, "--site", site)
		if code, resp := apiDo(t, http.MethodPut, p.api+"/v1/segments/"+site+"/regulars", "text/plain", []byte(rule)); code != http.StatusCreated {
			t.Fatalf("PUT segment: %d %s", code, resp)
		}
		id = postImport(t, p.api, site, body)
		if killPartlyApplied(t, p, site, id) {
			break
		}
		if n == 400_000 {
			t.Fatalf("the builder applied all of a %d-order upload before the test saw it part way: the kill cannot land mid-import", n)
		}
		p.stop(t, syscall.SIGKILL)
	}
	want := uploadPersons(t, site, body)

	p = startAffinity(t, "serve", "--data", data, "--site", site)
	id2 := postImport(t, p.api, site, body)
	deadline := time.Now().Add(5 * time.Minute)
	for !getImportProgress(t, p.api, site, id2).Done {
		if time.Now().After(deadline) {
			t.Fatalf("the second upload was not applied within 5 min")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !getImportProgress(t, p.api, site, id).Done {
		t.Errorf("the second upload is applied but the first, below it in the log, is not")
	}
	// The restarted process applied the rest of the first upload, then
	// dropped every order of the second: by event id (sent within the
	// dedup window) or by order id, each one once, nothing of the first.
	if hits := metricValue(t, p.api, "affinity_builder_dedup_hits_total") + metricValue(t, p.api, "affinity_builder_order_dedup_hits_total"); hits != float64(orders) {
		t.Errorf("dedup hits after the restart: %v; want %d (every order of the second upload, none of the first)", hits, orders)
	}

	// Every person's orders, as the file says.
	type got struct {
		Orders struct {
			Count   int     `json:"count"`
			Revenue float64 `json:"revenue"`
		} `json:"orders"`
		Email    string `json:"email"`
		Customer string `json:"customer_id"`
	}
	var (
		mu     sync.Mutex
		wrong  []string
		wg     sync.WaitGroup
		visits = make(chan string)
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range visits {
				w := want[v]
				code, resp := apiDo(t, http.MethodGet, p.api+"/v1/visitors/"+site+"/"+v, "", nil)
				var g got
				if code != http.StatusOK || json.Unmarshal([]byte(resp), &g) != nil ||
					g.Orders.Count != w.orders || g.Orders.Revenue != w.revenue || g.Email != w.email || g.Customer != w.customer {
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("person %s (%s %s): %d %s; want %d orders, revenue %v", v, w.customer, w.email, code, strings.TrimSpace(resp), w.orders, w.revenue))
					mu.Unlock()
				}
			}
		}()
	}
	for v := range want {
		visits <- v
	}
	close(visits)
	wg.Wait()
	if len(wrong) > 0 {
		t.Errorf("%d of %d persons differ from the upload, e.g.:\n%s", len(wrong), len(want), strings.Join(wrong[:min(5, len(wrong))], "\n"))
	}

	// The segment's members are exactly the persons with minOrd orders or more.
	code, resp := apiDo(t, http.MethodGet, p.api+"/v1/segments/"+site+"/regulars/members?format=ndjson&facts=false", "", nil)
	if code != http.StatusOK {
		t.Fatalf("members: %d %s", code, resp)
	}
	members := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(resp))
	for sc.Scan() {
		var row struct{ Visitor string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil || row.Visitor == "" {
			t.Fatalf("members row %q: %v", sc.Text(), err)
		}
		if members[row.Visitor] {
			t.Errorf("member %s listed twice", row.Visitor)
		}
		members[row.Visitor] = true
	}
	wantMembers := 0
	for v, w := range want {
		if in := w.orders >= minOrd; in != members[v] {
			t.Errorf("person %s with %d orders: member %v; want %v", v, w.orders, members[v], in)
		} else if in {
			wantMembers++
		}
	}
	if len(members) != wantMembers {
		t.Errorf("%d members; want %d", len(members), wantMembers)
	}
	if !t.Failed() {
		t.Logf("%d persons, %d orders; %d in %q, all as the file says", len(want), orders, wantMembers, rule)
	}
}
