package store

import (
	"errors"
	"sync"
)

// ErrNotFound is returned for a key the store does not hold.
var ErrNotFound = errors.New("store: not found")

// Store is a map safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	items map[string]string
}

// New returns an empty store.
func New() *Store {
	return &Store{items: make(map[string]string)}
}

// Get returns the value of key, or ErrNotFound.
func (s *Store) Get(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, ok := s.items[key]
	if !ok {
		return "", ErrNotFound
	}
	return value, nil
}

// Put sets key to value.
func (s *Store) Put(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[key] = value
}
