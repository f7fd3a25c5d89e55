// Package httpjson writes JSON responses the same way across Hale's HTTP APIs.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write sends v as JSON with status.
func Write(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
