package state_test

import (
	"fmt"
	"testing"
)

func TestExtWriterScanKeysSeek(t *testing.T) {
	db := openDB(t, t.TempDir())
	w, err := db.NewExtWriter()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Rb", "Rd", "Rf", "Sa"} {
		if err := w.Set([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Set([]byte("a"), nil); err == nil {
		t.Fatalf("ExtWriter.Set accepted a non-extension key")
	}
	if err := w.Flush(); err == nil {
		t.Fatalf("Flush after a refused Set: got nil; want the Set's error")
	}
	w, _ = db.NewExtWriter()
	for _, k := range []string{"Rb", "Rd", "Rf", "Sa"} {
		if err := w.Set([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := db.ScanExtKeys([]byte("R"), func(k []byte) bool { keys = append(keys, string(k)); return len(keys) < 2 }); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(keys); got != "[Rb Rd]" {
		t.Fatalf("ScanExtKeys stopping after 2: got %s; want [Rb Rd]", got)
	}
	f := func(seek, want string) {
		t.Helper()
		got := "none"
		found, err := db.SeekExt([]byte("R"), []byte(seek), func(k, v []byte) error {
			got = string(k) + "=" + string(v)
			return nil
		})
		if err != nil || found != (want != "none") || got != want {
			t.Fatalf("SeekExt(%q): got %s, %v, %v; want %s", seek, got, found, err, want)
		}
	}
	f("R", "Rb=vRb")
	f("Rb", "Rb=vRb")
	f("Rc", "Rd=vRd")
	f("Rf", "Rf=vRf")
	f("Rg", "none") // Sa is past the prefix
	if _, err := db.SeekExt([]byte("r"), []byte("r"), func(_, _ []byte) error { return nil }); err == nil {
		t.Fatalf("SeekExt accepted a non-extension prefix")
	}
}
