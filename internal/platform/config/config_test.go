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

func TestSettingsMaskSecrets(t *testing.T) {
	env := map[string]string{"A": "plain", "PW": "hunter2-secret"}
	e := New(func(k string) string { return env[k] })
	e.String("A", "x", "")
	e.String("B", "def", "")
	e.Secret("PW", "", "")
	e.Secret("EMPTY", "", "")
	got := e.Settings()
	want := map[string]string{"A": "plain", "B": "def", "PW": "(set)", "EMPTY": "(unset)"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, v := range got {
		if strings.Contains(v, "hunter2") {
			t.Fatal("a secret leaked into the settings")
		}
	}
}
