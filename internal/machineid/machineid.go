// Package machineid tells one machine from another: it reads the machine's
// identity, machine-id(5), and derives from it the id dcroll publishes in
// ZooKeeper. The machine id itself is confidential (machine-id(5): it is
// not to be exposed to untrusted parties), so dcroll publishes an
// application-specific id instead, the one systemd derives for dcroll's
// AppID:
//
//	systemd-id128 --app-specific=49d16fbfbd49418393b35a9249dd7076 machine-id
//
// prints it on a host, so an operator can tell which machine an id names.
package machineid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// AppID is dcroll's application id: the HMAC key systemd's
// sd_id128_get_machine_app_specific() uses to derive dcroll's id of a
// machine from its machine id.
const AppID = "49d16fbfbd49418393b35a9249dd7076"

// DefaultPaths are where a machine id is looked for when no file is
// configured: systemd's, then D-Bus's.
var DefaultPaths = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// ErrNone is wrapped by the error of Read when no file holds a machine id.
var ErrNone = errors.New("no machine id")

// Read returns the machine's id, derived from the first of paths (DefaultPaths
// if none are given) that holds a machine id, and the path it came from. A
// file that is missing, empty or "uninitialized" (systemd's first boot) is
// skipped; so is one that does not hold 32 hex digits, which the error then
// names. With no machine id anywhere, the error wraps ErrNone and says why
// for each path.
func Read(paths ...string) (string, string, error) {
	if len(paths) == 0 {
		paths = DefaultPaths
	}
	var why []string
	for _, p := range paths {
		raw, err := readSmall(p)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		s := strings.TrimSpace(raw)
		switch s {
		case "":
			why = append(why, p+": empty")
			continue
		case "uninitialized":
			why = append(why, p+": uninitialized (the machine's first boot is not finished)")
			continue
		}
		id, err := Derive(s)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		return id, p, nil
	}
	return "", "", fmt.Errorf("%w: %s", ErrNone, strings.Join(why, "; "))
}

// readSmall reads a file of at most a few hundred bytes: a machine id is 33.
func readSmall(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s: missing", path)
		}
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(b), nil
}

// Derive is dcroll's id of the machine whose machine id is machineID (32 hex
// digits), as sd_id128_get_app_specific() derives it: the first 16 bytes of
// HMAC-SHA256 keyed by the machine id, over AppID, made a version 4 UUID,
// in 32 lowercase hex digits.
func Derive(machineID string) (string, error) {
	key, err := parse128(machineID)
	if err != nil {
		return "", err
	}
	app, err := parse128(AppID)
	if err != nil {
		panic("machineid: bad AppID")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(app)
	sum := mac.Sum(nil)[:16]
	sum[6] = sum[6]&0x0F | 0x40
	sum[8] = sum[8]&0x3F | 0x80
	return hex.EncodeToString(sum), nil
}

// parse128 reads 32 hex digits.
func parse128(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("%.40q is not a machine id (32 hex digits)", s)
	}
	return b, nil
}
