package api

import "testing"

func TestDefault(t *testing.T) {
	if Default() == nil {
		t.Fatal("no server")
	}
}
