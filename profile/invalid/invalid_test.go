package invalid_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
)

func TestError(t *testing.T) {
	err := fmt.Errorf("cannot store segment: %w", invalid.Errorf("invalid rule: %w", io.ErrUnexpectedEOF))
	var ie *invalid.Error
	if !errors.As(err, &ie) {
		t.Fatalf("errors.As(%v): no *invalid.Error", err)
	}
	if got, want := ie.Error(), "invalid rule: unexpected EOF"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("errors.Is(%v, io.ErrUnexpectedEOF) = false; want true", err)
	}
	if errors.As(errors.New("invalid rule"), &ie) {
		t.Fatal("a plain error classified as invalid by its text")
	}
}
