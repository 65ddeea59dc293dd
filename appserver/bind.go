package appserver

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
)

// The default app socket (APP_BIND empty): a file under /run/onebox when
// that directory is writable (or can be made), else a Linux abstract unix
// socket, which lives in the network namespace and needs no file system at
// all. So a read-only root with no writable mount works: `docker stack
// deploy` ignores compose's service-level tmpfs:, and the crash loop it gave
// was "bind: read-only file system".
//
// What the abstract socket exposes: file permissions do not apply to it, so
// every process in the container's network namespace can connect to the
// pool, bypassing the proxy; with --network host that is every process on
// the host. The workers only ever see connections the proxy could have made,
// but set APP_BIND to a file socket on a writable mount where other
// programs share the network namespace.
const (
	defaultSocketDir = "/run/onebox"
	defaultSocket    = defaultSocketDir + "/app.sock"
	abstractSocket   = "@onebox/app.sock"
)

// resolveBind returns bind, or for an empty bind the default: the file
// socket in dir when dir is writable, else the abstract socket.
func resolveBind(bind, dir string) string {
	if bind != "" {
		return bind
	}
	if writable(dir) {
		return "unix:" + filepath.Join(dir, filepath.Base(defaultSocket))
	}
	return "unix:" + abstractSocket
}

// writable reports whether dir can be written, or created under its nearest
// existing ancestor: access(2) says EROFS on a read-only mount, EACCES
// without permission.
func writable(dir string) bool {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		err := syscall.Access(p, 2) // W_OK
		if err == nil {
			return true
		}
		if !errors.Is(err, syscall.ENOENT) || p == "/" || p == "." {
			return false
		}
	}
}

// isAbstract reports whether a unix socket address is in the abstract
// namespace ("@name"), which has no file to create or remove.
func isAbstract(addr string) bool { return strings.HasPrefix(addr, "@") }
