package jepsen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Final is what the harness read from the healed cluster at the end of a run, per key.
type Final struct {
	OK       bool                     // the final state could be read in full
	Versions map[string][]VersionInfo // the version listing, oldest first
	Current  map[string]uint64        // current_version of the listing
	Values   map[string]map[uint64]string
	// Rotations are the rotation histories of the rotation workload's secrets.
	Rotations map[string][]RotationRecord
}

// Report is the outcome of every checker.
type Report struct {
	Valid      bool     `json:"valid"`
	Violations []string `json:"violations"`
	// Known are violations of kinds the run was told to tolerate (Config.LenientStale); they
	// are reported but do not fail the run.
	Known          []string               `json:"known_issues,omitempty"`
	Linearizable   map[string]string      `json:"linearizable"` // key -> Ok, Illegal, Unknown
	LinearOps      int                    `json:"linearizable_ops"`
	ResolvedInfo   int                    `json:"unknown_writes_resolved"`
	OpenInfo       int                    `json:"unknown_writes_open"`
	AckedWrites    int                    `json:"acknowledged_writes"`
	LostWrites     int                    `json:"lost_writes"`
	VersionChecks  int                    `json:"version_checks"`
	StaleReads     int                    `json:"stale_reads_checked"`
	RotationChecks int                    `json:"rotation_checks"`
	Rotations      int                    `json:"rotations_succeeded"`
	AuditChecked   int                    `json:"audit_ops_checked"`
	AuditMissing   int                    `json:"audit_missing"`
	Faults         []FaultReport          `json:"faults"`
	RecoveryByKind map[string]RecoveryAgg `json:"recovery_by_nemesis"`
}

// FaultReport is one fault and how the cluster recovered from it.
type FaultReport struct {
	Name   string  `json:"name"`
	Detail string  `json:"detail"`
	Start  float64 `json:"start_s"`
	Stop   float64 `json:"stop_s"`
	// RecoveryMS is the time from the fault's end until the first successful quorum operation
	// invoked after it ended completed (-1: none did).
	RecoveryMS float64 `json:"recovery_ms"`
	// LongestGapMS is the longest time without a successful quorum operation completing,
	// from the fault's start until recovery.
	LongestGapMS float64 `json:"longest_gap_ms"`
}

// RecoveryAgg aggregates recovery times of one nemesis.
type RecoveryAgg struct {
	Faults int     `json:"faults"`
	Count  int     `json:"recovered"` // faults after which some quorum operation succeeded
	MeanMS float64 `json:"mean_ms"`
	MaxMS  float64 `json:"max_ms"`
	MaxGap float64 `json:"max_gap_ms"`
}

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// regInput / regOutput are porcupine's view of register operations.
type regInput struct {
	F      string
	Value  string
	Expect uint64
}

type regOutput struct {
	Unknown  bool
	Mismatch bool
	Current  *uint64
	Found    bool
	Version  uint64
	Value    string
}

type regState struct {
	V   uint64
	Val string
}

// registerModel is a versioned register: every successful write creates version V+1, a cas
// succeeds only when the CURRENT version is the expected one, a read sees (V, value).
func registerModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var keys []string
			for _, o := range h {
				k := o.Metadata.(string)
				if _, ok := by[k]; !ok {
					keys = append(keys, k)
				}
				by[k] = append(by[k], o)
			}
			sort.Strings(keys)
			var out [][]porcupine.Operation
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return regState{} },
		Step: func(st, in, out any) (bool, any) {
			s, i, o := st.(regState), in.(regInput), out.(regOutput)
			switch i.F {
			case "read":
				return o.Found == (s.V > 0) && o.Version == s.V && o.Value == s.Val, s
			case "write":
				if o.Unknown || o.Version == s.V+1 {
					return true, regState{V: s.V + 1, Val: i.Value}
				}
				return false, s
			case "cas":
				switch {
				case o.Unknown:
					if s.V == i.Expect {
						return true, regState{V: s.V + 1, Val: i.Value}
					}
					return true, s
				case o.Mismatch:
					return s.V != i.Expect && (o.Current == nil || *o.Current == s.V), s
				default:
					return s.V == i.Expect && o.Version == s.V+1, regState{V: s.V + 1, Val: i.Value}
				}
			}
			return false, s
		},
		Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
		DescribeOperation: func(in, out any) string {
			i, o := in.(regInput), out.(regOutput)
			res := fmt.Sprintf("v%d %q", o.Version, o.Value)
			switch {
			case o.Unknown:
				res = "?"
			case o.Mismatch:
				res = "mismatch"
			case i.F == "read" && !o.Found:
				res = "absent"
			}
			switch i.F {
			case "read":
				return "read -> " + res
			case "write":
				return fmt.Sprintf("write(%q) -> %s", i.Value, res)
			}
			return fmt.Sprintf("cas(v%d, %q) -> %s", i.Expect, i.Value, res)
		},
		DescribeState: func(st any) string {
			s := st.(regState)
			if s.V == 0 {
				return "absent"
			}
			return fmt.Sprintf("v%d %q", s.V, s.Val)
		},
	}
}

