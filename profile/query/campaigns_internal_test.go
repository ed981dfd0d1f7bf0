package query

import (
	"bytes"
	"testing"
)

// TestCSVRowEmail: the email of a members CSV row, per-visitor and
// per-person layouts, in a fan-out's person-prefixed row too.
func TestCSVRowEmail(t *testing.T) {
	const v1, v2, p = "0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c", "1b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c", "3f0c6c1a-3c1f-5c47-9d0e-5b6a2f1e7d3c"
	for _, c := range []struct{ header, row, want string }{
		{"visitor,email,entered\r\n", v1 + ",ann@x.io,2026-01-01T00:00:00.000Z\r\n", "ann@x.io"},
		{"visitor,email,entered,count(view)\r\n", v1 + " " + v2 + ",ann@x.io,2026-01-01T00:00:00.000Z,4\r\n", "ann@x.io"},
		{"visitor,email,entered\r\n", v1 + ",,2026-01-01T00:00:00.000Z\r\n", ""},
		{"person,visitor,email,entered\r\n", p + "," + v1 + " " + v2 + ",ann@x.io,2026-01-01T00:00:00.000Z\r\n", "ann@x.io"},
		{"person,visitor,email,entered\r\n", p + " " + p + "," + v1 + ",bob@x.io,2026-01-01T00:00:00.000Z\r\n", "bob@x.io"},
		{"person,visitor,email,entered\r\n", p + "," + v1, ""},
	} {
		col, ok := csvEmailColumn([]byte(c.header))
		if !ok {
			t.Fatalf("csvEmailColumn(%q): none", c.header)
		}
		if got := csvRowEmail([]byte(c.row), col); string(got) != c.want {
			t.Errorf("csvRowEmail(%q, %d) = %q; want %q", c.row, col, got, c.want)
		}
	}
	if col, ok := csvEmailColumn([]byte("visitor,entered\r\n")); ok {
		t.Errorf("a header without email: column %d; want none", col)
	}
}

// FuzzCSVRowEmail: any header and row read without a panic, and a row
// whose fields are the header's gives the email field back.
func FuzzCSVRowEmail(f *testing.F) {
	f.Add([]byte("visitor,email,entered\r\n"), []byte("v,ann@x.io,2026"))
	f.Add([]byte("person,visitor,email,entered\r\n"), []byte("p p,v1 v2,ann@x.io,2026\r\n"))
	f.Add([]byte("email"), []byte(""))
	f.Add([]byte(",,,"), []byte(",,,,"))
	f.Fuzz(func(t *testing.T, header, row []byte) {
		col, ok := csvEmailColumn(header)
		if !ok {
			return
		}
		got := csvRowEmail(row, col)
		if fields := bytes.Split(row, []byte{','}); len(fields) > col+1 && !bytes.Equal(got, fields[col]) {
			t.Fatalf("csvRowEmail(%q, %d) = %q; want field %d, %q", row, col, got, col, fields[col])
		}
	})
}
