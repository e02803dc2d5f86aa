package loader

import (
	"os"
	"testing"
)

// TestMain turns the test binary into a socket client (see SockClient)
// when SockClientEnv is set.
func TestMain(m *testing.M) {
	if os.Getenv(SockClientEnv) != "" {
		os.Exit(SockClient(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}
