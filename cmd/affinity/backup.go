package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/storage/backup"
)

// Backup and restore. Badger holds an exclusive lock on each database, so
// a backup of a running node goes through it: the node writes its internal
// listener's address to <data>/api-addr, next to api-token, and serves
// POST /v1/admin/backup, which streams the file. `affinity backup` uses
// it, and opens the databases itself when no node runs on --data.

const (
	// apiAddrFile, in --data, holds the running node's internal listener.
	apiAddrFile = "api-addr"
	backupPath  = "/v1/admin/backup"
)

// dumpFunc writes one database's records (state.DB.Backup,
// storage.EmbeddedLog.Backup, backup.Dump).
type dumpFunc func(w io.Writer) (keys int64, err error)

// writeBackup writes a backup file to w: the state, then the log (nil: a
// node on Kafka, whose offsets continue from the topic). holdTrim, when
// set, keeps the builder from trimming the log from before the state's
// copy until after the log's, so that the log copied holds every record
// from the copied state's offsets on.
func writeBackup(w io.Writer, state, log dumpFunc, holdTrim func() (release func())) (backup.Info, error) {
	if holdTrim != nil {
		defer holdTrim()()
	}
	bw, err := backup.NewWriter(w, time.Now())
	if err != nil {
		return backup.Info{}, err
	}
	if err := bw.Section(backup.State, state); err != nil {
		return bw.Info(), err
	}
	if log != nil {
		if err := bw.Section(backup.Log, log); err != nil {
			return bw.Info(), err
		}
	}
	return bw.Info(), bw.Close()
}

// logDump returns the backup of l when it is the embedded log, nil for
// Kafka.
func logDump(l storage.Log) dumpFunc {
	switch l := l.(type) {
	case *storage.EmbeddedLog:
		return l.Backup
	case untrimmedLog:
		return logDump(l.Log)
	}
	return nil
}

// registerBackup serves POST /v1/admin/backup on the internal listener: a
// backup file of the node's state and embedded log, streamed. A failure
// mid-stream cuts the file before its trailer, which `affinity backup`
// and `affinity restore` refuse.
func registerBackup(srv *api.Server, prof *service.Service, l storage.Log) {
	ld := logDump(l)
	srv.Handle(backupPath, func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsPost() {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodPost)
			api.Error(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed: use POST")
			return
		}
		ctx.SetContentType("application/octet-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			start := time.Now()
			info, err := writeBackup(w, prof.DB.Backup, ld, prof.Builder.HoldTrim)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				log.Printf("backup: %v", err)
				return
			}
			log.Printf("backup: %s in %s", describeBackup(info), time.Since(start).Round(time.Millisecond))
		})
	})
}

// writeAPIAddr writes the internal listener's address to <data>/api-addr
// for `affinity backup`; remove deletes it at shutdown.
func writeAPIAddr(data, addr string) (remove func(), err error) {
	path := filepath.Join(data, apiAddrFile)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(addr+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	return func() { _ = os.Remove(path) }, nil
}

func describeBackup(info backup.Info) string {
	var parts []string
	for _, s := range info.Sections {
		parts = append(parts, fmt.Sprintf("%s %d keys (%d bytes)", s.Section, s.Keys, s.Bytes))
	}
	return strings.Join(parts, ", ")
}

// runBackup writes a backup of the node on --data to --to: through the
// node when one runs there, else from the databases directly.
func runBackup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity backup", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the node to back up (serve or build, running or stopped)")
	to := fs.String("to", "", "file to write the backup to (required); written to FILE.tmp, checked, then renamed")
	token := fs.String("api-token", "", "bearer token of the running node's internal listener; empty: read <data>/api-token")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("no backup file: set --to FILE")
	}
	tmp := *to + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create backup file: %w", err)
	}
	defer os.Remove(tmp) // a no-op after the rename
	how, err := backupTo(ctx, f, *data, *token)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Read back what was written: a node that failed mid-stream leaves a
	// file without its trailer.
	info, err := verifyFile(tmp)
	if err != nil {
		return fmt.Errorf("cannot back up %s: the file written is bad: %w", *data, err)
	}
	if err := os.Rename(tmp, *to); err != nil {
		return fmt.Errorf("cannot back up %s: %w", *data, err)
	}
	log.Printf("backup: wrote %s %s: %s", *to, how, describeBackup(info))
	return nil
}

