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

// alternate runs base and variant in turn, base first and last (base,
// variant, base, variant, ..., base: pairs runs of variant), and returns
// each variant run's figure ÷ the mean of the base runs either side of it.
// Runs seconds apart see the same machine, and a drift over the scenario
// (other work on the CPUs, a growing heap) that is steady over three runs
// cancels in the ratio, where pairs in a fixed order would charge it to the
// second run of every pair. Each function gets its run's index among its own.
func alternate(pairs int, base, variant func(i int) (float64, error)) ([]float64, error) {
	before, err := base(0)
	if err != nil {
		return nil, err
	}
	var ratios []float64
	for i := range pairs {
		v, err := variant(i)
		if err != nil {
			return ratios, err
		}
		after, err := base(i + 1)
		if err != nil {
			return ratios, err
		}
		if b := (before + after) / 2; b > 0 {
			ratios = append(ratios, v/b)
		}
		before = after
	}
	return ratios, nil
}
