package fsm_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/keyward/keyward/fsm"
)

// listFixture holds 250 secrets under a/ (100), ab/ (50) and b/ (100), plus the paths in order.
func listFixture(t testing.TB) (*fsm.FSM, []string) {
	t.Helper()
	f := fsm.New(nil)
	var paths []string
	add := func(prefix string, n int) {
		for i := range n {
			// Insert in a scrambled order so the tree, not insertion order, sorts them.
			p := fmt.Sprintf("%s%03d", prefix, (i*37)%n)
			put(t, f, "id-"+p, p)
			paths = append(paths, p)
		}
	}
	add("b/", 100)
	add("ab/", 50)
	add("a/", 100)
	sort.Strings(paths)
	if f.State().SecretCount() != 250 {
		t.Fatalf("fixture has %d secrets", f.State().SecretCount())
	}
	return f, paths
}

func withPrefix(paths []string, prefix, after string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasPrefix(p, prefix) && p > after {
			out = append(out, p)
		}
	}
	return out
}

func pathsOf(secs []*fsm.Secret) []string {
	out := make([]string, len(secs))
	for i, s := range secs {
		out[i] = s.Path
	}
	return out
}

func TestList(t *testing.T) {
	f, all := listFixture(t)
	st := f.State()
	tests := []struct {
		name          string
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"a/ excludes ab/", "a/", "", 1000, withPrefix(all, "a/", ""), false},
		{"ab/", "ab/", "", 1000, withPrefix(all, "ab/", ""), false},
		{"a matches a/ and ab/", "a", "", 1000, withPrefix(all, "a", ""), false},
		{"b/", "b/", "", 1000, withPrefix(all, "b/", ""), false},
		{"everything", "", "", 1000, all, false},
		{"limit exactly fits", "a/", "", 100, withPrefix(all, "a/", ""), false},
		{"limit one short", "a/", "", 99, withPrefix(all, "a/", "")[:99], true},
		{"first page", "a/", "", 10, withPrefix(all, "a/", "")[:10], true},
		{"after an existing path", "a/", "a/041", 3, []string{"a/042", "a/043", "a/044"}, true},
		{"after a missing path", "a/", "a/0415", 2, []string{"a/042", "a/043"}, true},
		{"after the last match", "a/", "a/099", 10, nil, false},
		{"after before the prefix", "a/", "a", 2, []string{"a/000", "a/001"}, true},
		{"after far before the prefix", "b/", "a/050", 2, []string{"b/000", "b/001"}, true},
		{"after beyond the prefix", "a/", "b/", 10, nil, false},
		{"last page of a/ does not spill into ab/", "a/", "a/095", 10, []string{"a/096", "a/097", "a/098", "a/099"}, false},
		{"no match", "c/", "", 10, nil, false},
		{"prefix is a full path", "a/007", "", 10, []string{"a/007"}, false},
		{"partial segment", "b/09", "", 100, withPrefix(all, "b/09", ""), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, more := st.List(tc.prefix, tc.after, tc.limit)
			if !slices.Equal(pathsOf(got), tc.want) || more != tc.more {
				t.Errorf("List(%q, %q, %d) = %v, %v\nwant %v, %v", tc.prefix, tc.after, tc.limit, pathsOf(got), more, tc.want, tc.more)
			}
			for _, s := range got {
				if s.ID != "id-"+s.Path {
					t.Errorf("secret %s at path %s", s.ID, s.Path)
				}
			}
		})
	}
}

func TestListPagination(t *testing.T) {
	f, all := listFixture(t)
	// Soft-delete a few, including the very last a/ path, so pages must skip them and the
	// final page must not claim more.
	deleted := map[string]bool{"a/000": true, "a/013": true, "a/014": true, "a/099": true, "b/050": true, "ab/049": true}
	for p := range deleted {
		s, _ := f.State().SecretByPath(p)
		mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: s.ID, At: baseTime})
	}
	var live []string
	for _, p := range all {
		if !deleted[p] {
			live = append(live, p)
		}
	}
	st := f.State()
	for _, prefix := range []string{"a/", "ab/", "b/", "a", ""} {
		want := withPrefix(live, prefix, "")
		for _, limit := range []int{1, 7, 33, 97, 98, 99, 100, 300} {
			t.Run(fmt.Sprintf("%s/limit%d", prefix, limit), func(t *testing.T) {
				var got []string
				after := ""
				for pages := 0; ; pages++ {
					if pages > len(want)+1 {
						t.Fatal("pagination does not terminate")
					}
					page, more := st.List(prefix, after, limit)
					if len(page) > limit {
						t.Fatalf("page of %d > limit %d", len(page), limit)
					}
					if more && len(page) != limit {
						t.Fatalf("more with a short page of %d", len(page))
					}
					for _, s := range page {
						if s.Deleted() {
							t.Fatalf("listed deleted secret %s", s.Path)
						}
					}
					got = append(got, pathsOf(page)...)
					if !more {
						break
					}
					after = page[len(page)-1].Path
				}
				if !slices.Equal(got, want) {
					t.Errorf("paged listing:\n got %v\nwant %v", got, want)
				}
			})
		}
	}
}
