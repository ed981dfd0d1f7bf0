package service_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/profiletest"
	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

var nutrilon = event.Product{ID: "p1", Brand: "Nutrilon"}

func openLog(t *testing.T, dir string) *storage.EmbeddedLog {
	t.Helper()
	l, err := storage.OpenEmbeddedLog(storage.DefaultEmbeddedOptions(filepath.Join(dir, "log")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func appendBatch(t *testing.T, l storage.Log, b *event.Batch) {
	t.Helper()
	msg := storage.Message{Key: event.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)}
	if err := l.Append(context.Background(), []storage.Message{msg}); err != nil {
		t.Fatal(err)
	}
}

// TestServiceAppliesAndReopens starts the profile side on a real embedded
// log, applies a batch, stops it, and finds the profile after reopening.
func TestServiceAppliesAndReopens(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	open := func() *service.Service {
		s, err := service.Open(service.Options{Dir: filepath.Join(dir, "state"), Log: l, Logger: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	visitor := profiletest.Visitor(1)
	now := time.Now().UnixMilli()
	appendBatch(t, l, profiletest.Batch("shop", visitor, profiletest.View(now, nutrilon)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Builder.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(ctx); err != nil {
		t.Errorf("health: %v", err)
	}
	if st := s.Status(nil); len(st) == 0 {
		t.Error("empty status")
	}
	if err := s.StopBuilder(); err != nil {
		t.Fatal(err)
	}
	if err := s.StopBuilder(); err != nil {
		t.Fatalf("second StopBuilder: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = open()
	defer s.Close()
	if _, found, err := s.DB.Profile("shop", visitor, nil); err != nil || !found {
		t.Fatalf("profile after reopen: found %v, %v", found, err)
	}
}

// TestServiceClock runs segment membership on the clock of Options: a view
// at T0 is recent at T0, months ago by the real clock.
func TestServiceClock(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	clk := &profiletest.Clock{}
	clk.Set(profiletest.T0 + profiletest.Hour)
	s, err := service.Open(service.Options{Dir: filepath.Join(dir, "state"), Log: l, Logger: t.Logf,
		Now: clk.Now, SyncInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Segments.Put("shop", "recent", `since(view) <= 1d`); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, l, profiletest.Batch("shop", profiletest.Visitor(1), profiletest.View(profiletest.T0, nutrilon)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Builder.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if size, err := s.Segments.Size("shop", "recent"); err != nil || size != 1 {
		t.Fatalf("size of recent: got %d, %v; want 1", size, err)
	}
}
