package membership_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/tracker/event"
)

// receiver is a webhook endpoint that fails the first failures requests.
type receiver struct {
	t        *testing.T
	secret   string
	mu       sync.Mutex
	failures int
	calls    int
	badSigs  int
	seen     map[string]int // visitor/change → deliveries
	ids      []string       // delivered
	failed   []string       // refused
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.calls++
	if r.Header.Get(membership.SignatureHeader) != membership.Sign(rc.secret, body) {
		rc.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.failures > 0 {
		rc.failures--
		rc.failed = append(rc.failed, r.Header.Get(membership.DeliveryHeader))
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var d struct {
		Delivery string `json:"delivery"`
		Changes  []struct {
			Visitor, Change, Seq string
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		rc.t.Errorf("webhook body does not parse: %s: %s", err, body)
	}
	if d.Delivery != r.Header.Get(membership.DeliveryHeader) || d.Delivery == "" {
		rc.t.Errorf("delivery id: header %q, body %q", r.Header.Get(membership.DeliveryHeader), d.Delivery)
	}
	rc.ids = append(rc.ids, r.Header.Get(membership.DeliveryHeader))
	for _, c := range d.Changes {
		rc.seen[c.Visitor+"/"+c.Change]++
	}
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.seen)
}

// Deliveries are signed, retried after the receiver fails twice, and
// resume after a restart from the stored position.
func TestWebhookDelivery(t *testing.T) {
	rc := &receiver{t: t, secret: "s3cret", failures: 2, seen: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	dir := t.TempDir()
	clk := &profiletest.Clock{}
	clk.Set(t0)
	tune := func(o *membership.Options) {
		o.WebhookMinBackoff, o.WebhookMaxBackoff, o.WebhookBatch = 10*time.Millisecond, 50*time.Millisecond, 7
	}
	e := openEnv(t, dir, clk, tune)
	e.put(t, "shop", "viewers", `count(view) >= 1`)
	if err := e.Segments.SetWebhook("shop", "viewers", srv.URL+"/hook", rc.secret); err != nil {
		t.Fatal(err)
	}
	if err := e.Segments.SetWebhook("shop", "viewers", "ftp://x", rc.secret); err == nil {
		t.Error("SetWebhook accepted an ftp URL")
	}
	var bs []*event.Batch
	for i := range 20 {
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, lego)))
	}
	e.Send(t, bs...)
	profiletest.WaitUntil(t, "20 deliveries", func() bool { return rc.count() == 20 })
	w, _, _ := e.Segments.GetWebhook("shop", "viewers")
	profiletest.WaitUntil(t, "the position to be stored", func() bool {
		w, _, _ = e.Segments.GetWebhook("shop", "viewers")
		return w.Delivered == e.Segments.LastSeq()
	})
	e.Close(t)

	// Restart with the receiver down; events arrive; it recovers.
	rc.mu.Lock()
	rc.failures = 3
	rc.mu.Unlock()
	e = openEnv(t, dir, clk, tune)
	bs = bs[:0]
	for i := 20; i < 35; i++ {
		bs = append(bs, profiletest.Batch("shop", profiletest.Visitor(i), profiletest.Event(event.TypeView, t0, lego)))
	}
	e.Send(t, bs...)
	profiletest.WaitUntil(t, "35 deliveries", func() bool { return rc.count() == 35 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.badSigs != 0 {
		t.Errorf("bad signatures: %d", rc.badSigs)
	}
	for k, n := range rc.seen {
		if n != 1 {
			t.Errorf("%s delivered %d times; want once (acknowledged batches are not resent)", k, n)
		}
	}
	// Each refused delivery is retried with the same id and records.
	delivered := map[string]bool{}
	for _, id := range rc.ids {
		delivered[id] = true
	}
	for _, id := range rc.failed {
		if !delivered[id] {
			t.Errorf("refused delivery %s never retried under its id (delivered: %v)", id, rc.ids)
		}
	}
	if rc.calls < 5+3+2 {
		t.Errorf("calls: got %d; want ≥ 10 (3+3 batches, 5 failures)", rc.calls)
	}
}
