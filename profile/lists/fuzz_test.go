package lists

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/storage/state"
)

// fuzzParse checks what Parse accepts: every email is normalised as
// identify stores it and is local@domain, every value within its limit;
// every refusal is a one-line *invalid.Error naming a line.
func fuzzParse(t *testing.T, data []byte, format Format) {
	lines := bytes.Count(data, []byte{'\n'}) + 1
	err := Parse(bytes.NewReader(data), format, func(line int, email, customer []byte) error {
		if line < 1 || line > lines {
			t.Fatalf("row on line %d of a %d-line upload", line, lines)
		}
		switch {
		case email != nil && customer != nil, email == nil && customer == nil:
			t.Fatalf("line %d: email %q and customer %q: want exactly one", line, email, customer)
		case email != nil:
			if state.NormalizeEmail(string(email)) != string(email) || len(email) == 0 {
				t.Fatalf("line %d: email %q is not normalised", line, email)
			}
			if bytes.Count(email, []byte{'@'}) != 1 || len(email) > 2*MaxEmailLen {
				t.Fatalf("line %d: email %q is not local@domain", line, email)
			}
		case len(customer) == 0 || len(customer) > MaxCustomerLen:
			t.Fatalf("line %d: customer %q: want 1..%d bytes", line, customer, MaxCustomerLen)
		}
		return nil
	})
	if err == nil {
		return
	}
	if ie := (*invalid.Error)(nil); !errors.As(err, &ie) {
		t.Fatalf("got %T %q; want an *invalid.Error", err, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "line ") || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("error %q: want one line starting with its line number", msg)
	}
}

func FuzzParseCSV(f *testing.F) {
	for _, s := range []string{
		"email\na@b.c\n", "Name;EMAIL;customer_id\n\"x;y\";A@B.C;1\n;;2\r\n", "email\n\"a@b.c\n",
		"customer_id,email\n1,\n,\n", "email\n\n\n", "\xEF\xBB\xBFemail\tcustomer_id\n\"a\"\"b@c.d\"\t\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, FormatCSV) })
}

func FuzzParseNDJSON(f *testing.F) {
	for _, s := range []string{
		`{"email":"A@b.c"}`, "{\"customer_id\":12.5}\n{\"email\":null,\"customer_id\":\"x\"}\n\n",
		"{\"email\":\"a@b.c\"}\n\n{\"email\":\"d@e.f\"}", `{"email":["a@b.c"]}`, "[]", "{\"email\":\"a@b.c\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, FormatNDJSON) })
}

func FuzzDecodeHead(f *testing.F) {
	f.Add(appendHead(nil, &Meta{Gen: 2, Pending: 1, Emails: 3, Customers: 4, Rows: 7, Created: 1, Updated: 2, Unsettled: true}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, v []byte) {
		var m Meta
		if decodeHead(&m, v) != nil {
			return
		}
		if got := appendHead(nil, &m); !bytes.Equal(got, v) {
			// varints have one canonical form each only when minimal
			var m2 Meta
			if err := decodeHead(&m2, got); err != nil || m2 != m {
				t.Fatalf("re-encoding %x gives %x, which decodes to %+v, %v", v, got, m2, err)
			}
		}
	})
}
