package roll

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // a static binary on a host without zoneinfo still knows Europe/Berlin
)

// A maintenance window allows turns on some days between two times of day
// in a time zone: "Mon-Fri 09:00-17:00 Europe/Berlin". A window whose end
// is before its start runs over midnight, into the next day; "24:00" ends
// at midnight. Without a zone, UTC.
type Window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes from midnight
	loc        *time.Location
	text       string
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow reads a window: DAYS HH:MM-HH:MM [ZONE], DAYS a list of days
// and ranges ("Mon-Fri", "Sat,Sun", "Mon,Wed-Fri") or "daily".
func ParseWindow(s string) (Window, error) {
	w := Window{text: s, loc: time.UTC}
	fields := strings.Fields(s)
	if len(fields) < 2 || len(fields) > 3 {
		return w, fmt.Errorf("window %q: want DAYS HH:MM-HH:MM [ZONE], like \"Mon-Fri 09:00-17:00 Europe/Berlin\"", s)
	}
	if err := w.parseDays(fields[0]); err != nil {
		return w, fmt.Errorf("window %q: %v", s, err)
	}
	from, to, ok := strings.Cut(fields[1], "-")
	var err error
	if !ok {
		return w, fmt.Errorf("window %q: times %q: want HH:MM-HH:MM", s, fields[1])
	}
	if w.start, err = clockMinutes(from, false); err == nil {
		w.end, err = clockMinutes(to, true)
	}
	if err != nil {
		return w, fmt.Errorf("window %q: %v", s, err)
	}
	if w.start == w.end {
		return w, fmt.Errorf("window %q: it starts and ends at %s: an empty window", s, from)
	}
	if len(fields) == 3 {
		if w.loc, err = time.LoadLocation(fields[2]); err != nil {
			return w, fmt.Errorf("window %q: time zone %q: %v", s, fields[2], err)
		}
	}
	return w, nil
}

func (w *Window) parseDays(s string) error {
	if strings.EqualFold(s, "daily") {
		w.days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok1 := weekdays[strings.ToLower(from)]
		b, ok2 := a, true
		if isRange {
			b, ok2 = weekdays[strings.ToLower(to)]
		}
		if !ok1 || !ok2 {
			return fmt.Errorf("days %q: want Mon..Sun, ranges like Mon-Fri, lists like Sat,Sun, or daily", s)
		}
		for d := a; ; d = (d + 1) % 7 {
			w.days[d] = true
			if d == b {
				break
			}
		}
	}
	return nil
}

// clockMinutes reads HH:MM; "24:00" only as an end.
func clockMinutes(s string, end bool) (int, error) {
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || n != 2 || len(s) != 5 {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	if end && h == 24 && m == 0 {
		return 24 * 60, nil
	}
	if h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("time %q: want 00:00 to 23:59 (24:00 to end at midnight)", s)
	}
	return h*60 + m, nil
}

func (w Window) String() string { return w.text }

// Open reports whether t falls inside the window.
func (w Window) Open(t time.Time) bool {
	t = t.In(w.loc)
	min := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if w.start < w.end {
		return w.days[day] && min >= w.start && min < w.end
	}
	// Over midnight: the evening of an allowed day, or the morning after.
	return (w.days[day] && min >= w.start) || (w.days[(day+6)%7] && min < w.end)
}

// Next is when the window next opens after t (t itself if open).
func (w Window) Next(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	local := t.In(w.loc)
	y, m, d := local.Date()
	for i := 0; i <= 7; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, w.loc)
		start := day.Add(time.Duration(w.start) * time.Minute)
		if w.days[day.Weekday()] && start.After(t) {
			return start
		}
	}
	return time.Time{} // no allowed day: parse refuses such a window
}

// parseWindows reads a policy's windows.
func parseWindows(texts []string) ([]Window, error) {
	out := make([]Window, 0, len(texts))
	for _, s := range texts {
		w, err := ParseWindow(s)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// outsideWindows says, when now falls outside every one of the policy's
// windows, why the host waits and when the next window opens; "" when a
// window is open, or the policy has none (bad windows, which seed refuses,
// allow nothing).
func outsideWindows(texts []string, now time.Time) (string, time.Time) {
	if len(texts) == 0 {
		return "", time.Time{}
	}
	windows, err := parseWindows(texts)
	if err != nil {
		return fmt.Sprintf("outside the maintenance window: %v", err), now.Add(time.Minute)
	}
	var next time.Time
	var which Window
	for _, w := range windows {
		if w.Open(now) {
			return "", time.Time{}
		}
		if n := w.Next(now); next.IsZero() || n.Before(next) {
			next, which = n, w
		}
	}
	return fmt.Sprintf("outside the maintenance window (next: %s, %q)", next.In(which.loc).Format("Mon 2006-01-02 15:04 MST"), which.text), next
}

// now is the time maintenance windows are judged at.
func (s *Store) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// windowPoll is how often a host held outside a maintenance window looks
// at the clock again, at most: the clock may be set meanwhile.
func (s *Store) windowPoll() time.Duration {
	if s.clock != nil {
		return 50 * time.Millisecond // a test's clock jumps
	}
	return time.Minute
}
