package main

import (
	"io"
	"time"

	"github.com/rs/zerolog"

	"onebox/supervisor"
)

// newLogger returns the root logger: JSON lines by default, or zerolog's
// console writer for humans. Components add their `component` field.
func newLogger(cfg supervisor.Config, w io.Writer) zerolog.Logger {
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
