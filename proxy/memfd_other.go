//go:build !amd64 && !arm64

package proxy

// sysMemfdCreate is unknown here: no memfd fallback (see tempfile.go).
const sysMemfdCreate = -1
