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

// TestFlagDefaultsFromCode checks that -h shows the packages' own defaults,
// and each meaning of "partitions" has its own flag.
func TestFlagDefaultsFromCode(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	addNodeFlags(fs)
	addCollectorFlags(fs)
	addKafkaFlags(fs)
	pf := addProfileFlags(fs)
	f := func(name, want string) {
		t.Helper()
		fl := fs.Lookup(name)
		if fl == nil {
			t.Fatalf("no flag --%s", name)
		}
		if fl.DefValue != want {
			t.Errorf("--%s default %q; want %q", name, fl.DefValue, want)
		}
	}
	f("half-life", "14d")
	f("top-k", "32")
	f("price-bands", "10,25,50,100,250")
	f("weight", "view=1,cart=3,uncart.product=-3,purchase=5")
	f("lifecycle", "new=30d,active=2/180d,lapsing=60d,lost=365d")
	f("rfm", "r=30d,90d,180d,365d f=2,3,5,10 m=50,100,250,500")
	f("accept-window", "7d")
	f("topic-partitions", "8")
	f("catalog-max-bytes", "67108864")
	if fs.Lookup("partitions") != nil {
		t.Error("--partitions is back; use --log-partitions or --topic-partitions")
	}

	if err := parseFlags(fs, []string{"--half-life", "brand=7d", "--weight", "view=2", "--catalog-max-bytes", "4096"}); err != nil {
		t.Fatal(err)
	}
	if got, want := fs.Lookup("half-life").Value.String(), "brand=7d,category=14d,age=14d,price=14d,product=14d"; got != want {
		t.Errorf("--half-life after brand=7d: %q; want %q", got, want)
	}
	if got, want := fs.Lookup("weight").Value.String(), "view=2,cart=3,uncart.product=-3,purchase=5"; got != want {
		t.Errorf("--weight after view=2: %q; want %q", got, want)
	}
	if pf.catalogBytes != 4096 {
		t.Errorf("--catalog-max-bytes 4096 gave %d", pf.catalogBytes)
	}
}

// TestDefsTopicReplicationFactor checks that the definitions topic a
// builder or a collector creates gets --replication-factor, as the events
// and changes topics do (it was created with 1 whatever the flag said).
func TestDefsTopicReplicationFactor(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	kf, df := addKafkaFlags(fs), addDefsFlags(fs)
	if err := parseFlags(fs, []string{"--kafka", "127.0.0.1:9092", "--replication-factor", "3"}); err != nil {
		t.Fatal(err)
	}
	build := df.options(fs, true, kf)
	if build == nil || build.ReplicationFactor != 3 || len(build.Brokers) != 1 {
		t.Errorf("build's definitions topic options %+v, want replication factor 3 on 1 broker", build)
	}
	if collect := collectDefsOptions("affinity-definitions", kf); collect == nil || collect.ReplicationFactor != 3 {
		t.Errorf("collect's definitions topic options %+v, want replication factor 3", collect)
	}
}
