package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes written as nginx writes sizes: a number with an
// optional k, m or g suffix (powers of 1024), case-insensitive: "1m", "512k", "0".
type ByteSize int64

// UnmarshalText parses an nginx-style size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(strings.ToLower(string(text)))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, strings.TrimSuffix(s, "g")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a size such as 0, 512k, 1m or 2g, got %q", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}

// String prints the size with the largest exact suffix.
func (b ByteSize) String() string {
	n := int64(b)
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "g"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "m"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// MarshalText prints the size as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }
