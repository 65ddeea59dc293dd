package appserver

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// SplitCommand splits a command line into words as a POSIX shell would for a
// simple command: single quotes keep everything, double quotes keep all but
// backslash escapes of \ " $ `, a backslash outside quotes escapes the next
// character. No variables, globs or operators are expanded: there is no shell.
func SplitCommand(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && !strings.ContainsRune("\\\"$`\n", r) {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	switch {
	case escaped:
		return nil, errors.New("a command that does not end in a lone backslash")
	case quote != 0:
		return nil, errors.New("a command with balanced quotes")
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("a command, such as: gunicorn --workers 1 app:app")
	}
	return words, nil
}

func splitHostPort(addr string) (host, port string, err error) {
	return net.SplitHostPort(addr)
}

// Warnings are findings in the pool's settings that do not stop it.
//
// gunicorn takes the app socket from LISTEN_FDS (systemd socket activation,
// which onebox sets) by itself; with --bind fd://3 (or -b) as well it takes
// fd 3 twice, closes it after the first, and every worker dies at boot with
// "OSError: [Errno 9] Bad file descriptor".
func (c Config) Warnings() []string {
	argv, err := SplitCommand(c.Command)
	if err != nil || len(argv) == 0 || !isGunicorn(argv) {
		return nil
	}
	for _, a := range argv[1:] {
		if a == "-b" || a == "--bind" || strings.HasPrefix(a, "--bind=") || (strings.HasPrefix(a, "-b") && len(a) > 2 && a[2] != '-') {
			return []string{fmt.Sprintf("APP_COMMAND=%q: gunicorn takes the app socket from LISTEN_FDS by itself, and with %s as well every worker dies at boot (Bad file descriptor); remove %s, e.g. APP_COMMAND=%q",
				c.Command, a, a, withoutBind(argv))}
		}
	}
	return nil
}

// isGunicorn reports whether argv runs gunicorn, directly or as
// "python3 -m gunicorn".
func isGunicorn(argv []string) bool {
	if filepath.Base(argv[0]) == "gunicorn" {
		return true
	}
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "-m" && argv[i+1] == "gunicorn" {
			return true
		}
	}
	return false
}

// withoutBind is argv with its --bind/-b options removed, joined.
func withoutBind(argv []string) string {
	var out []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-b" || a == "--bind":
			i++ // and its value
		case strings.HasPrefix(a, "--bind=") || (i > 0 && strings.HasPrefix(a, "-b") && len(a) > 2):
		default:
			out = append(out, a)
		}
	}
	return strings.Join(out, " ")
}
