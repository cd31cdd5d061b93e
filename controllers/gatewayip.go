package controllers

import (
	"sync"
	"time"
)

// gatewayIPTTL is how long a gateway ClusterIP read from the apiserver is reused. A Service's
// ClusterIP never changes while the Service exists; the TTL bounds how long runner pods get a
// stale one after the Service is deleted and recreated.
const gatewayIPTTL = time.Minute

// gatewayIPCache remembers the gateway Service's ClusterIP, so starting a runner pod does not
// read the Service from the apiserver every time (one round trip per session, in series with
// the pod's create).
type gatewayIPCache struct {
	mu sync.Mutex
	ip string
	at time.Time
}

// get returns the remembered IP while it is fresh.
func (c *gatewayIPCache) get(now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ip, c.ip != "" && now.Sub(c.at) < gatewayIPTTL
}

// put remembers an IP read at now.
func (c *gatewayIPCache) put(ip string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ip, c.at = ip, now
}
