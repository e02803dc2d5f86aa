package main

import (
	"io"
	"fmt"
)

func cmdDiff(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sluice diff: not yet")
	return 2
}
