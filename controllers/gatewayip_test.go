package controllers

import (
	"testing"
	"time"
)

// The gateway's ClusterIP is reused for a minute and then read again, so runner pods started
// after the gateway Service was recreated get its new address within a minute.
func TestGatewayIPIsReadAgainAfterAMinute(t *testing.T) {
	var c gatewayIPCache
	t0 := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	if _, ok := c.get(t0); ok {
		t.Fatal("an empty cache answered")
	}
	c.put("10.96.0.10", t0)
	if ip, ok := c.get(t0.Add(59 * time.Second)); !ok || ip != "10.96.0.10" {
		t.Errorf("after 59 s: %q, %v; want the remembered IP", ip, ok)
	}
	if _, ok := c.get(t0.Add(gatewayIPTTL)); ok {
		t.Error("after a minute the remembered IP is still used")
	}
}
