package appserver

import (
	"errors"
	"net"
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
		return nil, errors.New("a command, such as: gunicorn --bind fd://3 app:app")
	}
	return words, nil
}

func splitHostPort(addr string) (host, port string, err error) {
	return net.SplitHostPort(addr)
}
