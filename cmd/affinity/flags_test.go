package main

import (
	"flag"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"90s", 90 * time.Second, false},
		{"15m", 15 * time.Minute, false},
		{"12h", 12 * time.Hour, false},
		{"7d", 7 * day, false},
		{"2w", 14 * day, false},
		{"1d12h", day + 12*time.Hour, false},
		{"1w2d", 9 * day, false},
		{"", 0, true},
		{"7", 0, true},
		{"d", 0, true},
		{"-1h", 0, true},
		{"3x", 0, true},
		{"99999999999d", 0, true},
		{"1000000d", 0, true},
		{"1000000w", 0, true},
	} {
		got, err := parseDuration(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.bad)
		}
	}
	if s := formatDuration(7 * day); s != "7d" {
		t.Errorf("formatDuration(7d) = %q", s)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("AFFINITY_LISTEN", "127.0.0.1:9999")
	t.Setenv("AFFINITY_ACCEPT_WINDOW", "3d")
	t.Setenv("AFFINITY_SITE", "a,b=https://b.example")
	t.Setenv("AFFINITY_API_LISTEN", "127.0.0.1:7777")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c := addCommonFlags(fs)
	if err := parseFlags(fs, []string{"--api-listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:9999" || c.acceptWindow != 3*24*time.Hour || c.apiListen != "127.0.0.1:1" {
		t.Errorf("listen %q accept-window %v api-listen %q", c.listen, c.acceptWindow, c.apiListen)
	}
	if got := c.sites.String(); got != "a,b=https://b.example" {
		t.Errorf("sites %q", got)
	}

	t.Setenv("AFFINITY_ACCEPT_WINDOW", "soon")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	addCommonFlags(fs)
	if err := parseFlags(fs, nil); err == nil {
		t.Error("a bad AFFINITY_ACCEPT_WINDOW was taken")
	}
}
