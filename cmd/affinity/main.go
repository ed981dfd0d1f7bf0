package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
)

const usage = `affinity: behavioural interest profiles for online shops.

Usage:
  affinity serve   [flags]   every role in one process, embedded log under --data
  affinity collect [flags]   only the collector, writing to Kafka (--kafka)
  affinity build   [flags]   only the profile builder and query API, reading Kafka (--kafka)
  affinity dump-log [flags]  print the events of the embedded log (--data; serve stopped) or of
                             a Kafka topic (--kafka, --topic) as JSON lines
  affinity backup  [flags]   write a backup of --data to --to FILE, online while serve or build runs
  affinity restore [flags]   restore a backup --from FILE into a new or empty --data

Run "affinity <command> -h" for the flags of a command. Every flag can also be
set from the environment: --api-token from AFFINITY_API_TOKEN, and so on.
`

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var run func(ctx context.Context, args []string) error
	switch cmd := os.Args[1]; cmd {
	case "serve":
		run = runServe
	case "collect":
		run = runCollect
	case "build":
		run = runBuild
	case "dump-log":
		run = runDumpLog
	case "backup":
		run = runBackup
	case "restore":
		run = runRestore
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "affinity: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		log.Printf("affinity %s: %v", os.Args[1], err)
		os.Exit(1)
	}
}
