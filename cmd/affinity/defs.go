package main

import (
	"flag"
	"log"

	"github.com/affinityhq/affinity/profile/campaign"
	"github.com/affinityhq/affinity/profile/defs"
)

// defsFlags are build's flags of the definitions topic (profile/defs).
type defsFlags struct {
	opts       defs.Options
	chunkBytes int64
}

func addDefsFlags(fs *flag.FlagSet) *defsFlags {
	d := &defsFlags{opts: defs.DefaultOptions()}
	d.chunkBytes = int64(d.opts.ChunkBytes)
	fs.StringVar(&d.opts.Topic, "defs-topic", d.opts.Topic,
		"Kafka topic the definitions (segments, webhooks, lists, catalog) travel on to every build node: 1 partition, cleanup.policy=compact; empty: they apply to the node they are sent to alone (the default with --own unless this flag is given)")
	fs.Var(bytesFlag{&d.chunkBytes}, "defs-chunk-bytes", "largest definition body sent in one Kafka record; a larger list or catalog upload travels in chunks of this size (at most 900KiB)")
	fs.Var(durationFlag{&d.opts.ApplyTimeout}, "defs-timeout", "how long a definition write waits for this node to apply it from the topic before it answers 503 (s, m)")
	return d
}

// options returns the definitions topic's options, or nil when the
// definitions apply locally: --defs-topic "" or, for a builder pinned by
// --own, when --defs-topic is not given. A topic it has to create gets
// the events topic's replication factor (--replication-factor), as the
// changes topic does.
func (d *defsFlags) options(fs *flag.FlagSet, inGroup bool, kf *kafkaFlags) *defs.Options {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "defs-topic" })
	if d.opts.Topic == "" || !inGroup && !given {
		return nil
	}
	o := d.opts
	o.Brokers, o.ChunkBytes, o.ReplicationFactor, o.Logger = kf.brokers.values, int(d.chunkBytes), kf.opts.ReplicationFactor, log.Printf
	return &o
}

// addCollectDefsFlag adds collect's --defs-topic: the definitions topic
// it reads the campaigns' heads and site secrets from, to check the
// tokens of /e/ (campaign.Heads).
func addCollectDefsFlag(fs *flag.FlagSet) *string {
	return fs.String("defs-topic", defs.DefaultOptions().Topic,
		"Kafka topic of the build group's definitions, read for the campaigns' heads and token secrets so that the open pixel and click redirect (/e/) check tokens here; empty: /e/ answers 503")
}

// collectDefsOptions returns the options of collect's reader of topic
// (nil when "": no reader), which keeps campaigns' heads only; a topic
// it has to create gets the events topic's replication factor.
func collectDefsOptions(topic string, kf *kafkaFlags) *defs.Options {
	if topic == "" {
		return nil
	}
	o := defs.DefaultOptions()
	o.Topic, o.Brokers, o.ReplicationFactor, o.Logger = topic, kf.brokers.values, kf.opts.ReplicationFactor, log.Printf
	campaign.HeadsOptions(&o)
	return &o
}
