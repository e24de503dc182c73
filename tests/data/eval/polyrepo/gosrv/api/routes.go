package api

import "net/http"

// Routes registers the server's handlers on mux.
func Routes(mux *http.ServeMux, s *Server) {
	mux.HandleFunc("/get", s.get)
	mux.HandleFunc("/put", s.put)
	mux.Handle("/", http.NotFoundHandler())
}

// Default is a server over a fresh store.
func Default() *Server {
	return NewServer(nil)
}
