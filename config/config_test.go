package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1024", 1024, true}, {"512k", 512 << 10, true}, {"1m", 1 << 20, true},
		{"1M", 1 << 20, true}, {"2g", 2 << 30, true}, {" 8k ", 8 << 10, true},
		{"", 0, false}, {"1q", 0, false}, {"-1m", 0, false}, {"1.5m", 0, false}, {"m", 0, false},
		{"99999999999g", 0, false},
	} {
		var b ByteSize
		err := b.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && int64(b) != tc.want) {
			t.Errorf("ByteSize(%q) = %d, %v; want %d, ok %v", tc.in, b, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		n    ByteSize
		want string
	}{{0, "0"}, {1 << 20, "1m"}, {1536, "1536"}, {3 << 30, "3g"}, {512 << 10, "512k"}} {
		if got := tc.n.String(); got != tc.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tc.n), got, tc.want)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2")
	b, _ := json.Marshal(struct{ P Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s", s, s), string(b)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the value")
	}
	if Secret("").String() != "" {
		t.Fatal("an empty secret should print empty, so 'not set' stays visible")
	}
}

func TestProblems(t *testing.T) {
	var ps Problems
	if ps.Err() != nil {
		t.Fatal("no problems must be a nil error")
	}
	ps.Add("LISTEN", "nowhere", "host:port")
	ps = append(ps, Problem{Var: "PASSWORD", Value: "hunter2", Want: "something", Secret: true})
	err := ps.Prefixed("X_").Err()
	msg := err.Error()
	if !strings.Contains(msg, `X_LISTEN="nowhere": host:port`) || !strings.Contains(msg, `X_PASSWORD="******"`) || strings.Contains(msg, "hunter2") {
		t.Fatalf("error text %q", msg)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("problems must wrap ErrInvalid")
	}
	var p Problem
	if !errors.As(err, &p) || p.Var != "X_LISTEN" {
		t.Fatalf("errors.As found %+v, want the first problem", p)
	}
}