func isWrite(o Op) bool { return o.F == "write" || o.F == "cas" }

// CheckOptions tune the checkers.
type CheckOptions struct {
	LinTimeout     time.Duration // porcupine's budget
	StaleAllowance time.Duration // added to max_stale by the stale-read check
	LenientStale   bool          // stale-bound violations are known issues, not failures
}

// Check runs every checker over the history. linTimeout bounds porcupine; vis (when not nil)
// receives porcupine's HTML visualization of the register history.
func Check(ops []Op, evs []Event, fin Final, audited map[string]bool, auditOn bool, opt CheckOptions, vis io.Writer) *Report {
	r := &Report{Linearizable: map[string]string{}, RecoveryByKind: map[string]RecoveryAgg{}}
	checkLinearizable(r, ops, fin, opt.LinTimeout, vis, evs)
	if fin.OK {
		checkLostWrites(r, ops, fin)
	}
	checkVersions(r, ops, fin)
	checkMonotonic(r, ops)
	checkRotation(r, ops, fin)
	n := len(r.Violations)
	checkStale(r, ops, opt.StaleAllowance)
	if opt.LenientStale {
		r.Known = append(r.Known, r.Violations[n:]...)
		r.Violations = r.Violations[:n]
	}
	if auditOn && audited != nil {
		checkAudit(r, ops, audited)
	}
	checkRecovery(r, ops, evs)
	for _, e := range evs {
		if e.Name == NMembership && e.Phase == "stop" && strings.Contains(e.Detail, errRejoinRestart.Error()) {
			r.violate("membership: %s at %.3fs: %s", e.Name, secs(e.Time), e.Detail)
		}
	}
	r.Valid = len(r.Violations) == 0
	return r
}

// observedValues maps key -> values seen by successful reads (and the final sweep).
func observedValues(ops []Op, fin Final) map[string]map[string]bool {
	seen := map[string]map[string]bool{}
	add := func(k, v string) {
		if seen[k] == nil {
			seen[k] = map[string]bool{}
		}
		seen[k][v] = true
	}
	for _, o := range ops {
		if o.Type == OK && !isWrite(o) && o.Found && o.Value != "" {
			add(o.Key, o.Value)
		}
	}
	for k, vals := range fin.Values {
		for _, v := range vals {
			add(k, v)
		}
	}
	return seen
}

