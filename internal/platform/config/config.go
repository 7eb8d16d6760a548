// Package config reads settings from environment variables through an injected getenv, records every
// variable it was asked for (name, default, help, secret) so the documentation can be generated from
// the code, and collects parse errors so start-up reports all of them at once.
package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
	Secret  bool // never printed; also read from the file named by NAME_FILE
}

// Env reads variables and remembers what it read. The zero value is not usable; call New.
type Env struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	vars     []Var
	values   []value // effective value of each var, for Settings
	errs     []error
}

type value struct {
	i int
	v string
}

// New returns an Env reading from getenv (os.Getenv in main, a map in tests).
func New(getenv func(string) string) *Env {
	return &Env{getenv: getenv, readFile: os.ReadFile}
}

func (e *Env) lookup(name, def, help string, secret bool) (val string) {
	if !slices.ContainsFunc(e.vars, func(v Var) bool { return v.Name == name }) {
		d := def
		if secret && d != "" {
			d = "(set)"
		}
		e.vars = append(e.vars, Var{Name: name, Default: d, Help: help, Secret: secret})
		i := len(e.vars) - 1
		defer func() { e.values = append(e.values, value{i, val}) }()
	}
	if v := e.getenv(name); v != "" {
		return v
	}
	if secret {
		if path := e.getenv(name + "_FILE"); path != "" {
			b, err := e.readFile(path)
			if err != nil {
				e.errs = append(e.errs, fmt.Errorf("%s_FILE: %w", name, err))
				return ""
			}
			return strings.TrimSpace(string(b))
		}
	}
	return def
}

// String returns the variable or its default.
func (e *Env) String(name, def, help string) string { return e.lookup(name, def, help, false) }

// Secret is String for credentials: masked in Vars and dumps, and also read from NAME_FILE.
func (e *Env) Secret(name, def, help string) string { return e.lookup(name, def, help, true) }

// List splits a comma-separated variable, dropping blanks.
func (e *Env) List(name, def, help string) []string {
	var out []string
	for _, s := range strings.Split(e.lookup(name, def, help, false), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Int parses an integer variable.
func (e *Env) Int(name string, def int, help string) int {
	s := e.lookup(name, strconv.Itoa(def), help, false)
	n, err := strconv.Atoi(s)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", name, s))
		return def
	}
	return n
}

// Duration parses a Go duration such as "250ms" or "30s".
func (e *Env) Duration(name string, def time.Duration, help string) time.Duration {
	s := e.lookup(name, def.String(), help, false)
	d, err := time.ParseDuration(s)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a duration (e.g. 500ms, 30s)", name, s))
		return def
	}
	return d
}

// Bool parses true/false/1/0.
func (e *Env) Bool(name string, def bool, help string) bool {
	s := e.lookup(name, strconv.FormatBool(def), help, false)
	b, err := strconv.ParseBool(s)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a boolean", name, s))
		return def
	}
	return b
}

// Check records a validation failure when ok is false.
func (e *Env) Check(ok bool, format string, args ...any) {
	if !ok {
		e.errs = append(e.errs, fmt.Errorf(format, args...))
	}
}

// Err returns every parse and validation error so far, joined, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(e.errs...))
}

// Settings returns the effective value of every variable read, secrets masked: what a service
// logs at start-up so an operator sees the configuration it really runs with.
func (e *Env) Settings() map[string]string {
	out := make(map[string]string, len(e.values))
	for _, v := range e.values {
		val := v.v
		if e.vars[v.i].Secret {
			val = "(unset)"
			if v.v != "" {
				val = "(set)"
			}
		}
		out[e.vars[v.i].Name] = val
	}
	return out
}

// Vars returns the variables read so far, in the order they were first read.
func (e *Env) Vars() []Var { return slices.Clone(e.vars) }
