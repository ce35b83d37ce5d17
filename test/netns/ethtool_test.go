package netns

import "testing"

func TestQueueSum(t *testing.T) {
	m := map[string]uint64{"tx_queue_0_xdp_xmit": 5, "tx_queue_1_xdp_xmit": 7, "tx_queue_0_xdp_xmit_errors": 100,
		"rx_queue_0_xdp_drops": 3, "rx_queue_0_drops": 50, "rx_queue_x_xdp_drops": 1000, "peer_ifindex": 2}
	for _, c := range []struct {
		dir, stat string
		want      uint64
	}{{"tx", "xdp_xmit", 12}, {"tx", "xdp_xmit_errors", 100}, {"rx", "xdp_drops", 3}, {"rx", "drops", 50}, {"rx", "xdp_xmit", 0}} {
		if got := QueueSum(m, c.dir, c.stat); got != c.want {
			t.Errorf("QueueSum(%s, %s) = %d, want %d", c.dir, c.stat, got, c.want)
		}
	}
}
