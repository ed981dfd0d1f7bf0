package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/storage"
)

// runBuild runs the profile builder against Kafka: it consumes the owned
// partitions of the topic into <data>/state and serves the internal
// listener (/healthz, /metrics, the query API) until ctx is done.
func runBuild(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("affinity build", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the builder's state (profiles, offsets) and API token")
	apiListen := fs.String("api-listen", "127.0.0.1:8081", "address of the internal listener: /healthz, /metrics, /debug/pprof, the query API")
	apiToken := fs.String("api-token", "", "bearer token of the internal listener; empty: generated once and kept in <data>/api-token")
	own := fs.String("own", "", "partitions of the topic this builder consumes, e.g. 0-3,8; empty: all")
	shutdownTimeout := 30 * time.Second
	fs.Var(durationFlag{&shutdownTimeout}, "shutdown-timeout", "how long a graceful shutdown waits for in-flight requests")
	brokers := newListFlag()
	fs.Var(brokers, "kafka", "Kafka bootstrap brokers, host:port[,host:port…] (required)")
	ko := storage.DefaultKafkaOptions()
	fs.StringVar(&ko.Topic, "topic", ko.Topic, "Kafka topic of the events")
	fs.IntVar(&ko.Partitions, "partitions", ko.Partitions, "partitions of the topic when it has to be created")
	fs.IntVar(&ko.ReplicationFactor, "replication-factor", ko.ReplicationFactor, "replication factor of the topic when it has to be created")
	changesTopic := fs.String("changes-topic", "affinity-segment-changes", "Kafka topic the segments' change records are produced to (key site|segment, JSON value); empty: none")
	pf := addProfileFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(brokers.values) == 0 {
		return errors.New("no Kafka brokers: set --kafka host:port (or AFFINITY_KAFKA)")
	}
	owned, err := parsePartitions(*own)
	if err != nil {
		return err
	}
	token, err := loadAPIToken(*apiToken, *data)
	if err != nil {
		return err
	}
	ko.Brokers = brokers.values
	ko.Logger = log.Printf
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := storage.OpenKafkaLog(octx, ko)
	if err != nil {
		return err
	}
	defer func() {
		if l != nil {
			if cerr := l.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("cannot close the event log: %w", cerr)
			}
		}
	}()
	if *changesTopic != "" { // segments' change records (changes.go); closed after the builder
		cko := ko
		cko.Topic = *changesTopic
		cl, oerr := storage.OpenKafkaLog(octx, cko)
		if oerr != nil {
			return fmt.Errorf("cannot open the changes topic (--changes-topic): %w", oerr)
		}
		defer func() {
			if cerr := cl.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("cannot close the changes topic: %w", cerr)
			}
		}()
		pf.changesSink = changesSink(cl)
	}
	prof, err := openProfiles(*data, pf, l, owned)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := prof.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	internal, err := api.New(api.Options{Token: token, Metrics: []*metrics.Set{prof.set}, Health: prof.health, Status: prof.status})
	if err != nil {
		return err
	}
	prof.register(internal)
	if err := internal.Listen(*apiListen); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- wrapServeErr("internal listener", internal.Serve()) }()
	log.Printf("building profiles from kafka=%v topic=%s partitions=%s api=http://%s data=%s",
		brokers.values, ko.Topic, partitionsString(*own), internal.Addr(), *data)

	select {
	case <-ctx.Done():
		log.Printf("shutting down: signal received")
	case err = <-errc:
		log.Printf("shutting down: %v", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	step := func(name string, fn func() error) {
		start := time.Now()
		serr := fn()
		log.Printf("shutdown: %s in %s", name, time.Since(start).Round(time.Millisecond))
		if serr != nil {
			log.Printf("shutdown: %s: %v", name, serr)
			if err == nil {
				err = serr
			}
		}
	}
	internal.SetDraining()
	step("builder stopped after its current batch", prof.stopBuilder)
	step("event log closed", func() error {
		cerr := l.Close()
		l = nil
		return cerr
	})
	step("state closed", prof.close)
	step("internal listener stopped", func() error { return internal.Shutdown(sctx) })
	return err
}

func partitionsString(own string) string {
	if own == "" {
		return "all"
	}
	return own
}
