package h1

import (
	"bufio"
	"io"
	"net"
	"time"
)

// Tunnel hands the current 101 response to the client connection cc
// (hijacked; buffered holds what the client sent past its request) and
// copies both ways until one side closes (websockets). It returns the
// bytes sent to the client after the head and releases the connection.
func (c *UpConn) Tunnel(cc net.Conn, buffered *bufio.Reader) int64 {
	c.client = nil
	c.unwatch()
	_ = cc.SetDeadline(time.Time{})
	_ = c.nc.SetDeadline(time.Time{})
	// From here the upstream connection is a plain pipe: no timeouts.
	up := c.nc
	ubr := c.br
	head := bufio.NewWriter(cc)
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, h := range c.resp.Raw {
		if h.Name == "Server" || h.Name == "Date" {
			continue
		}
		head.WriteString(h.Name)
		head.WriteString(": ")
		head.WriteString(h.Value)
		head.WriteString("\r\n")
	}
	head.WriteString("Server: onebox\r\n\r\n")
	if err := head.Flush(); err != nil {
		cc.Close()
		up.Close()
		c.release()
		return 0
	}
	// Either side closing ends the tunnel: the other copy is unblocked by
	// closing both connections.
	done := make(chan int64, 2)
	go func() {
		// client → upstream, starting with what the server had buffered
		_, _ = io.Copy(up, io.MultiReader(io.LimitReader(buffered, int64(buffered.Buffered())), cc))
		done <- 0
	}()
	go func() {
		n, _ := io.Copy(cc, io.MultiReader(io.LimitReader(ubr, int64(ubr.Buffered())), up))
		done <- n
	}()
	n := <-done
	cc.Close()
	up.Close()
	n += <-done
	c.release()
	return n
}
