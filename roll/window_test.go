package roll

import (
	"strings"
	"testing"
	"time"
)

func TestWindows(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// 2026-12-07 is a Monday.
	for _, tt := range []struct {
		window, now string
		open        bool
		next        string
	}{
		{"Mon-Fri 09:00-17:00 Europe/Berlin", "2026-12-07 09:00", true, "2026-12-07 09:00"},
		{"Mon-Fri 09:00-17:00 Europe/Berlin", "2026-12-07 16:59", true, "2026-12-07 16:59"},
		{"Mon-Fri 09:00-17:00 Europe/Berlin", "2026-12-07 17:00", false, "2026-12-08 09:00"},
		{"Mon-Fri 09:00-17:00 Europe/Berlin", "2026-12-05 12:00", false, "2026-12-07 09:00"}, // Saturday
		{"Mon-Fri 09:00-17:00 Europe/Berlin", "2026-12-11 18:00", false, "2026-12-14 09:00"}, // Friday evening
		{"Sat,Sun 22:00-04:00 Europe/Berlin", "2026-12-07 03:00", true, "2026-12-07 03:00"},  // Sunday's night, Monday morning
		{"Sat,Sun 22:00-04:00 Europe/Berlin", "2026-12-07 05:00", false, "2026-12-12 22:00"},
		{"daily 00:00-24:00 Europe/Berlin", "2026-12-09 23:59", true, "2026-12-09 23:59"},
		{"Fri-Mon 10:00-11:00 Europe/Berlin", "2026-12-08 10:30", false, "2026-12-11 10:00"}, // a range over the week's end
	} {
		w, err := ParseWindow(tt.window)
		if err != nil {
			t.Fatalf("ParseWindow(%q): %v", tt.window, err)
		}
		now := at(tt.now)
		if got := w.Open(now); got != tt.open {
			t.Errorf("%q at %s: open %v, want %v", tt.window, tt.now, got, tt.open)
		}
		if got := w.Next(now); !got.Equal(at(tt.next)) {
			t.Errorf("%q at %s: next %s, want %s", tt.window, tt.now, got.In(berlin), tt.next)
		}
	}
	for _, bad := range []string{"", "Mon-Fri", "Mon-Fry 09:00-17:00", "Mon 9:00-17:00", "Mon 09:00-25:00", "Mon 09:00-09:00",
		"Mon 09:00-17:00 Mars/Olympus", "Mon 09:00 17:00 UTC x"} {
		if _, err := ParseWindow(bad); err == nil || !strings.Contains(err.Error(), "window") {
			t.Errorf("ParseWindow(%q) = %v, want an error naming the window", bad, err)
		}
	}
	wait, next := outsideWindows([]string{"Mon-Fri 09:00-17:00 Europe/Berlin"}, at("2026-12-05 12:00"))
	if want := `outside the maintenance window (next: Mon 2026-12-07 09:00 CET, "Mon-Fri 09:00-17:00 Europe/Berlin")`; wait != want || !next.Equal(at("2026-12-07 09:00")) {
		t.Errorf("outsideWindows on a Saturday = %q, %s; want %q", wait, next, want)
	}
}
