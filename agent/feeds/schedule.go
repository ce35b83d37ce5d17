package feeds

import (
	"math/rand/v2"
	"time"
)

// DefaultJitter is the jitter fraction NextRefresh uses when given 0: refreshes are spread ±10% around the
// configured period, so that many agents do not hit a feed's server at the same moment.
const DefaultJitter = 0.1

// NextRefresh returns the delay until the next refresh: base moved by a uniformly random amount within
// ±jitterFrac*base. A jitterFrac of 0 means DefaultJitter, a negative one means no jitter, and one above 0.5 is
// taken as 0.5 so the delay stays at least half of base. A nil rnd uses the global generator. A base <= 0 is
// returned unchanged.
func NextRefresh(base time.Duration, jitterFrac float64, rnd *rand.Rand) time.Duration {
	if base <= 0 {
		return base
	}
	switch {
	case jitterFrac == 0:
		jitterFrac = DefaultJitter
	case jitterFrac < 0 || jitterFrac != jitterFrac: // negative or NaN
		return base
	case jitterFrac > 0.5:
		jitterFrac = 0.5
	}
	u := rand.Float64()
	if rnd != nil {
		u = rnd.Float64()
	}
	return base + time.Duration((2*u-1)*jitterFrac*float64(base))
}
