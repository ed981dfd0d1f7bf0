package campaign_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/profile/profiletest"
)

// openHeads starts a stateless reader of topic on brokers that applies
// it to a new Heads (as `affinity collect` does), and returns it with
// the length of each campaign body its Applier was handed.
func openHeads(t *testing.T, brokers []string, topic string) (*campaign.Heads, *defs.Log, func() []int) {
	t.Helper()
	o := defs.DefaultOptions()
	o.Brokers, o.Topic = brokers, topic
	campaign.HeadsOptions(&o)
	l, err := defs.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	h := campaign.NewHeads()
	h.Follow(l)
	var (
		mu     sync.Mutex
		bodies []int
	)
	if _, err := l.Follow(func(r *defs.Record) (any, error) {
		if r.Kind != defs.KindCampaign {
			t.Errorf("the reader applied a record of kind %q; want campaigns only", r.Kind)
		}
		if r.Op == defs.OpPut {
			mu.Lock()
			bodies = append(bodies, len(r.Body))
			mu.Unlock()
		}
		return h.ApplyDefinition(r)
	}); err != nil {
		t.Fatal(err)
	}
	return h, l, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), bodies...)
	}
}

// openWriter returns a stateless Log of topic that writes records in
// chunks of chunk bytes (Submit), applying nothing.
func openWriter(t *testing.T, brokers []string, topic string, chunk int) *defs.Log {
	t.Helper()
	o := defs.DefaultOptions()
	o.Brokers, o.Topic, o.ChunkBytes = brokers, topic, chunk
	w, err := defs.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Start(func(*defs.Record) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	return w
}

// A collector's Heads, read from the definitions topic, answers every
// token as the Store that applied the same campaign record does —
// without holding a recipient: the body of a chunked record it was handed
// is the head's chunks only. An altered token, one of a campaign never on
// the topic and one of a deleted campaign are refused (404), once the
// reader has caught up.
func TestHeadsAnswerAsTheStore(t *testing.T) {
	brokers := profiletest.StartKafka(t)
	const topic = "defs-heads"
	_, ws := openShop(t, 60, 40, 80)
	c, rec := freeze(t, ws, 0)
	applied, err := ws.Apply(c.ID, rec)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 128
	if len(rec) < 4*chunk {
		t.Fatalf("BUG: a record of %d bytes would not travel in several chunks of %d", len(rec), chunk)
	}
	w := openWriter(t, brokers, topic, chunk)
	ctx := context.Background()
	// A segment's record on the topic too: the reader skips it.
	if _, err := w.Submit(ctx, &defs.Record{Kind: defs.KindSegment, Op: defs.OpPut, Site: "shop", Name: "mums", Body: []byte("count(view) >= 1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Submit(ctx, &defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: c.IDString(), Body: rec}); err != nil {
		t.Fatal(err)
	}

	h, l, bodies := openHeads(t, brokers, topic)
	profiletest.WaitUntil(t, "the reader caught up", l.CaughtUp)
	if got := bodies(); len(got) != 1 || got[0] >= len(rec)/2 || got[0] < chunk {
		t.Errorf("campaign bodies handed to the reader: %v bytes; want one, the head's chunks of the %d-byte record", got, len(rec))
	}

	toks := recipients(t, ws, applied)
	if len(toks) != int(applied.Recipients()) {
		t.Fatalf("%d recipients; want %d", len(toks), applied.Recipients())
	}
	check := func(what string, tok []byte, wantOK bool) {
		t.Helper()
		site, v, ok, err := h.EngagementSite(tok)
		wsite, wv, wok, werr := ws.EngagementSite(tok)
		if err != nil || werr != nil || ok != wantOK || ok != wok || site != wsite || v != wv {
			t.Errorf("%s %s: Heads %q %x %t %v; Store %q %x %t %v; want ok %t", what, tok, site, v, ok, err, wsite, wv, wok, werr, wantOK)
		}
	}
	for _, r := range toks {
		tok := campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)
		check("token of recipient "+strconv.Itoa(int(r.Number)), tok, true)
		bad := r.MAC
		bad[3] ^= 1
		check("altered token", campaign.AppendToken(nil, c.ID, r.Number, &bad), false)
		check("token of another number", campaign.AppendToken(nil, c.ID, r.Number+1000, &r.MAC), false)
	}
	check("token of no campaign", campaign.AppendToken(nil, c.ID+1, 0, &[10]byte{}), false)
	check("malformed token", []byte("not-a-token"), false)

	// The delete: the reader refuses the campaign's tokens once it read it.
	if _, err := w.Submit(ctx, &defs.Record{Kind: defs.KindCampaign, Op: defs.OpDelete, Site: "shop", Name: c.IDString()}); err != nil {
		t.Fatal(err)
	}
	var r campaign.Recipient
	for _, r = range toks {
		break
	}
	tok := campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)
	end := profiletest.TopicEnd(t, brokers, topic)
	profiletest.WaitUntil(t, "the reader applied the delete", func() bool { return l.Applied() >= end })
	if site, _, ok, err := h.EngagementSite(tok); ok || err != nil {
		t.Errorf("token of the deleted campaign: %q %t %v; want refused (404)", site, ok, err)
	}
}

// A record whose secret of a site's generation differs from the one the
// reader holds is refused, and the campaign it carries is not held.
func TestHeadsRefuseAnotherSecret(t *testing.T) {
	_, a := openShop(t, 20, 0, 10)
	_, b := openShop(t, 20, 0, 10)
	ca, ra := freeze(t, a, 0)
	cb, rb := freeze(t, b, 0) // the same id and generation, another secret
	h := campaign.NewHeads()
	if _, err := h.ApplyDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: ca.IDString(), Body: ra}); err != nil {
		t.Fatal(err)
	}
	_, err := h.ApplyDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: strconv.FormatUint(cb.ID+1, 10), Body: rb})
	if err == nil {
		t.Fatal("a record signed with another secret of the same generation: applied; want an error")
	}
	for _, tc := range []struct {
		site, name string
		body       []byte
	}{
		{"other", ca.IDString(), ra}, // of another site than its key
		{"shop", "x1", ra},           // not an id
		{"shop", "9", ra[:40]},       // truncated in its head
	} {
		if _, err := h.ApplyDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: tc.site, Name: tc.name, Body: tc.body}); err == nil {
			t.Errorf("record of site %q name %q, %d bytes: applied; want an error", tc.site, tc.name, len(tc.body))
		}
	}
}

