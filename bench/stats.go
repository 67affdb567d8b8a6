package main

import (
	"math"
	"sort"
	"time"
)

// Spread is the median and range of one figure over the repeats.
type Spread struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

func spread(vs []float64) Spread {
	s := Spread{Values: append([]float64(nil), vs...), Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	var ok []float64
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			ok = append(ok, v)
		}
	}
	if len(ok) == 0 {
		return s
	}
	sort.Float64s(ok)
	s.Min, s.Max = ok[0], ok[len(ok)-1]
	if n := len(ok); n%2 == 1 {
		s.Median = ok[n/2]
	} else {
		s.Median = (ok[n/2-1] + ok[n/2]) / 2
	}
	return s
}

// pct returns the p-th percentile (0..100) of sorted, nearest-rank.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// jsonFloat keeps NaN out of the JSON file (encoding/json rejects it).
func cleanSpread(s Spread) Spread {
	fix := func(v float64) float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return -1
		}
		return v
	}
	s.Median, s.Min, s.Max = fix(s.Median), fix(s.Min), fix(s.Max)
	for i := range s.Values {
		s.Values[i] = fix(s.Values[i])
	}
	return s
}

// alternate runs base and variant back to back, pairs times (base, variant,
// base, variant, ...), and returns variant's figure ÷ base's per pair: the
// two runs of a pair see the same machine seconds apart, so drift over the
// scenario (other work on the CPUs, a growing heap) cancels in the ratio.
// Each function gets the pair's index and returns its figure.
func alternate(pairs int, base, variant func(pair int) (float64, error)) ([]float64, error) {
	var ratios []float64
	for i := range pairs {
		b, err := base(i)
		if err != nil {
			return ratios, err
		}
		v, err := variant(i)
		if err != nil {
			return ratios, err
		}
		if b > 0 {
			ratios = append(ratios, v/b)
		}
	}
	return ratios, nil
}
