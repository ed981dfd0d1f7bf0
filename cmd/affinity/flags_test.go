package main

import (
	"flag"
	"testing"
	"time"
)

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("AFFINITY_LISTEN", "127.0.0.1:9999")
	t.Setenv("AFFINITY_ACCEPT_WINDOW", "3d")
	t.Setenv("AFFINITY_SITE", "a,b=https://b.example")
	t.Setenv("AFFINITY_API_LISTEN", "127.0.0.1:7777")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	n, c := addNodeFlags(fs), addCollectorFlags(fs)
	if err := parseFlags(fs, []string{"--api-listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:9999" || c.acceptWindow != 3*24*time.Hour || n.apiListen != "127.0.0.1:1" {
		t.Errorf("listen %q accept-window %v api-listen %q", c.listen, c.acceptWindow, n.apiListen)
	}
	if got := c.sites.String(); got != "a,b=https://b.example" {
		t.Errorf("sites %q", got)
	}

	t.Setenv("AFFINITY_ACCEPT_WINDOW", "soon")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	addCollectorFlags(fs)
	if err := parseFlags(fs, nil); err == nil {
		t.Error("a bad AFFINITY_ACCEPT_WINDOW was taken")
	}
}
