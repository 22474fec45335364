package main

import (
	"math"
	"time"
)

// The latency histogram is log-linear: every power-of-two range [histMin·2^k, histMin·2^(k+1))
// is split into histSub equal buckets, so a bucket is at most 1% as wide as its lower bound
// and its midpoint is within 0.5% of every duration in it. It covers 50µs to 13.1s; shorter
// and longer durations land in an underflow and an overflow bucket.
const (
	histMin     = 50 * time.Microsecond
	histOctaves = 18 // histMin << 18 ≈ 13.1s
	histSub     = 100
)

// latencyHistogram records durations. The zero value is empty and ready to use. It is not
// safe for concurrent use: each worker keeps its own and they are merged at the end.
type latencyHistogram struct {
	counts      [histOctaves * histSub]uint64
	under, over uint64 // below histMin; at or above histMin << histOctaves
	n           uint64
	sum         time.Duration
	min, max    time.Duration
}

// record adds d.
func (h *latencyHistogram) record(d time.Duration) {
	d = max(d, 0)
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
	if d < histMin {
		h.under++
		return
	}
	// d/histMin = frac·2^exp with frac in [0.5, 1): octave exp-1, offset 2·frac-1 in [0, 1).
	frac, exp := math.Frexp(float64(d) / float64(histMin))
	octave := exp - 1
	if octave >= histOctaves {
		h.over++
		return
	}
	sub := min(int((2*frac-1)*histSub), histSub-1)
	h.counts[octave*histSub+sub]++
}

// merge adds the durations recorded in o to h.
func (h *latencyHistogram) merge(o *latencyHistogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
	h.under += o.under
	h.over += o.over
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// count returns how many durations were recorded.
func (h *latencyHistogram) count() uint64 { return h.n }

// mean returns the mean duration, 0 when empty.
func (h *latencyHistogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// quantile returns an estimate of the q-quantile (0 < q ≤ 1) of the recorded durations: the
// midpoint of the bucket holding the ⌈q·n⌉-th smallest one, kept within the exact minimum and
// maximum (q = 1 gives the exact maximum). It is 0 when empty.
func (h *latencyHistogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	if rank == h.n {
		return h.max // known exactly
	}
	clamp := func(d time.Duration) time.Duration { return min(max(d, h.min), h.max) }
	cum := h.under
	if rank <= cum {
		return clamp((h.min + histMin) / 2)
	}
	for i, c := range h.counts {
		if cum += c; rank <= cum {
			octave, sub := i/histSub, i%histSub
			lo := float64(histMin) * math.Ldexp(1, octave)
			mid := lo * (1 + (float64(sub)+0.5)/histSub)
			return clamp(time.Duration(mid))
		}
	}
	return h.max
}
