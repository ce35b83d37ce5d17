package maps

import (
	"math/big"
	"math/rand"
	"testing"
)

// TestRoundingBounds checks the bounds docs/datapath.md ("Token buckets")
// states for the two roundings of a bucket, by exact arithmetic over a
// range of rates, bursts, costs and class multipliers. With e = c*1e12/(r*m)
// the exact interval in ns (rate r per second, cost c, multiplier m per
// mille) and d = b*1e9/r the exact depth:
//   - the interval I = gcraInterval(c, r, m) is e rounded down: I <= e < I+1,
//     so it is short by less than 1 ns, a relative error below 1/e; I = 0
//     (no limit) exactly when e < 1;
//   - the depth D = Depth(b, r) is d rounded down: D <= d < D+1;
//   - at m = 1000 a full bucket passes n = floor(D/I) frames at once, never
//     fewer than floor(b/c) and fewer than (b/c)*e/(e-1);
//   - the sustained rate c*1e12/(I*m) is at least r and exceeds it by a
//     factor below e/(e-1).
func TestRoundingBounds(t *testing.T) {
	type bucket struct{ r, b, c, m uint64 }
	var cases []bucket
	for _, r := range []uint64{1, 3, 10, 999, 1000, 7919, 100_000, 1_000_000, 3_000_000, 999_999_999, 1_000_000_000, 3_000_000_000} {
		for _, b := range []uint64{1, 10, 1000, 1_000_000} {
			for _, m := range []uint64{1, 500, 1000, 2000, 100_000} {
				cases = append(cases, bucket{r, b, 1, m})
			}
		}
	}
	for _, r := range []uint64{1000, 125_000_000, 1_250_000_000, 12_500_000_000} { // bytes per second
		for _, c := range []uint64{60, 1500, 65535} {
			cases = append(cases, bucket{r, 65535 * 4, c, 1000}, bucket{r, 10 * r, c, 1000})
		}
	}
	rng := rand.New(rand.NewSource(15))
	for range 20_000 {
		cases = append(cases, bucket{1 + rng.Uint64()%(1<<uint(1+rng.Intn(34))), 1 + rng.Uint64()%1_000_000,
			1 + rng.Uint64()%65535, 1 + rng.Uint64()%100_000})
	}
	rat := func(n uint64) *big.Rat { return new(big.Rat).SetUint64(n) }
	one := rat(1)
	for _, k := range cases {
		// e = c*1e12 / (r*m), d = b*1e9 / r
		e := new(big.Rat).SetFrac(new(big.Int).Mul(new(big.Int).SetUint64(k.c), big.NewInt(1e12)),
			new(big.Int).Mul(new(big.Int).SetUint64(k.r), new(big.Int).SetUint64(k.m)))
		d := new(big.Rat).SetFrac(new(big.Int).Mul(new(big.Int).SetUint64(k.b), big.NewInt(1e9)), new(big.Int).SetUint64(k.r))
		I, D := gcraInterval(k.c, k.r, k.m), Depth(k.b, k.r)
		if rat(I).Cmp(e) > 0 || new(big.Rat).Add(rat(I), one).Cmp(e) <= 0 {
			t.Fatalf("%+v: interval %d ns, exact %s: not e rounded down", k, I, e.FloatString(3))
		}
		if (I == 0) != (e.Cmp(one) < 0) {
			t.Fatalf("%+v: interval %d ns, exact %s", k, I, e.FloatString(3))
		}
		if rat(D).Cmp(d) > 0 || new(big.Rat).Add(rat(D), one).Cmp(d) <= 0 {
			t.Fatalf("%+v: depth %d ns, exact %s: not d rounded down", k, D, d.FloatString(3))
		}
		if I == 0 {
			continue
		}
		// Relative error of the interval below 1/e: (e - I)/e < 1/e, i.e. e - I < 1.
		// Sustained rate: c*1e12/(I*m) >= r and < r*e/(e-1).
		eMinus1 := new(big.Rat).Sub(e, one)
		if eMinus1.Sign() > 0 {
			excess := new(big.Rat).Quo(e, rat(I)) // r_eff / r
			bound := new(big.Rat).Quo(e, eMinus1) // e/(e-1)
			if excess.Cmp(one) < 0 || excess.Cmp(bound) >= 0 {
				t.Fatalf("%+v: rate factor %s, want in [1, %s)", k, excess.FloatString(9), bound.FloatString(9))
			}
		}
		if k.m != 1000 || eMinus1.Sign() <= 0 {
			continue
		}
		n := D / I
		lo := k.b / k.c
		hi := new(big.Rat).Mul(new(big.Rat).SetFrac(new(big.Int).SetUint64(k.b), new(big.Int).SetUint64(k.c)), new(big.Rat).Quo(e, eMinus1))
		if n < lo || rat(n).Cmp(hi) >= 0 {
			t.Fatalf("%+v: a full bucket passes %d frames, want in [%d, %s)", k, n, lo, hi.FloatString(3))
		}
	}
	// A figure of the documentation: at 100k pps the interval 10,000 ns is
	// exact; at 300k pps 3,333 ns is short by 1/3 ns, a relative 1e-4.
	if I := gcraInterval(1, 300_000, 1000); I != 3333 {
		t.Fatalf("interval at 300k pps: %d ns, want 3333", I)
	}
}
