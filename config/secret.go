package config

// Secret is a string that never prints: fmt, JSON and text encoders see a mask.
// Use Reveal where the value is really needed.
type Secret string

// String masks the value.
func (s Secret) String() string { return Mask(string(s)) }

// MarshalText masks the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret in clear.
func (s Secret) Reveal() string { return string(s) }
