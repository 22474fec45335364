package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/keyward/keyward/api/wire"
)

// TestConcurrentWritesSamePath: 8 writers × 20 writes to one path without CAS all succeed. The
// store re-seals a write whose version number another write took, so the versions are exactly
// 1..160, each holding the value of the write that was told it got that number, with exactly
// one CURRENT and one PREVIOUS.
func TestConcurrentWritesSamePath(t *testing.T) {
	_, c := newTestNode(t)
	const (
		p       = "conc/same"
		writers = 8
		writes  = 20
		total   = writers * writes
	)
	var (
		mu      sync.Mutex
		byVer   = map[uint64]string{} // version -> value written
		failed  []string
		wg      sync.WaitGroup
		release = make(chan struct{})
	)
	for g := range writers {
		wg.Go(func() {
			<-release
			for i := range writes {
				v := fmt.Sprintf("g%d-w%02d", g, i)
				r, err := c.send(http.MethodPut, "/v1/secrets/"+p, "", valueBody(v))
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, fmt.Sprintf("%s: %v", v, err))
				case r.status != http.StatusOK:
					failed = append(failed, fmt.Sprintf("%s: %s", v, r))
				default:
					var w wire.WriteResponse
					if err := json.Unmarshal(r.body, &w); err != nil {
						failed = append(failed, fmt.Sprintf("%s: %v", v, err))
					} else if prev, dup := byVer[w.Version]; dup {
						failed = append(failed, fmt.Sprintf("%s and %s both got version %d", prev, v, w.Version))
					} else {
						byVer[w.Version] = v
					}
				}
				mu.Unlock()
			}
		})
	}
	close(release)
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d writes failed; first ones:", len(failed), total)
		for _, f := range failed[:min(len(failed), 5)] {
			t.Errorf("  %s", f)
		}
	}

	for n := uint64(1); n <= total && len(failed) == 0; n++ {
		if _, ok := byVer[n]; !ok {
			t.Errorf("no write was given version %d", n)
		}
	}
	md := c.versions(t, p)
	latest := uint64(len(md.Versions))
	if md.CurrentVersion != latest {
		t.Errorf("current_version %d with %d versions", md.CurrentVersion, latest)
	}
	if len(failed) == 0 && latest != total {
		t.Errorf("%d versions, want %d", latest, total)
	}
	states := map[string]int{}
	for i, v := range md.Versions {
		if v.Version != latest-uint64(i) {
			t.Errorf("versions[%d] is version %d, want %d (gapless, newest first)", i, v.Version, latest-uint64(i))
		}
		states[v.State]++
		switch {
		case v.Version == latest && v.State != "CURRENT", v.Version == latest-1 && v.State != "PREVIOUS",
			v.Version < latest-1 && v.State != "DEPRECATED":
			t.Errorf("version %d of %d is %s", v.Version, latest, v.State)
		}
		if want := v.Version+10 <= latest; v.Destroyed != want {
			t.Errorf("version %d destroyed=%v, want %v (retention keeps the newest 10)", v.Version, v.Destroyed, want)
		}
	}
	if states["CURRENT"] != 1 || states["PREVIOUS"] != 1 {
		t.Errorf("states %v: want exactly one CURRENT and one PREVIOUS", states)
	}
	// The retained versions decrypt to the value of the write that got their number.
	for n := latest; n > 0 && n+10 > latest; n-- {
		want, ok := byVer[n]
		if !ok {
			continue
		}
		got, _ := c.get(t, p, "version="+strconv.FormatUint(n, 10))
		if deref(got.Value) != want {
			t.Errorf("version %d reads %q, the write given that number sent %q", n, deref(got.Value), want)
		}
	}
}

// TestConcurrentCASOneWinnerPerRound: in each round every writer sends a CAS write expecting
// the same current version; exactly one wins and every other gets 409 cas_mismatch naming the
// winner's version. Round 0 is the create (cas 0 = must not exist).
func TestConcurrentCASOneWinnerPerRound(t *testing.T) {
	_, c := newTestNode(t)
	const (
		p       = "conc/cas"
		writers = 6
		rounds  = 8
	)
	for round := range rounds {
		expect := uint64(round)
		type result struct {
			g    int
			resp apiResp
			err  error
		}
		results := make(chan result, writers)
		release := make(chan struct{})
		var wg sync.WaitGroup
		for g := range writers {
			body := mustJSON(t, wire.PutRequest{Value: ptr(fmt.Sprintf("r%d-g%d", round, g)), CAS: &expect})
			wg.Go(func() {
				<-release
				r, err := c.send(http.MethodPut, "/v1/secrets/"+p, "", body)
				results <- result{g, r, err}
			})
		}
		close(release)
		wg.Wait()
		close(results)

		winners := []int{}
		var winVersion uint64
		for res := range results {
			if res.err != nil {
				t.Fatalf("round %d writer %d: %v", round, res.g, res.err)
			}
			switch res.resp.status {
			case http.StatusOK:
				var w wire.WriteResponse
				if err := json.Unmarshal(res.resp.body, &w); err != nil {
					t.Fatal(err)
				}
				winners = append(winners, res.g)
				winVersion = w.Version
			case http.StatusConflict:
				e := checkError(t, res.resp, http.StatusConflict, "cas_mismatch")
				if e.CurrentVersion == nil || *e.CurrentVersion != expect+1 {
					t.Errorf("round %d writer %d: loser told current_version %v, want %d", round, res.g, e.CurrentVersion, expect+1)
				}
			default:
				t.Errorf("round %d writer %d: %s", round, res.g, res.resp)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", round, len(winners), winners)
		}
		if winVersion != expect+1 {
			t.Errorf("round %d: winner got version %d, want %d", round, winVersion, expect+1)
		}
		got, _ := c.get(t, p, "")
		if want := fmt.Sprintf("r%d-g%d", round, winners[0]); got.Version != expect+1 || deref(got.Value) != want {
			t.Errorf("round %d: CURRENT is version %d %q, want %d %q", round, got.Version, deref(got.Value), expect+1, want)
		}
	}
	if md := c.versions(t, p); md.CurrentVersion != rounds || len(md.Versions) != rounds {
		t.Errorf("after %d rounds: current_version %d, %d versions", rounds, md.CurrentVersion, len(md.Versions))
	}
}
