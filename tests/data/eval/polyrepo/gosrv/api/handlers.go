package api

import (
	"fmt"
	"net/http"

	"example.com/gosrv/internal/store"
)

// Server answers HTTP requests from a store.
type Server struct {
	db *store.Store
}

// NewServer wraps db.
func NewServer(db *store.Store) *Server {
	return &Server{db: db}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	value, err := s.db.Get(key)
	if err == store.ErrNotFound {
		http.Error(w, fmt.Sprintf("no key %q", key), http.StatusNotFound)
		return
	}
	fmt.Fprintln(w, value)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	value := r.URL.Query().Get("value")
	s.db.Put(key, value)
	w.WriteHeader(http.StatusNoContent)
}