func checkLinearizable(r *Report, ops []Op, fin Final, timeout time.Duration, vis io.Writer, evs []Event) {
	seen := observedValues(ops, fin)
	// Resolve unknown writes with the final listing: when the versions no acknowledged write
	// claims are exactly as many as the unknown writes whose values were seen, every other
	// unknown write certainly did not happen.
	claimed := map[string]int{}
	unknownSeen := map[string]int{}
	for _, o := range ops {
		if o.Workload != WRegister || !isWrite(o) {
			continue
		}
		switch {
		case o.Type == OK:
			claimed[o.Key]++
		case o.Type == Info && seen[o.Key][o.Value]:
			unknownSeen[o.Key]++
		}
	}
	drop := map[string]bool{}
	for k, vs := range fin.Versions {
		if len(vs) > 0 && len(vs)-claimed[k] == unknownSeen[k] {
			drop[k] = true
		}
	}
	var end int64
	for _, o := range ops {
		end = max(end, o.Complete)
	}
	var hist []porcupine.Operation
	for _, o := range ops {
		if o.Workload != WRegister {
			continue
		}
		in := regInput{F: o.F, Value: o.Value}
		if o.Expect != nil {
			in.Expect = *o.Expect
		}
		out := regOutput{Found: o.Found, Version: o.Version}
		if o.F == "read" {
			out.Value = o.Value
		}
		ret := o.Complete
		switch {
		case o.Type == OK:
		case o.Type == Fail && o.F == "cas" && o.Code == "cas_mismatch":
			out.Mismatch, out.Current = true, o.CurrentVersion
		case o.Type == Info && isWrite(o):
			if drop[o.Key] && !seen[o.Key][o.Value] {
				r.ResolvedInfo++
				continue
			}
			r.OpenInfo++
			out.Unknown = true
			ret = end + int64(time.Second) // open-ended: may take effect any time after its call
		default:
			continue // failed reads and definitely failed writes change nothing
		}
		hist = append(hist, porcupine.Operation{ClientId: o.Worker, Input: in, Output: out, Call: o.Invoke, Return: ret, Metadata: o.Key})
	}
	r.LinearOps = len(hist)
	if len(hist) == 0 {
		return
	}
	model := registerModel()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	// Per-key verdicts: when the whole history is linearizable so is every key's; otherwise
	// check each key alone to name the ones that are not.
	byKey := map[string][]porcupine.Operation{}
	for _, o := range hist {
		byKey[o.Metadata.(string)] = append(byKey[o.Metadata.(string)], o)
	}
	for k, h := range byKey {
		kr := res
		if res != porcupine.Ok {
			kr = porcupine.CheckOperationsTimeout(porcupine.Model{Init: model.Init, Step: model.Step, Equal: model.Equal}, h, timeout)
		}
		r.Linearizable[k] = string(kr)
		if kr == porcupine.Illegal {
			r.violate("linearizability: history of %s is not linearizable (see linearizability.html)", k)
		}
	}
	if res == porcupine.Illegal && len(r.Violations) == 0 {
		r.violate("linearizability: register history is not linearizable")
	}
	if vis != nil {
		var ann []porcupine.Annotation
		open := map[string]Event{}
		for _, e := range evs {
			switch e.Phase {
			case "start":
				open[e.Name] = e
			case "stop":
				if s, ok := open[e.Name]; ok {
					ann = append(ann, porcupine.Annotation{Tag: "nemesis", Start: s.Time, End: e.Time,
						Description: e.Name, Details: s.Detail, BackgroundColor: "#fdd"})
					delete(open, e.Name)
				}
			}
		}
		info.AddAnnotations(ann)
		_ = porcupine.Visualize(model, info, vis)
	}
}

// writesByKey indexes acknowledged and unknown writes.
type keyWrites struct {
	acked   map[uint64]Op // version -> acknowledged write
	values  map[string]Op // value -> any write attempt (ok or info)
	ackList []Op
}

func indexWrites(ops []Op) map[string]*keyWrites {
	out := map[string]*keyWrites{}
	for _, o := range ops {
		if !isWrite(o) || o.Type == Fail {
			continue
		}
		kw := out[o.Key]
		if kw == nil {
			kw = &keyWrites{acked: map[uint64]Op{}, values: map[string]Op{}}
			out[o.Key] = kw
		}
		kw.values[o.Value] = o
		if o.Type == OK {
			kw.acked[o.Version] = o
			kw.ackList = append(kw.ackList, o)
		}
	}
	return out
}

// checkLostWrites: every acknowledged write is in the final listing with its version id, and
// every retained version holds the value of a write that was attempted, once.
func checkLostWrites(r *Report, ops []Op, fin Final) {
	for key, kw := range indexWrites(ops) {
		listing, ok := fin.Versions[key]
		if !ok {
			if len(kw.ackList) > 0 {
				r.violate("lost writes: %s has %d acknowledged writes but could not be listed at the end", key, len(kw.ackList))
				r.LostWrites += len(kw.ackList)
			}
			continue
		}
		byNum := map[uint64]VersionInfo{}
		for _, v := range listing {
			byNum[v.Version] = v
		}
		for _, w := range kw.ackList {
			r.AckedWrites++
			v, ok := byNum[w.Version]
			switch {
			case !ok:
				r.LostWrites++
				r.violate("lost write: %s v%d (%q, op %d, acknowledged at %.3fs) is not in the final listing", key, w.Version, w.Value, w.ID, secs(w.Complete))
			case v.VersionID != w.VersionID:
				r.LostWrites++
				r.violate("lost write: %s v%d was acknowledged as %s (op %d) but the final listing has %s", key, w.Version, w.VersionID, w.ID, v.VersionID)
			}
		}
		if _, rotating := fin.Rotations[key]; rotating {
			continue // the rotator writes values no client wrote
		}
		valueAt := map[string]uint64{}
		for num, val := range fin.Values[key] {
			w, ok := kw.values[val]
			switch {
			case !ok:
				r.violate("phantom write: %s v%d holds %q, which no write attempted", key, num, val)
			case w.Type == OK && w.Version != num:
				r.violate("misplaced write: %s v%d holds %q, acknowledged as v%d (op %d)", key, num, val, w.Version, w.ID)
			}
			if prev, dup := valueAt[val]; dup {
				r.violate("duplicate write: %s holds %q in v%d and v%d", key, val, prev, num)
			}
			valueAt[val] = num
		}
	}
}

