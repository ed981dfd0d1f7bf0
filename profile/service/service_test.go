package service_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/affinityhq/affinity/profile/service"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestServiceAppliesAndReopens starts the profile side on a real embedded
// log, applies a batch, stops it, and finds the profile after reopening.
func TestServiceAppliesAndReopens(t *testing.T) {
	dir := t.TempDir()
	l, err := storage.OpenEmbeddedLog(storage.DefaultEmbeddedOptions(filepath.Join(dir, "log")))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open := func() *service.Service {
		s, err := service.Open(service.Options{Dir: filepath.Join(dir, "state"), Log: l, Logger: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	visitor, _ := event.ParseUUID([]byte("0d9c6a5f-5153-428f-83c4-4d6731e44778"))
	id, _ := event.ParseUUID([]byte("7c58f4f4-bd2b-41ac-a20d-17e1c392dc82"))
	now := time.Now().UnixMilli()
	b := &event.Batch{Site: "shop", Visitor: visitor, Recv: now, Events: []event.Event{{
		ID: id, Type: event.TypeView, TS: now, HasProduct: true,
		Product: event.Product{ID: "p1", Brand: "Nutrilon"},
	}}}
	msg := storage.Message{Key: tracker.AppendLogKey(nil, b.Site, b.Visitor), Value: event.AppendBatch(nil, b)}
	if err := l.Append(context.Background(), []storage.Message{msg}); err != nil {
		t.Fatal(err)
	}
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
