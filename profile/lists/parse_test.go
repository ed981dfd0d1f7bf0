package lists

import (
	"errors"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
)

// rows parses in and returns its rows as "e:<email>" / "c:<customer>"
// with their lines, "L<line> " prefixed.
func rows(in string, f Format) ([]string, error) {
	var out []string
	err := Parse(strings.NewReader(in), f, func(line int, email, customer []byte) error {
		if email != nil {
			out = append(out, "e:"+string(email))
		} else {
			out = append(out, "c:"+string(customer))
		}
		_ = line
		return nil
	})
	return out, err
}

func TestParse(t *testing.T) {
	f := func(name string, format Format, in, want string) {
		t.Helper()
		got, err := rows(in, format)
		if err != nil {
			t.Fatalf("%s: got error %q; want rows %q", name, err, want)
		}
		if g := strings.Join(got, " "); g != want {
			t.Fatalf("%s: got rows %q; want %q", name, g, want)
		}
	}
	f("csv email", FormatCSV, "email\nA@Example.com\n b@x.org \n", "e:a@example.com e:b@x.org")
	f("csv both and other columns", FormatCSV, "\xEF\xBB\xBFName,Email,Customer_ID\nAnn,ann@x.io,42\nBob,,43\n", "e:ann@x.io c:42 c:43")
	f("csv semicolons, quotes", FormatCSV, "name;email\n\"Doe; Jane\";\"jane@x.io\"\r\n\"a \"\"b\"\"\";c@x.io", "e:jane@x.io e:c@x.io")
	f("csv tab", FormatCSV, "customer_id\tx\n7\t1\n", "c:7")
	f("csv header only", FormatCSV, "email\n", "")
	f("csv empty", FormatCSV, "", "")
	f("csv blank lines at the end", FormatCSV, "email\na@b.c\n\n\n", "e:a@b.c")
	f("csv unicode upper", FormatCSV, "email\nÄNN@X.IO\n", "e:änn@x.io")
	f("ndjson", FormatNDJSON, `{"email":"A@B.C","x":[1]}`+"\n"+`{"customer_id":17}`+"\n"+`{"customer_id":"c-9","email":null}`+"\n\n",
		"e:a@b.c c:17 c:c-9")
	f("ndjson both", FormatNDJSON, `{"email":"a@b.c","customer_id":"1"}`, "e:a@b.c c:1")
}

func TestParseRefuses(t *testing.T) {
	f := func(name string, format Format, in, want string) {
		t.Helper()
		_, err := rows(in, format)
		if err == nil {
			t.Fatalf("%s: got no error; want %q", name, want)
		}
		if ie := (*invalid.Error)(nil); !errors.As(err, &ie) {
			t.Fatalf("%s: got %T %q; want an *invalid.Error", name, err, err)
		}
		if err.Error() != want {
			t.Fatalf("%s: got error\n%s\nwant\n%s", name, err, want)
		}
	}
	f("bad email", FormatCSV, "email\na@b.c\nnot-an-email\n", `line 3: invalid email "not-an-email": want one @ between a local part and a domain`)
	f("two @", FormatCSV, "email\na@b@c\n", `line 2: invalid email "a@b@c": want one @ between a local part and a domain`)
	f("space in email", FormatCSV, "email\n\"a b@c.d\"\n", `line 2: invalid email "a b@c.d": spaces, control characters, commas, semicolons and quotes are not allowed`)
	f("empty row", FormatCSV, "email\na@b.c\n\nd@e.f\n", "line 3: invalid row: empty")
	f("neither", FormatCSV, "email,customer_id\n,\n", "line 2: invalid row: neither an email nor a customer_id")
	f("no key column", FormatCSV, "name,phone\nx,1\n", `line 1: invalid header "name,phone": want an email and/or a customer_id column`)
	f("two email columns", FormatCSV, "email,EMAIL\n", "line 1: invalid header: two email columns")
	f("cells", FormatCSV, "email,name\na@b.c\n", "line 2: invalid row: 1 cells; the header has 2")
	f("open quote", FormatCSV, "email\n\"a@b.c\n", "line 2: invalid cell 1: an opening quote without its closing one")
	f("after quote", FormatCSV, "email\n\"a@b.c\"x\n", "line 2: invalid cell 1: text after its closing quote")
	f("too long", FormatCSV, "email\n"+strings.Repeat("a", 250)+"@b.cd\n", "line 2: invalid email "+quote.Value(strings.Repeat("a", 250)+"@b.cd")+": longer than 254 bytes")
	f("not utf-8", FormatCSV, "email\n\xffa@b.c\n", `line 2: invalid email "\xffa@b.c": not UTF-8`)
	f("long customer", FormatCSV, "customer_id\n"+strings.Repeat("7", MaxCustomerLen+1)+"\n", "line 2: invalid customer_id "+quote.Value(strings.Repeat("7", MaxCustomerLen+1))+": longer than 2048 bytes")
	f("ndjson not json", FormatNDJSON, "{\"email\":\"a@b.c\"}\n{email}\n", `line 2: invalid JSON "{email}": cannot parse JSON: cannot parse object: cannot find opening '"" for object key; unparsed tail: "email}"`)
	f("ndjson array", FormatNDJSON, "[1]\n", `line 1: invalid row "[1]": want a JSON object`)
	f("ndjson neither", FormatNDJSON, `{"name":"x"}`, "line 1: invalid row: neither an email nor a customer_id")
	f("ndjson email number", FormatNDJSON, `{"email":5}`, `line 1: invalid email "5": want a string`)
	f("ndjson blank inside", FormatNDJSON, "{\"email\":\"a@b.c\"}\n \n{\"email\":\"d@b.c\"}\n", "line 2: invalid row: empty")
	f("line too long", FormatNDJSON, strings.Repeat(" ", MaxLine+1)+"x\n", "line 1: longer than 65536 bytes")
}

func TestFormatOf(t *testing.T) {
	for ct, want := range map[string]Format{"text/csv; charset=utf-8": FormatCSV, "application/x-ndjson": FormatNDJSON, "application/json": FormatNDJSON} {
		if got, err := FormatOf(ct); err != nil || got != want {
			t.Fatalf("FormatOf(%q): got %d, %v; want %d", ct, got, err, want)
		}
	}
	if _, err := FormatOf("text/plain"); err == nil || err.Error() != `unsupported Content-Type "text/plain": want text/csv or application/x-ndjson` {
		t.Fatalf("FormatOf(text/plain): got %v", err)
	}
}
