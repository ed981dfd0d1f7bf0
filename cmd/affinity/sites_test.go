package main

import (
	"flag"
	"strings"
	"testing"
)

func TestSiteRateFlag(t *testing.T) {
	parse := func(args ...string) (*collectorFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c := addCollectorFlags(fs)
		return c, parseFlags(fs, args)
	}
	t.Setenv("AFFINITY_SITE_RATE", "shop=50:200")
	c, err := parse("--site", "demo,shop")
	if err != nil {
		t.Fatal(err)
	}
	sites, err := c.parseSites()
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 2 || sites[0].Rate != 0 || sites[1].Rate != 50 || sites[1].Burst != 200 {
		t.Fatalf("sites %+v; want demo unlimited, shop 50/s burst 200", sites)
	}

	for _, c := range []struct{ arg, want string }{
		{"shop=lots", `cannot parse --site-rate "shop=lots": rate "lots" is not a positive number; want KEY=N[:BURST], N events/s, BURST events`},
		{"shop=5:-1", `cannot parse --site-rate "shop=5:-1": burst "-1" is not a positive integer`},
		{"other=5", `cannot parse --site-rate "other=5": no site "other": list it in --site first`},
	} {
		cf, err := parse("--site", "shop", "--site-rate", c.arg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cf.parseSites(); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("--site-rate %s: error %v; want %q", c.arg, err, c.want)
		}
	}
}

func TestWriteKeyFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c := addCollectorFlags(fs)
	t.Setenv("AFFINITY_WRITE_KEY", "shop=sk_env_0123456789abcd")
	if err := parseFlags(fs, []string{"--site", "demo,shop"}); err != nil {
		t.Fatal(err)
	}
	sites, err := c.parseSites()
	if err != nil {
		t.Fatal(err)
	}
	if len(sites[0].WriteKeys) != 0 || strings.Join(sites[1].WriteKeys, ",") != "sk_env_0123456789abcd" {
		t.Fatalf("sites %+v; want the write key of shop from AFFINITY_WRITE_KEY", sites)
	}

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	c = addCollectorFlags(fs)
	if err := parseFlags(fs, []string{"--site", "shop", "--write-key", "shop=shop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.parseSites(); err == nil || !strings.Contains(err.Error(), `cannot parse --write-key for site "shop"`) {
		t.Fatalf("--write-key shop=shop: error %v; want a refusal naming the flag and site", err)
	}
}
