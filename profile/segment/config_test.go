package segment

import (
	"strings"
	"testing"
)

func TestConfigSetters(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	ok := func(set func(string) error, spec string) {
		t.Helper()
		if err := set(spec); err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
	}
	bad := func(set func(string) error, spec, want string) {
		t.Helper()
		before := c
		err := set(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: got %v; want an error containing %q", spec, err, want)
		}
		if c != before {
			t.Fatalf("%q: a refused setting changed the config", spec)
		}
	}
	ok(c.SetRFM, "r=7d,30d,90d,1w52w")
	ok(c.SetRFM, "f=2, 4, 8, 16")
	ok(c.SetRFM, "m=10,20,30,40.5")
	ok(c.SetLifecycle, "new=14d")
	ok(c.SetLifecycle, "active=3/90d")
	ok(c.SetLifecycle, "lapsing=45d")
	ok(c.SetLifecycle, "lost=2w52w")
	want := Config{
		Lifecycle: Lifecycle{New: 14 * day, ActiveWindow: 90 * day, ActiveMin: 3, Lapsing: 45 * day, Lost: 378 * day},
		RFM:       RFM{Recency: [4]int64{7 * day, 30 * day, 90 * day, 371 * day}, Frequency: [4]float64{2, 4, 8, 16}, Monetary: [4]float64{10, 20, 30, 40.5}},
	}
	if c != want {
		t.Fatalf("config = %+v; want %+v", c, want)
	}
	bad(c.SetRFM, "r=7d,30d,90d", "4 comma-separated")
	bad(c.SetRFM, "r=30d,7d,90d,1y", `unit s, m, h, d or w, found "y"`)
	bad(c.SetRFM, "r=30d,7d,90d,365d", "ascending")
	bad(c.SetRFM, "f=1,2,2,3", "ascending")
	bad(c.SetRFM, "m=1,x,2,3", `"x" is not a number`)
	bad(c.SetRFM, "q=1,2,3,4", "want r=|f=|m=")
	bad(c.SetLifecycle, "lost=30d", "more than lapsing")
	bad(c.SetLifecycle, "active=2", "active=<purchases>/<window>")
	bad(c.SetLifecycle, "active=0/30d", "want ≥ 1")
	bad(c.SetLifecycle, "dormant=30d", `unknown stage "dormant"`)
	bad(c.SetLifecycle, "new", "want new=")
	bad(c.SetLifecycle, "new=0s", "invalid lifecycle new")
	if _, err := Compile("identified", Config{}); err == nil {
		t.Fatal("Compile with the zero Config: no error")
	}
}
