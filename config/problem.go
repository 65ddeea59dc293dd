package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every Problem, so callers can test with errors.Is.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one invalid setting. Var is the variable's name relative to the
// component's prefix ("LISTEN" for PROXY_LISTEN) until the composer adds the
// prefix with Prefixed.
type Problem struct {
	Var    string // variable name
	Value  string // the value given, shown masked when Secret
	Want   string // what would be accepted, in plain words
	Secret bool   // mask Value when printing
}

// Error formats the problem as `NAME="value": want …`.
func (p Problem) Error() string {
	v := p.Value
	if p.Secret {
		v = Mask(v)
	}
	return fmt.Sprintf("%s=%q: %s", p.Var, v, p.Want)
}

// Unwrap makes every Problem an ErrInvalid.
func (p Problem) Unwrap() error { return ErrInvalid }

// Prefixed returns the problem with prefix added to its variable name.
func (p Problem) Prefixed(prefix string) Problem {
	p.Var = prefix + p.Var
	return p
}

// Problems collects problems in the order they are found.
type Problems []Problem

// Add appends a problem.
func (ps *Problems) Add(name, value, want string) {
	*ps = append(*ps, Problem{Var: name, Value: value, Want: want})
}

// Prefixed returns all problems with prefix added to their names.
func (ps Problems) Prefixed(prefix string) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		out[i] = p.Prefixed(prefix)
	}
	return out
}

// Err returns nil when there are no problems, else an error listing all of
// them, one per line.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ProblemsError(ps)
}

// ProblemsError is the error form of Problems.
type ProblemsError Problems

func (e ProblemsError) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (e ProblemsError) Unwrap() []error {
	errs := make([]error, len(e))
	for i, p := range e {
		errs[i] = p
	}
	return errs
}

// Mask hides a secret, keeping only whether it was empty.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	return "******"
}