// oneRecipient returns a Store holding a campaign frozen on it, its
// record and one of its recipients.
func oneRecipient(t *testing.T) (*profiletest.Env, *campaign.Campaign, []byte, campaign.Recipient) {
	t.Helper()
	e, s := openShop(t, 20, 0, 10)
	c, rec := freeze(t, s, 0)
	if _, err := s.Apply(c.ID, rec); err != nil {
		t.Fatal(err)
	}
	for _, r := range recipients(t, s, c) {
		return e, c, rec, r
	}
	t.Fatal("the campaign has no recipient")
	return nil, nil, nil, campaign.Recipient{}
}

// topicAt is a definitions consumer frozen at one state: Heads's
// decisions on each, where real Kafka cannot be held still.
type topicAt struct {
	mu     sync.Mutex // the collector's handlers read it
	state  topicState
	probes int // End calls
}

// topicState is what a topicAt answers.
type topicState struct {
	caughtUp     bool
	applied, end int64
	endErr       error
}

func newTopicAt(st topicState) *topicAt { return &topicAt{state: st} }

func (f *topicAt) CaughtUp() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.caughtUp
}

func (f *topicAt) Applied() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.applied
}

func (f *topicAt) End(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.state.end, f.state.endErr
}

func (f *topicAt) set(st topicState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
}

func (f *topicAt) endCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes
}

