package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlConfig builds the driver's configuration from the MYSQL_* variables.
func mysqlConfig(getenv func(string) string) (*mysql.Config, error) {
	host := getenv("MYSQL_HOST")
	if host == "" {
		return nil, fmt.Errorf("MYSQL_HOST is empty: the guestbook needs a database")
	}
	port := getenv("MYSQL_PORT")
	if port == "" {
		port = "3306"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("MYSQL_PORT=%q: want a port number from 1 to 65535", port)
	}
	password := getenv("MYSQL_PASSWORD")
	if file := getenv("MYSQL_PASSWORD_FILE"); file != "" {
		if password != "" {
			return nil, fmt.Errorf("MYSQL_PASSWORD and MYSQL_PASSWORD_FILE are both set: keep one")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read MYSQL_PASSWORD_FILE: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	c := mysql.NewConfig()
	c.Net, c.Addr = "tcp", net.JoinHostPort(host, port)
	c.User, c.Passwd, c.DBName = getenv("MYSQL_USER"), password, getenv("MYSQL_DATABASE")
	if c.DBName == "" {
		return nil, fmt.Errorf("MYSQL_DATABASE is empty: name the guestbook's database")
	}
	switch tls := getenv("MYSQL_TLS"); tls {
	case "", "false":
	case "true", "skip-verify", "preferred":
		c.TLSConfig = tls
	default:
		return nil, fmt.Errorf("MYSQL_TLS=%q: want false, true, skip-verify or preferred", tls)
	}
	// Short timeouts: while the database is down the API answers 503 at
	// once instead of holding the client.
	c.Timeout = 2 * time.Second
	c.ReadTimeout = 10 * time.Second
	c.WriteTimeout = 10 * time.Second
	c.ParseTime = true
	return c, nil
}
