package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/storage/diskwatch"
)

// envPrefix prefixes the environment variable of every flag: --api-token is
// also read from AFFINITY_API_TOKEN.
const envPrefix = "AFFINITY_"

// envName returns the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseFlags parses args into fs, then sets every flag not given on the
// command line from its AFFINITY_* variable. Command-line flags win.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every setting is a --flag", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid value %q for %s: %v", v, envName(f.Name), serr)
		}
	})
	return err
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag struct {
	values  []string
	changed bool // the first Set replaces the default
}

func newListFlag(defaults ...string) *listFlag { return &listFlag{values: defaults} }

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.changed {
		l.values, l.changed = nil, true
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.values = append(l.values, v)
		}
	}
	return nil
}

// durationFlag is a time.Duration flag that also takes days and weeks
// ("7d", "2w", "1d12h"), the units event windows are thought in.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return duration.Format(*f.d)
}

func (f durationFlag) Set(s string) error {
	d, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// bytesFlag is a byte count that takes units: 512MiB, 1.5GB, 1073741824
// (diskwatch.ParseBytes).
type bytesFlag struct{ n *int64 }

func (f bytesFlag) String() string {
	if f.n == nil {
		return ""
	}
	return diskwatch.FormatBytes(*f.n)
}

func (f bytesFlag) Set(s string) error {
	n, err := diskwatch.ParseBytes(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}