// What Heads answers a token by what its consumer has read: 503 (an
// error) until it caught up, and for a campaign it does not hold while
// it is behind the topic's end; 404 (not ok) once it is not; a token of
// a deleted campaign 404 without asking Kafka.
func TestHeadsByConsumerState(t *testing.T) {
	_, c, rec, r := oneRecipient(t)
	held := campaign.AppendToken(nil, c.ID, r.Number, &r.MAC)
	unknown := campaign.AppendToken(nil, c.ID+1, r.Number, &r.MAC)
	deleted := campaign.AppendToken(nil, c.ID+2, r.Number, &r.MAC)
	for _, tc := range []struct {
		name    string
		topic   topicState
		tok     []byte
		ok, err bool
		probes  int
	}{
		{"held, caught up", topicState{caughtUp: true, applied: 9, end: 9}, held, true, false, 0},
		{"held, before the catch-up", topicState{applied: 3, end: 9}, held, false, true, 0},
		{"unknown, before the catch-up", topicState{applied: 3, end: 9}, unknown, false, true, 0},
		{"unknown, behind the end", topicState{caughtUp: true, applied: 8, end: 9}, unknown, false, true, 1},
		{"unknown, at the end", topicState{caughtUp: true, applied: 9, end: 9}, unknown, false, false, 1},
		{"unknown, the end unreadable", topicState{caughtUp: true, applied: 9, endErr: errors.New("broker down")}, unknown, false, true, 1},
		{"deleted, behind the end", topicState{caughtUp: true, applied: 8, end: 9}, deleted, false, false, 0},
		{"malformed, before the catch-up", topicState{}, []byte("AQ"), false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := campaign.NewHeads()
			topic := newTopicAt(tc.topic)
			h.Follow(topic)
			for _, r := range []*defs.Record{
				{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: c.IDString(), Body: rec},
				{Kind: defs.KindCampaign, Op: defs.OpDelete, Site: "shop", Name: strconv.FormatUint(c.ID+2, 10)},
			} {
				if _, err := h.ApplyDefinition(r); err != nil {
					t.Fatal(err)
				}
			}
			site, _, ok, err := h.EngagementSite(tc.tok)
			if ok != tc.ok || (err != nil) != tc.err || ok && site != "shop" || topic.endCalls() != tc.probes {
				t.Errorf("got %q %t %v after %d probes of the end; want ok %t, error %t, %d probes", site, ok, err, topic.endCalls(), tc.ok, tc.err, tc.probes)
			}
		})
	}
}

// The collector's engagement endpoints over Heads, on a real collector
// and embedded log: a token is logged (200, one record) once the reader
// caught up; before, or while it is behind a campaign it does not hold,
// the answer is 503 with Retry-After and the reason, and nothing is
// logged; a token of no campaign once caught up is 404.
func TestHeadsAtTheCollector(t *testing.T) {
	e, c, rec, r := oneRecipient(t)
	held := string(campaign.AppendToken(nil, c.ID, r.Number, &r.MAC))
	unknown := string(campaign.AppendToken(nil, c.ID+1, r.Number, &r.MAC))

	topic := newTopicAt(topicState{})
	h := campaign.NewHeads()
	h.Follow(topic)
	if _, err := h.ApplyDefinition(&defs.Record{Kind: defs.KindCampaign, Op: defs.OpPut, Site: "shop", Name: c.IDString(), Body: rec}); err != nil {
		t.Fatal(err)
	}
	base := startCollectorOn(t, e, h, "shop")
	logged := func() (n int64) {
		for p := range e.Log.Partitions() {
			_, next, err := e.Log.Offsets(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			n += next
		}
		return n
	}
	for _, tc := range []struct {
		name   string
		state  topicState
		tok    string
		status int
		reason string // X-Affinity-Reason; "" for a 200
		logs   int64
	}{
		{"before the catch-up", topicState{applied: 2, end: 5}, held, 503, "token_unchecked", 0},
		{"caught up", topicState{caughtUp: true, applied: 5, end: 5}, held, 200, "", 1},
		{"unknown, behind", topicState{caughtUp: true, applied: 5, end: 6}, unknown, 503, "token_unchecked", 0},
		{"unknown, at the end", topicState{caughtUp: true, applied: 6, end: 6}, unknown, 404, "", 0}, // the pixel's GIF still
	} {
		topic.set(tc.state)
		before := logged()
		resp, err := http.Get(base + "/e/o/" + tc.tok + ".gif")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		reason, retry := resp.Header.Get("X-Affinity-Reason"), resp.Header.Get("Retry-After")
		if resp.StatusCode != tc.status || reason != tc.reason || (tc.status == 503) != (retry != "") || logged()-before != tc.logs {
			t.Errorf("%s: %d reason %q Retry-After %q, %d records logged; want %d %q, %d", tc.name, resp.StatusCode, reason, retry, logged()-before, tc.status, tc.reason, tc.logs)
		}
		if tc.status == 503 && !strings.Contains(string(body), tc.tok) {
			t.Errorf("%s: body %q; want it to name the token", tc.name, body)
		}
	}
}
