// Command pause is the sandbox ("pause") container of the dev cluster: it holds a pod's
// namespaces open and exits on SIGTERM or SIGINT. It stands in for registry.k8s.io/pause,
// which cannot be pulled on a machine without registry access.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}