// listingProblems checks the version invariants of one listing.
func listingProblems(vs []VersionInfo, current uint64) []string {
	var p []string
	if len(vs) == 0 {
		return nil
	}
	nums := make([]uint64, 0, len(vs))
	cur, prev := 0, 0
	var curNum uint64
	for _, v := range vs {
		nums = append(nums, v.Version)
		switch v.State {
		case "CURRENT":
			cur++
			curNum = v.Version
		case "PREVIOUS":
			prev++
		}
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	for i := 1; i < len(nums); i++ {
		if nums[i] == nums[i-1] {
			p = append(p, fmt.Sprintf("version %d listed twice", nums[i]))
		} else if nums[i] != nums[i-1]+1 {
			p = append(p, fmt.Sprintf("gap between versions %d and %d", nums[i-1], nums[i]))
		}
	}
	if nums[0] != 1 {
		p = append(p, fmt.Sprintf("versions start at %d, not 1", nums[0]))
	}
	if cur != 1 {
		p = append(p, fmt.Sprintf("%d CURRENT versions", cur))
	}
	if prev > 1 {
		p = append(p, fmt.Sprintf("%d PREVIOUS versions", prev))
	}
	if cur == 1 && current != 0 && curNum != current {
		p = append(p, fmt.Sprintf("current_version %d but v%d is CURRENT", current, curNum))
	}
	return p
}

// checkVersions: listings keep the invariants, reads by state return that state, and a
// listing shows every write acknowledged before it began (listings are linearizable).
func checkVersions(r *Report, ops []Op, fin Final) {
	writes := indexWrites(ops)
	for _, o := range ops {
		if o.Type != OK {
			continue
		}
		switch o.F {
		case "list":
			r.VersionChecks++
			l := o.Listing
			if l == nil {
				continue
			}
			for _, p := range l.Problems {
				r.violate("versions: %s listing (op %d at %.3fs on n%d): %s", o.Key, o.ID, secs(o.Invoke), o.Node+1, p)
			}
			newest := map[uint64]string{}
			for _, v := range l.Newest {
				newest[v.Version] = v.VersionID
			}
			oldestKept := l.Max - uint64(len(l.Newest)) + 1
			if kw := writes[o.Key]; kw != nil {
				for _, w := range kw.ackList {
					if w.Complete >= o.Invoke {
						continue
					}
					// Versions below the kept tail exist by the gapless check; their ids are
					// checked against the final listing.
					if w.Version > l.Max || w.Version >= oldestKept && newest[w.Version] != w.VersionID {
						r.violate("versions: %s listing (op %d at %.3fs on n%d) misses v%d acknowledged at %.3fs (op %d)", o.Key, o.ID, secs(o.Invoke), o.Node+1, w.Version, secs(w.Complete), w.ID)
					}
				}
			}
		case "read-state":
			r.VersionChecks++
			if o.Found && o.RespState != o.State {
				r.violate("versions: read of state %s on %s returned v%d in state %s (op %d)", o.State, o.Key, o.Version, o.RespState, o.ID)
			}
		}
	}
	for key, vs := range fin.Versions {
		r.VersionChecks++
		for _, p := range listingProblems(vs, fin.Current[key]) {
			r.violate("versions: final listing of %s: %s", key, p)
		}
	}
}

// checkStale: a max_stale read returns no version older than the newest one acknowledged
// before the read began minus max_stale (plus an allowance for applying), and versions
// carry the values their writes wrote.
func checkStale(r *Report, ops []Op, allowance time.Duration) {
	writes := indexWrites(ops)
	for _, o := range ops {
		if o.Type != OK || o.F != "read-stale" {
			continue
		}
		r.StaleReads++
		kw := writes[o.Key]
		if kw == nil {
			continue
		}
		bound := o.Invoke - o.MaxStale - int64(allowance)
		var newest Op
		for _, w := range kw.ackList {
			if w.Complete < bound && w.Version > newest.Version {
				newest = w
			}
		}
		got := uint64(0)
		if o.Found {
			got = o.Version
		}
		if got < newest.Version {
			r.violate("stale read: %s on n%d at %.3fs (max_stale %v, op %d: last contact %dms, staleness %dms, index %d) returned v%d, but v%d was acknowledged at %.3fs (op %d), %v before the read",
				o.Key, o.Node+1, secs(o.Invoke), time.Duration(o.MaxStale), o.ID, o.LastContactMS, o.StalenessMS, o.Index, got, newest.Version, secs(newest.Complete), newest.ID, time.Duration(o.Invoke-newest.Complete).Round(time.Millisecond))
		}
		if w, ok := kw.acked[o.Version]; ok && o.Found && w.Value != o.Value {
			r.violate("stale read: %s v%d returned %q but was written as %q (op %d)", o.Key, o.Version, o.Value, w.Value, w.ID)
		}
	}
}

// checkAudit: every acknowledged secret access has its audit record (linked by request id).
func checkAudit(r *Report, ops []Op, audited map[string]bool) {
	var missing []Op
	for _, o := range ops {
		if o.Type != OK || o.RequestID == "" {
			continue
		}
		r.AuditChecked++
		if !audited[o.RequestID] {
			missing = append(missing, o)
		}
	}
	r.AuditMissing = len(missing)
	for i, o := range missing {
		if i == 20 {
			r.violate("audit: ... and %d more acknowledged operations without an audit record", len(missing)-20)
			break
		}
		r.violate("audit: acknowledged %s %s on n%d at %.3fs (op %d, request %s) has no audit record", o.F, o.Key, o.Node+1, secs(o.Invoke), o.ID, o.RequestID)
	}
}

// quorumOp: an operation that needs a working majority.
func quorumOp(o Op) bool {
	return o.Type == OK && (o.Workload == WRegister || o.Workload == WVersions)
}

// checkRecovery measures, for each fault, how long until quorum operations succeeded again.
func checkRecovery(r *Report, ops []Op, evs []Event) {
	var done []int64 // completion times of successful quorum operations, sorted
	type iv struct{ invoke, complete int64 }
	var okOps []iv
	for _, o := range ops {
		if quorumOp(o) {
			done = append(done, o.Complete)
			okOps = append(okOps, iv{o.Invoke, o.Complete})
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	open := map[string]Event{}
	for _, e := range evs {
		switch e.Phase {
		case "start":
			open[e.Name] = e
			continue
		case "stop":
		default:
			continue
		}
		s, ok := open[e.Name]
		if !ok {
			continue
		}
		delete(open, e.Name)
		fr := FaultReport{Name: e.Name, Detail: s.Detail, Start: secs(s.Time), Stop: secs(e.Time), RecoveryMS: -1}
		var rec int64 = -1
		for _, o := range okOps {
			if o.invoke >= e.Time && (rec < 0 || o.complete < rec) {
				rec = o.complete
			}
		}
		until := rec
		if rec >= 0 {
			fr.RecoveryMS = ms(rec - e.Time)
		} else {
			until = e.Time
		}
		last := s.Time
		var gap int64
		for _, d := range done {
			if d < s.Time {
				continue
			}
			if d > until {
				break
			}
			gap = max(gap, d-last)
			last = d
		}
		gap = max(gap, until-last)
		fr.LongestGapMS = ms(gap)
		r.Faults = append(r.Faults, fr)
		agg := r.RecoveryByKind[e.Name]
		agg.Faults++
		if fr.RecoveryMS >= 0 {
			agg.MeanMS = (agg.MeanMS*float64(agg.Count) + fr.RecoveryMS) / float64(agg.Count+1)
			agg.Count++
			agg.MaxMS = max(agg.MaxMS, fr.RecoveryMS)
		}
		agg.MaxGap = max(agg.MaxGap, fr.LongestGapMS)
		r.RecoveryByKind[e.Name] = agg
	}
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }
func ms(ns int64) float64   { return float64(ns/1e5) / 10 }

// Summary formats the report's main figures as text.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid=%v linearizable_ops=%d acked_writes=%d lost=%d version_checks=%d stale_reads=%d audit_checked=%d audit_missing=%d\n",
		r.Valid, r.LinearOps, r.AckedWrites, r.LostWrites, r.VersionChecks, r.StaleReads, r.AuditChecked, r.AuditMissing)
	for k, a := range r.RecoveryByKind {
		fmt.Fprintf(&b, "  %-17s faults=%d recovered=%d recovery mean=%.0fms max=%.0fms longest gap=%.0fms\n", k, a.Faults, a.Count, a.MeanMS, a.MaxMS, a.MaxGap)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "VIOLATION: %s\n", v)
	}
	for _, v := range r.Known {
		fmt.Fprintf(&b, "known issue (tolerated): %s\n", v)
	}
	return b.String()
}