// backupTo writes the backup of data to w and says how it was taken.
func backupTo(ctx context.Context, w io.Writer, data, token string) (how string, err error) {
	addr, err := os.ReadFile(filepath.Join(data, apiAddrFile))
	if err == nil {
		url := "http://" + strings.TrimSpace(string(addr)) + backupPath
		err = backupFromNode(ctx, w, url, data, token)
		if err == nil {
			return "through the node at " + url, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return "", err
		}
		log.Printf("backup: no node answers at %s (%s is stale): backing up %s directly", url, apiAddrFile, data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cannot back up %s: %w", data, err)
	}
	return "from the stopped node's files", backupFromFiles(w, data)
}

func backupFromNode(ctx context.Context, w io.Writer, url, data, token string) error {
	if token == "" {
		b, err := os.ReadFile(filepath.Join(data, "api-token"))
		if err != nil {
			return fmt.Errorf("cannot back up the node at %s: no API token: set --api-token to the node's (%w)", url, err)
		}
		token = strings.TrimSpace(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return fmt.Errorf("cannot back up the node at %s: %w", url, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot back up the node at %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("cannot back up the node at %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("cannot back up the node at %s: %w", url, err)
	}
	return nil
}

// backupFromFiles backs up a stopped node: its state and, for serve, its
// embedded log. Opening them locks them: a node cannot start meanwhile.
func backupFromFiles(w io.Writer, data string) error {
	stateDir, logDir := filepath.Join(data, "state"), filepath.Join(data, "log")
	sdb, err := backup.OpenDir(stateDir)
	if err != nil {
		return fmt.Errorf("cannot back up %s: %w", data, err)
	}
	defer sdb.Close()
	var ld dumpFunc
	if _, err := os.Stat(logDir); err == nil {
		ldb, err := backup.OpenDir(logDir)
		if err != nil {
			return fmt.Errorf("cannot back up %s: %w", data, err)
		}
		defer ldb.Close()
		ld = func(w io.Writer) (int64, error) { return backup.Dump(ldb, w) }
	}
	_, err = writeBackup(w, func(w io.Writer) (int64, error) { return backup.Dump(sdb, w) }, ld, nil)
	return err
}

func verifyFile(path string) (backup.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Info{}, err
	}
	defer f.Close()
	return backup.Verify(f)
}

// runRestore restores a backup file into a new or empty --data; a node
// started on it continues from the backup's offsets.
func runRestore(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("affinity restore", flag.ContinueOnError)
	from := fs.String("from", "", "backup file written by affinity backup (required)")
	data := fs.String("data", "./data", "directory to restore into; it must not exist or be empty")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("no backup file: set --from FILE")
	}
	ents, err := os.ReadDir(*data)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("cannot restore into %s: %w", *data, err)
	case len(ents) > 0:
		return fmt.Errorf("cannot restore into %s: the directory is not empty (it holds %s); restore into a new or empty --data", *data, ents[0].Name())
	}
	f, err := os.Open(*from)
	if err != nil {
		return fmt.Errorf("cannot restore: %w", err)
	}
	defer f.Close()
	info, err := backup.Restore(f, map[backup.Section]string{
		backup.State: filepath.Join(*data, "state"),
		backup.Log:   filepath.Join(*data, "log"),
	})
	if err != nil {
		// Nothing is left half-restored: the directory was new or empty.
		_ = os.RemoveAll(filepath.Join(*data, "state"))
		_ = os.RemoveAll(filepath.Join(*data, "log"))
		return fmt.Errorf("cannot restore %s into %s: %w", *from, *data, err)
	}
	log.Printf("restore: %s (taken %s) into %s: %s", *from, info.Created.Format(time.RFC3339), *data, describeBackup(info))
	return nil
}
