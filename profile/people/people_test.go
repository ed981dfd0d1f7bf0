package people_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/profile/people"
)

func TestParseID(t *testing.T) {
	f := func(in string, email bool, value, wantErr string) {
		t.Helper()
		id, err := people.ParseID(in)
		if wantErr != "" {
			var ie *invalid.Error
			if err == nil || !errors.As(err, &ie) || err.Error() != wantErr {
				t.Fatalf("ParseID(%q) = %v; want invalid.Error %q", in, err, wantErr)
			}
			return
		}
		if err != nil || id.Email != email || id.Value != value {
			t.Fatalf("ParseID(%q) = %+v, %v; want email %v, %q", in, id, err, email, value)
		}
	}
	f("ann@example.com", true, "ann@example.com", "")
	f(" Ann@Example.COM ", true, "ann@example.com", "")
	f("C-42", false, "C-42", "")
	f(" 42 ", false, "42", "")
	f("", false, "", `invalid person id "": want an email or a customer id`)
	f("  ", false, "", `invalid person id "  ": want an email or a customer id`)
	long := strings.Repeat("x", 2049)
	if _, err := people.ParseID(long); err == nil || !strings.HasSuffix(err.Error(), ": longer than 2048 bytes") {
		t.Fatalf("ParseID of 2049 bytes = %v; want longer than 2048 bytes", err)
	}
}

// FuzzParseID: any path segment is an id or an invalid.Error, and an id is
// normalised once for all (parsing it again gives itself).
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"ann@example.com", " Ann@Example.COM ", "C-42", "", " ", "@", "ü@ß.de", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := people.ParseID(s)
		if err != nil {
			if ie := (*invalid.Error)(nil); !errors.As(err, &ie) {
				t.Fatalf("ParseID(%q): %v is not an invalid.Error", s, err)
			}
			return
		}
		again, err := people.ParseID(id.Value)
		if err != nil || again.Value != id.Value || again.Email != id.Email {
			t.Fatalf("ParseID(%q) = %+v; parsed again %+v, %v", s, id, again, err)
		}
	})
}
