// Package nanolog adapts a log/slog logger to the logger interface nanomdm and nanolib expect,
// so nanomdm's logs come out as the same structured JSON as the rest of Hale.
package nanolog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/micromdm/nanolib/log"
)

// New returns a nanolib log.Logger writing to l. nanomdm logs key/value pairs with an "msg" key;
// that becomes the slog message, the rest become attributes.
func New(l *slog.Logger) log.Logger { return logger{l} }

type logger struct{ l *slog.Logger }

func (g logger) Info(kv ...interface{})  { g.log(slog.LevelInfo, kv) }
func (g logger) Debug(kv ...interface{}) { g.log(slog.LevelDebug, kv) }

func (g logger) With(kv ...interface{}) log.Logger { return logger{g.l.With(kv...)} }

func (g logger) log(level slog.Level, kv []interface{}) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	msg := ""
	attrs := make([]interface{}, 0, len(kv))
	for i := 0; i < len(kv); i += 2 {
		if i+1 >= len(kv) {
			attrs = append(attrs, "extra", kv[i])
			break
		}
		if k, _ := kv[i].(string); k == "msg" && msg == "" {
			msg = fmt.Sprint(kv[i+1])
			continue
		}
		// nanomdm logs errors at Info with an "err" key; lift those to Warn so operators see them.
		if k, _ := kv[i].(string); k == "err" && level == slog.LevelInfo {
			level = slog.LevelWarn
		}
		attrs = append(attrs, kv[i], kv[i+1])
	}
	if msg == "" {
		msg = "nanomdm"
	}
	g.l.Log(ctx, level, msg, attrs...)
}
