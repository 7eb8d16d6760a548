package config

import (
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	env := map[string]string{"A": "x", "N": "7", "D": "2s", "L": " a, ,b ", "BAD": "zz", "PW_FILE": "/secret"}
	e := New(func(k string) string { return env[k] })
	e.readFile = func(p string) ([]byte, error) { return []byte("s3cret\n"), nil }
	if e.String("A", "def", "") != "x" || e.String("MISSING", "def", "") != "def" {
		t.Fatal("String")
	}
	if e.Int("N", 1, "") != 7 || e.Duration("D", time.Second, "") != 2*time.Second {
		t.Fatal("Int/Duration")
	}
	if l := e.List("L", "", ""); len(l) != 2 || l[0] != "a" || l[1] != "b" {
		t.Fatalf("List %q", l)
	}
	if e.Secret("PW", "", "") != "s3cret" {
		t.Fatal("Secret from file")
	}
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	e.Int("BAD", 1, "")
	e.Check(false, "custom %d", 1)
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "BAD") || !strings.Contains(err.Error(), "custom 1") {
		t.Fatalf("Err = %v", err)
	}
	for _, v := range e.Vars() {
		if v.Name == "PW" && !v.Secret {
			t.Fatal("secret not marked")
		}
	}
}
